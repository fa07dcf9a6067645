"""A `modeconn train` step against its floor, and the share of a run spent evaluating after each task.

``step``: the trainer's own step (``optimizer_step`` with the method's ``training_step``, ``after_step`` and the
finiteness checks) for seq, er and ilora, against the floor: the same batch through the same base with a plain peft
LoRA of the same rank, targets, alpha and dropout, ``loss.backward()``, one AdamW step and nothing else. er's floor
runs its doubled batch (the current batch and the replay batch the er step drew, concatenated); ilora is compared
with er. Replay is active as in a task after the first (the buffer holds the first task's examples). The five kinds
alternate step by step in one process (seq, floor, er, floor on er's batch, ilora), so a change in machine load hits
them all; each figure is the median over the steps after the warm-up ones.

``run``: one whole ``train_sequence`` on the embedded stream at benchmarks/continual.py's settings (200 training
examples per task, 3 epochs, batch 16, eval-limit 100, 4 tasks), timing the evaluation inside it.

    OMP_NUM_THREADS=1 flock /tmp/bench.lock python benchmarks/train_step.py step --base tiny-llama
    OMP_NUM_THREADS=1 flock /tmp/bench.lock python benchmarks/train_step.py step --base smollm2-135m --precision bf16
    OMP_NUM_THREADS=1 flock /tmp/bench.lock python benchmarks/train_step.py run --method ilora
    OMP_NUM_THREADS=1 flock /tmp/bench.lock python benchmarks/train_step.py step --base smollm2-135m --precision bf16 \
        --batch-size 8 --tasks ../shared/cl_benchmark/CL_Benchmark/QQP/QQP ../shared/cl_benchmark/CL_Benchmark/NLI/RTE

Each call adds (or replaces) its rows in benchmarks/results/train_step.{json,md}. Supersedes step_time.py (ilora
against er over whole runs): the ilora / er ratio here is per step, on identical batches. Not a test.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence  # noqa: E402
from modeconn.continual.old_names import PRECISION_VALUES  # noqa: E402
from modeconn.evaluator.evaluate import DTYPES as TORCH_DTYPES  # noqa: E402
from modeconn.continual.config import EMBEDDED_TRAINING  # noqa: E402
from modeconn.continual.methods.protocol import TaskContext  # noqa: E402
from modeconn.continual.prepare import lora_targets  # noqa: E402
from modeconn.continual.step import Amp, make_optimizer, optimizer_step  # noqa: E402
from modeconn.evaluator.data import collate, encode, read_split  # noqa: E402
from modeconn.evaluator.models import checkpoints_dir, load_base  # noqa: E402

OUT = Path(__file__).parent / "results" / "train_step"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# a real base trains attention-only LoRA with dropout, as benchmarks/continual.py's runs on it
REAL_BASE = dict(rank=8, alpha=16, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), lr=3e-3)


def command() -> str:
    return "OMP_NUM_THREADS=1 flock /tmp/bench.lock python " + " ".join(sys.argv)


def settings(base: str, precision: str, batch_size: int) -> TrainConfig:
    values = dict(EMBEDDED_TRAINING) if base == "tiny-llama" else dict(REAL_BASE)
    return TrainConfig(**{**values, "batch_size": batch_size, "dtype": PRECISION_VALUES[precision]})


def lora_model(base: str, config: TrainConfig, seed: int):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_base(base, dtype=TORCH_DTYPES[config.dtype])
    torch.manual_seed(seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=lora_targets(model, config), task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tokenizer


def tokens(inputs: dict) -> int:
    return int(inputs["attention_mask"].sum())


class Floor:
    """A plain peft LoRA on its own copy of the base, one AdamW step per batch."""

    def __init__(self, base: str, config: TrainConfig, seed: int):
        self.model, self.pad = lora_model(base, config, seed)[0], None
        self.model.train()
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                           weight_decay=0.0)
        self.autocast = Amp(config.dtype, torch.device("cpu")).autocast

    def step(self, inputs: dict) -> float:
        started = time.perf_counter()
        with self.autocast():
            loss = self.model(**inputs).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started


class Trainer:
    """One method as ``modeconn train`` runs it in its second task: the trainer's ``optimizer_step``."""

    def __init__(self, method: str, base: str, config: TrainConfig, first: list, second: list, seed: int):
        self.model, tokenizer = lora_model(base, config, seed)
        self.config, self.pad = config, tokenizer.pad_token_id
        to_device = lambda examples: collate(examples, self.pad)  # noqa: E731
        self.method = get_method(method, seed=seed)
        self.run = SimpleNamespace(rank=0, world=1, trained=self.model, model=self.model, device=torch.device("cpu"),
                                   to_device=to_device, accelerator=None,
                                   request=SimpleNamespace(method=self.method, config=config))
        stream = len(first) + len(second)
        for index, train in enumerate((first, second)):  # the first task fills the buffer (ilora: adds its slow adapter)
            self.method.begin_task(TaskContext(self.model, f"task{index}", index, train, to_device, config.batch_size,
                                               stream, 2, tokenizer))
            if hasattr(self.method, "buffer") and index == 0:
                self.method.buffer.add(train)
        self.model.train()
        self.optimizer = make_optimizer([p for p in self.model.parameters() if p.requires_grad], config)
        self.amp = Amp(config.dtype, torch.device("cpu"))
        self.replayed: list = []
        buffer = getattr(self.method, "buffer", None)
        if buffer is not None:  # keep what each step replays, for the floor's doubled batch
            draw = buffer.sample
            buffer.sample = lambda k: self.replayed.__setitem__(slice(None), draw(k)) or list(self.replayed)

    def step(self, window: list) -> tuple[float, dict]:
        """Seconds of one step on ``window`` (epoch 1: nothing offered to the buffer), and the inputs it trained on."""
        self.replayed.clear()
        started = time.perf_counter()
        optimizer_step(self.run, self.optimizer, self.amp, window, lr=self.config.lr, where="bench", epoch=1)
        seconds = time.perf_counter() - started
        return seconds, collate(window + self.replayed, self.pad)


