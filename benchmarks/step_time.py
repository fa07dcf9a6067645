"""Training step time of I-LoRA against experience replay, on the same base model, in the same process.

Only the steps of tasks after the first count: on the first task both methods train on the current batch alone
(empty buffer), afterwards ER adds a replay batch and I-LoRA adds the replay batch, the slow adapter's hidden states
and the interpolation. Runs alternate (er, ilora, er, ilora, ...) after one discarded warm-up run of each, so a change
in machine load hits both methods; the ratio is the median over repeats of ilora / er of adjacent runs.

    python benchmarks/step_time.py                                  # tiny-llama, the embedded training settings
    python benchmarks/step_time.py --base smollm2-135m --max-train 24 --batch-size 4 --epochs 1 --repeats 3

Prints one JSON line per base and writes benchmarks/results/step_time.{json,md} (one entry per base model; a rerun
of a base replaces its entry). Not a test.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeconn.continual import TrainConfig, get_method, train_sequence  # noqa: E402
from modeconn.continual.config import EMBEDDED_TRAINING  # noqa: E402
from modeconn.evaluator.models import checkpoints_dir  # noqa: E402

METHODS = ("er", "ilora")


def replay_step_seconds(base: str, tasks: list[str], method: str, config: TrainConfig) -> float:
    """Mean seconds per training step over the tasks after the first, for one fresh run."""
    data = checkpoints_dir() / "data"
    with tempfile.TemporaryDirectory() as tmp:
        run = train_sequence(base, [(t, data / t) for t in tasks], get_method(method, seed=config.seed), config, tmp,
                             eval_limit=1, progress=False)
    return statistics.fmean(run.seconds_per_step_by_task[t] for t in tasks[1:])


def measure(base: str, tasks: list[str], config: TrainConfig, repeats: int) -> dict:
    for method in METHODS:  # warm-up: first-call allocations, lazy imports, page cache
        replay_step_seconds(base, tasks, method, config)
    times = {m: [] for m in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            times[method].append(replay_step_seconds(base, tasks, method, config))
    ratios = [i / e for e, i in zip(times["er"], times["ilora"])]
    return {"base": base, "tasks": tasks, "repeats": repeats, "config": config.to_json(),
            "seconds_per_step": times, "median_seconds_per_step": {m: statistics.median(v) for m, v in times.items()},
            "ilora_over_er": statistics.median(ratios), "ratios": ratios, "threads": torch.get_num_threads()}


def write(out: Path, entry: dict) -> None:
    path = out.with_suffix(".json")
    entries = json.loads(path.read_text())["bases"] if path.is_file() else {}
    entries[entry["base"]] = entry
    machine = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine, "bases": entries}, indent=2) + "\n")
    tmp.replace(path)
    lines = ["## Step time, tasks after the first (replay active), median over alternating runs", "",
             "| base | tasks | batch | threads | er s / step | ilora s / step | ilora / er (pairs' range) |",
             "|---|---|---|---|---|---|---|"]
    for e in entries.values():
        med = e["median_seconds_per_step"]
        lines.append(f"| {e['base']} | {' → '.join(e['tasks'])} | {e['config']['batch_size']} | {e['threads']} | "
                     f"{med['er']:.3f} | {med['ilora']:.3f} | {e['ilora_over_er']:.2f}× "
                     f"({min(e['ratios']):.2f}–{max(e['ratios']):.2f}) |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=["news", "gloss"])
    parser.add_argument("--max-train", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "step_time")
    args = parser.parse_args()
    # the embedded default's own training settings; any other base gets TrainConfig's defaults
    settings = dict(EMBEDDED_TRAINING) if args.base == "tiny-llama" else {}
    settings.update(epochs=args.epochs, max_train=args.max_train, seed=args.seed)
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    entry = measure(args.base, args.tasks, TrainConfig(**settings), args.repeats)
    write(args.out, entry)
    print(json.dumps({"base": entry["base"], "er": round(entry["median_seconds_per_step"]["er"], 4),
                      "ilora": round(entry["median_seconds_per_step"]["ilora"], 4),
                      "ilora_over_er": round(entry["ilora_over_er"], 3)}))


if __name__ == "__main__":
    main()
