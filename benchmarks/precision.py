"""bf16 against float32 on SmolLM2-135M: time of `modeconn barrier` and of one training step, losses, and memory.

Time: one process, the two precisions alternating (fp32, bf16, then bf16, fp32, …), medians over ``--repeats``. The
barrier is ``measure_barrier`` (what `modeconn barrier --no-accuracy` runs, base loading included, without writing its
plots); the training step is ``modeconn.continual.step.optimizer_step`` of the seq method (forward under autocast,
backward, clipping, AdamW) on one batch, the base loaded once per precision and warmed up by one step.
Memory: each precision's barrier in a fresh child process, which reads its resident size just before the study loads
the base (its baseline: Python, torch, transformers, datasets, the data read), after loading, and at its peak (VmHWM),
so the weights' and activations' share is seen apart from the process's own. Loss: the barrier's losses at every point and task, and the training
step's loss on the same batch from the same LoRA initialisation (then also at each timed step, by when the two
precisions' updates have moved the weights apart), as relative differences to float32.
Targets (benchmarks, not tests): bf16 barrier ≥ 2× and training step ≥ 1.7× faster; losses within 2e-2; bf16 memory
above the baseline ≤ 0.55× float32's. Run it alone (others' timings hold the same lock):

    flock /tmp/bench.lock python benchmarks/precision.py [--base smollm2-135m] [--points 11] [--limit 8] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DTYPES = ("float32", "bfloat16")


def status_mb(field: str) -> float:
    """A field of /proc/self/status in MiB (VmRSS: resident now; VmHWM: the process's peak resident size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def make_adapters(base: str, folder: Path) -> list[str]:
    """Two random LoRA adapters (q/v, rank 8) on ``base``, written by peft, as a sequence with the embedded tasks."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modeconn.evaluator.models import checkpoints_dir, load_base

    model, _ = load_base(base)
    tasks = ["news", "gloss"]
    for seed, task in enumerate(tasks):
        torch.manual_seed(seed)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        peft.peft_config["default"].base_model_name_or_path = base
        peft.save_pretrained(folder / task, save_embedding_layers=False)
        model = peft.unload()
    data = checkpoints_dir() / "data"
    (folder / "sequence.json").write_text(json.dumps({"name": "precision", "base_model": base, "tasks": [
        {"name": t, "data": str(data / t), "adapter": t} for t in tasks]}))
    return [str(folder / t) for t in tasks]


def barrier(adapters: list[str], dtype: str, points: int, limit: int):
    from modeconn.analysis.measure import measure_barrier
    from modeconn.analysis.settings import StudySettings

    settings = StudySettings(limit=limit, accuracy=False, progress=False, dtype=dtype)
    return measure_barrier(adapters, settings, points=points)


def child_memory(args) -> None:
    """In a fresh process: resident size just before the barrier loads its base (after its data are read), after the
    load, the load's peak and the run's peak; prints one JSON line."""
    import torch

    import modeconn.analysis.study as study

    torch.set_num_threads(args.threads)
    marks, load_base = {}, study.load_base

    def measured_load(*a, **k):  # the study's own load, bracketed by the process's resident size
        marks["baseline_mb"] = status_mb("VmRSS")
        loaded = load_base(*a, **k)
        marks["after_load_mb"], marks["load_peak_mb"] = status_mb("VmRSS"), status_mb("VmHWM")
        return loaded

    study.load_base = measured_load
    result = barrier(args.adapters, args.child_memory, args.points, args.limit)
    print(json.dumps({"dtype": args.child_memory, **marks, "peak_mb": status_mb("VmHWM"),
                      "losses": {t: c.loss for t, c in result.tasks.items()}}))


def memory_runs(args, adapters: list[str]) -> dict:
    runs = {}
    for dtype in DTYPES:
        cmd = [sys.executable, __file__, "--child-memory", dtype, "--base", args.base, "--points", str(args.points),
               "--limit", str(args.limit), "--threads", str(args.threads), "--adapters", *adapters]
        done = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)})
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        runs[dtype] = json.loads(done.stdout.strip().splitlines()[-1])
    return runs


def timed_barriers(args, adapters: list[str]) -> dict:
    seconds = {d: [] for d in DTYPES}
    losses = {}
    for r in range(args.repeats):
        for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            start = time.perf_counter()
            result = barrier(adapters, dtype, args.points, args.limit)
            seconds[dtype].append(time.perf_counter() - start)
            losses[dtype] = {t: c.loss for t, c in result.tasks.items()}
    return {"seconds": seconds, "losses": losses}


def training_setups(args) -> dict:
    """Per precision: the base with a fresh peft LoRA (same seed), AdamW, and one batch of the news task's examples."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modeconn.continual import get_method
    from modeconn.continual.config import TrainConfig
    from modeconn.continual.step import Amp, make_optimizer
    from modeconn.evaluator.data import collate, encode, read_split, resolve_max_length
    from modeconn.evaluator.models import checkpoints_dir, load_base

    setups = {}
    for dtype in DTYPES:
        config = TrainConfig(dtype=dtype, batch_size=args.batch, dropout=0.0)
        model, tokenizer = load_base(args.base, dtype=getattr(torch, dtype))
        torch.manual_seed(0)
        model = get_peft_model(model, LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                                 target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        examples, _ = read_split(checkpoints_dir() / "data" / "news", "train", args.batch)
        window = encode(tokenizer, examples, resolve_max_length(model, None))
        device = torch.device("cpu")
        run = SimpleNamespace(rank=0, world=1, trained=model, model=model, device=device,
                              to_device=lambda batch, pad=tokenizer.pad_token_id: collate(batch, pad),
                              request=SimpleNamespace(method=get_method("seq"), config=config))
        optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
        setups[dtype] = (run, optimizer, Amp(config.dtype, device), window)
    return setups


def timed_steps(args) -> dict:
    from modeconn.continual.step import optimizer_step

    setups = training_setups(args)
    seconds, losses = {d: [] for d in DTYPES}, {d: [] for d in DTYPES}
    first = {d: optimizer_step(*setups[d], lr=1e-4, where="warm-up").loss for d in DTYPES}
    for r in range(args.repeats):
        for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            start = time.perf_counter()
            result = optimizer_step(*setups[dtype], lr=1e-4, where=f"step {r}")
            seconds[dtype].append(time.perf_counter() - start)
            losses[dtype].append(result.loss)
    return {"seconds": seconds, "losses": losses, "first_losses": first, "tokens": sum(len(e.ids) for e in setups["float32"][3])}


def relative(half, full) -> float:
    return max(abs(h - f) / abs(f) for h, f in zip(half, full))


def rows(args, memory: dict, barriers: dict, steps: dict) -> list[dict]:
    """One row per (measurement, precision), float32's first; bf16 rows carry the ratios to float32."""
    import torch

    from modeconn.evaluator.precision import cpu_bf16_fast

    command = "flock /tmp/bench.lock python benchmarks/precision.py " + " ".join(sys.argv[1:])
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), {args.threads} thread(s), "
               f"torch {torch.__version__}, get_cpu_capability()={torch.backends.cpu.get_cpu_capability()!r}, "
               f"AVX512-BF16/AMX: {cpu_bf16_fast()}")
    out = []
    for what, data in (("barrier", barriers), ("train_step", steps)):
        median = {d: statistics.median(data["seconds"][d]) for d in DTYPES}
        for dtype in DTYPES:
            row = {"measure": what, "dtype": dtype, "seconds": round(median[dtype], 3),
                   "all_seconds": [round(s, 3) for s in data["seconds"][dtype]], "command": command, "machine": machine}
            if what == "barrier":
                row.update(points=args.points, limit=args.limit)
                m = memory[dtype]
                row.update({k: round(m[k], 1) for k in ("baseline_mb", "after_load_mb", "load_peak_mb", "peak_mb")})
                row["peak_above_baseline_mb"] = round(m["peak_mb"] - m["baseline_mb"], 1)
                row["load_above_baseline_mb"] = round(m["load_peak_mb"] - m["baseline_mb"], 1)
            else:
                row.update(batch=args.batch, tokens=data["tokens"],
                           tokens_per_second=round(data["tokens"] / median[dtype], 1))
            if dtype == "bfloat16":
                row["speedup_over_float32"] = round(median["float32"] / median[dtype], 3)
                row["ratio_to_float32"] = round(median[dtype] / median["float32"], 3)
                if what == "barrier":
                    half, full = memory["bfloat16"], memory["float32"]
                    row["peak_rss_ratio"] = round(half["peak_mb"] / full["peak_mb"], 3)
                    row["above_baseline_ratio"] = round((half["peak_mb"] - half["baseline_mb"]) /
                                                        (full["peak_mb"] - full["baseline_mb"]), 3)
                    row["max_relative_loss_difference"] = max(
                        relative(half["losses"][t], full["losses"][t]) for t in full["losses"])
                else:  # the first step from the same LoRA weights; then each timed step, the weights apart by then
                    first = data["first_losses"]
                    row["max_relative_loss_difference"] = relative([first["bfloat16"]], [first["float32"]])
                    row["max_relative_loss_difference_later_steps"] = relative(data["losses"]["bfloat16"],
                                                                               data["losses"]["float32"])
            out.append(row)
    return out