def task_folder(task: str) -> Path:
    """An embedded task by name, or a task folder (O-LoRA's CL benchmark: CL_Benchmark/<family>/<task>)."""
    return checkpoints_dir() / "data" / task if "/" not in task else Path(task)


def measure_steps(base: str, precision: str, batch_size: int, steps: int, warmup: int, seed: int, *,
                  tasks: tuple[str, str] = ("news", "gloss")) -> list[dict]:
    config = settings(base, precision, batch_size)
    tokenizer = load_base(base)[1]
    first, second = (encode(tokenizer, read_split(task_folder(task), "train", 200)[0], 1024) for task in tasks)
    trainers = {m: Trainer(m, base, config, first, second, seed) for m in ("seq", "er", "ilora")}
    floor = Floor(base, config, seed)
    generator = torch.Generator().manual_seed(seed)
    times = {k: [] for k in ("seq", "floor", "er", "floor_er", "ilora")}
    counts = {k: [] for k in times}
    for i in range(warmup + steps):
        window = [second[j] for j in torch.randperm(len(second), generator=generator)[:batch_size].tolist()]
        single = collate(window, trainers["seq"].pad)
        timed = {"seq": trainers["seq"].step(window), "floor": (floor.step(single), single)}
        timed["er"] = trainers["er"].step(window)
        timed["floor_er"] = (floor.step(timed["er"][1]), timed["er"][1])
        timed["ilora"] = trainers["ilora"].step(window)
        if i >= warmup:
            for kind, (seconds, inputs) in timed.items():
                times[kind].append(seconds)
                counts[kind].append(tokens(inputs))
    median = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: statistics.fmean(counts[k]) / median[k] for k in times}
    common = dict(base=base, dtype=precision, batch=batch_size, tasks=",".join(Path(t).name for t in tasks), steps=steps,
                  warmup=warmup, threads=torch.get_num_threads(), command=command())
    rows = []
    for method, floor_kind, against in (("seq", "floor", "floor"), ("er", "floor_er", "floor (doubled batch)")):
        rows.append(dict(common, kind="step", method=method, seconds=median[method], floor_seconds=median[floor_kind],
                         ratio=median[method] / median[floor_kind], against=against, tokens_per_second=rate[method],
                         floor_tokens_per_second=rate[floor_kind], tokens_per_step=statistics.fmean(counts[method])))
    rows.append(dict(common, kind="step", method="ilora", seconds=median["ilora"], floor_seconds=median["er"],
                     ratio=median["ilora"] / median["er"], against="er", tokens_per_second=rate["ilora"],
                     floor_tokens_per_second=rate["er"], tokens_per_step=statistics.fmean(counts["ilora"])))
    return rows


def measure_run(method: str, base: str, precision: str, seed: int) -> dict:
    """One whole run at benchmarks/continual.py's settings; evaluation timed inside it."""
    from modeconn.continual import prepare as prep

    config = TrainConfig(**{**EMBEDDED_TRAINING, "max_train": 200, "epochs": 3, "batch_size": 16, "seed": seed,
                            "dtype": PRECISION_VALUES[precision]})
    tasks = ["news", "gloss", "fortune", "stdlib"]
    memory = {"buffer_fraction": 0.025} if method != "seq" else {}  # benchmarks/continual.py's BUFFER_FRACTION
    spent = {"initial": 0.0, "after_tasks": 0.0}
    scores = prep.Prepared.scores

    def timed(self, method_, trained, key=None):
        started = time.perf_counter()
        try:
            return scores(self, method_, trained, key)
        finally:
            spent["after_tasks" if trained else "initial"] += time.perf_counter() - started

    prep.Prepared.scores = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            run = train_sequence(TrainRequest(base, [(t, checkpoints_dir() / "data" / t) for t in tasks],
                                              get_method(method, seed=seed, **memory), config, eval_limit=100),
                                 tmp, progress=False)
            wall = time.perf_counter() - started
    finally:
        prep.Prepared.scores = scores
    steps = len(tasks) * config.epochs * -(-config.max_train // config.batch_size)
    return dict(kind="run", method=method, base=base, dtype=precision, seconds=wall, eval_after_tasks_seconds=spent["after_tasks"],
                eval_initial_seconds=spent["initial"], eval_share=spent["after_tasks"] / wall,
                eval_share_with_initial=(spent["after_tasks"] + spent["initial"]) / wall,
                step_seconds=run.seconds_per_step * steps, steps=steps, threads=torch.get_num_threads(),
                command=command(), settings="embedded stream, 200 train/task, 3 epochs, batch 16, eval-limit 100")


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "note": "2 shared CPU cores (about 6 engineers' jobs beside this one); timings serialised with flock "
                    "/tmp/bench.lock; single-threaded (OMP_NUM_THREADS=1, torch.set_num_threads(1))"}