def markdown(args, table: list[dict]) -> str:
    b32, b16, s32, s16 = table
    lines = [
        f"bf16 against float32 on {args.base}, this CPU, {args.threads} thread(s); one process, the precisions alternating, "
        f"medians of {args.repeats} runs. `barrier`: `measure_barrier` ({args.points} points, {args.limit} examples per "
        f"task, news and gloss, loss only, base loading included); training step: `optimizer_step` of seq, "
        f"{args.batch} examples ({s32['tokens']} tokens), AdamW, LoRA q/v r=8. Memory: each precision's barrier in a "
        "fresh process; baseline = its resident size just before the base is loaded (data already read).", "",
        "| measure | dtype | seconds (median) | bf16 speed-up | max rel. loss diff | peak RSS MiB | above baseline MiB "
        "(load peak / run peak) |", "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        mem = (f"{r['peak_mb']:.0f} | {r['load_above_baseline_mb']:.0f} / {r['peak_above_baseline_mb']:.0f}"
               if "peak_mb" in r else "– | –")
        speed = f"{r['speedup_over_float32']:.2f}×" if "speedup_over_float32" in r else "–"
        loss = f"{r['max_relative_loss_difference']:.2e}" if "max_relative_loss_difference" in r else "–"
        lines.append(f"| {r['measure']} | {r['dtype']} | {r['seconds']:.2f} | {speed} | {loss} | {mem} |")
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| bf16 barrier ≥ 2× faster | {b16['speedup_over_float32']:.2f}× | {b16['speedup_over_float32'] >= 2} |",
              f"| bf16 training step ≥ 1.7× faster | {s16['speedup_over_float32']:.2f}× | {s16['speedup_over_float32'] >= 1.7} |",
              f"| losses within 2e-2 relative | barrier {b16['max_relative_loss_difference']:.2e}, step "
              f"{s16['max_relative_loss_difference']:.2e} (same weights; after 1–{args.repeats} more steps "
              f"{s16['max_relative_loss_difference_later_steps']:.2e}) | "
              f"{max(b16['max_relative_loss_difference'], s16['max_relative_loss_difference']) <= 2e-2} |",
              f"| bf16 resident above baseline ≤ 0.55× float32's | {b16['above_baseline_ratio']:.3f} (whole process "
              f"{b16['peak_rss_ratio']:.3f}) | {b16['above_baseline_ratio'] <= 0.55} |",
              "", f"Machine: {b32['machine']}. Command: `{b32['command']}`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--points", type=int, default=11)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="examples in the training step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "precision")
    parser.add_argument("--child-memory", choices=DTYPES, help=argparse.SUPPRESS)
    parser.add_argument("--adapters", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child_memory:
        return child_memory(args)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(args.base, Path(tmp) / "seq")
        memory = memory_runs(args, adapters)
        barriers = timed_barriers(args, adapters)
    steps = timed_steps(args)
    table = rows(args, memory, barriers, steps)
    for row in table:
        print(json.dumps({k: v for k, v in row.items() if k not in ("command", "machine")}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": table, "memory_runs": memory}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(args, table))


if __name__ == "__main__":
    main()