def key(row: dict) -> tuple:
    return row["kind"], row["method"], row["base"], row["dtype"], row.get("tasks", "news,gloss")


def write(rows: list[dict]) -> None:
    path = OUT.with_suffix(".json")
    previous = json.loads(path.read_text()) if path.is_file() else {}
    kept, notes = previous.get("rows", []), previous.get("notes", [])  # notes: written by hand, kept
    new = {key(r) for r in rows}
    kept = [r for r in kept if key(r) not in new] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), "rows": kept, "notes": notes}, indent=2) + "\n")
    tmp.replace(path)
    lines = ["## Training step against its floor (median seconds per step, steps alternating in one process)", "",
             "| base | dtype | tasks | method | against | s / step | floor s / step | ratio | tokens/s | floor tokens/s "
             "| threads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in kept if r["kind"] == "step"):
        lines.append(f"| {r['base']} | {r['dtype']} | {r.get('tasks', 'news,gloss')} | {r['method']} | {r['against']} | {r['seconds']:.4f} | "
                     f"{r['floor_seconds']:.4f} | {r['ratio']:.3f} | {r['tokens_per_second']:.0f} | "
                     f"{r['floor_tokens_per_second']:.0f} | {r['threads']} |")
    runs = [r for r in kept if r["kind"] == "run"]
    if runs:
        lines += ["", "## Evaluation's share of one whole run (embedded stream, benchmarks/continual.py's settings)", "",
                  "| base | dtype | method | run s | evaluation after tasks s | share | with the initial evaluation |",
                  "|---|---|---|---|---|---|---|"]
        for r in runs:
            lines.append(f"| {r['base']} | {r['dtype']} | {r['method']} | {r['seconds']:.1f} | "
                         f"{r['eval_after_tasks_seconds']:.1f} | {r['eval_share']:.1%} | {r['eval_share_with_initial']:.1%} |")
    lines += ["", "## Targets (issue 26)", ""] + [f"- {line}" for line in targets(kept)]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes] if notes else []
    lines += ["", f"Machine: {machine()['note']}; torch {torch.__version__}, CPU capability "
                  f"{machine()['cpu_capability']}. Commands: the `command` of each row in train_step.json."]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


def targets(rows: list[dict]) -> list[str]:
    """Each target beside its measured figure."""
    limits = {"seq": (1.15, "seq step ≤ 1.15× the floor"), "er": (1.15, "er step ≤ 1.15× the floor on its doubled batch"),
              "ilora": (1.3, "ilora step ≤ 1.3× er")}
    out = []
    for r in rows:
        if r["kind"] == "step":
            limit, what = limits[r["method"]]
            out.append(f"{what}, {r['base']} {r['dtype']} ({r.get('tasks', 'news,gloss')}): {r['ratio']:.3f}× — {'met' if r['ratio'] <= limit else 'missed'}")
        else:
            out.append(f"evaluation after each task ≤ 25% of the run, {r['method']} on {r['base']} {r['dtype']}: "
                       f"{r['eval_share']:.1%} — {'met' if r['eval_share'] <= 0.25 else 'missed'} "
                       f"({r['eval_share_with_initial']:.1%} with the evaluation before the first task)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["step", "run"])
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--precision", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--method", default="seq", choices=["seq", "er", "ilora"], help="run: the method")
    parser.add_argument("--tasks", nargs=2, default=["news", "gloss"], metavar=("FIRST", "SECOND"),
                        help="step: the task whose examples fill the replay buffer and the one trained on (embedded "
                             "names, or task folders such as CL_Benchmark/NLI/RTE)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "step":
        rows = measure_steps(args.base, args.precision, args.batch_size, args.steps, args.warmup, args.seed,
                             tasks=tuple(args.tasks))
    else:
        rows = [measure_run(args.method, args.base, args.precision, args.seed)]
    write(rows)
    for r in rows:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "command"}))


if __name__ == "__main__":
    main()
