"""Continual methods on the embedded task sequence: AP and BWT per method (mean ± std over seeds), and the step
time of I-LoRA relative to experience replay measured in the same run.

    python benchmarks/continual.py [--seeds 0 1 2] [--methods seq er ewc mtl ilora ilora-0.99 ilora-reference]

Writes benchmarks/results/continual.json and continual.md, and prints one JSON line per method. Not a test.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeconn.continual import TrainConfig, get_method, train_sequence  # noqa: E402
from modeconn.models import checkpoints_dir  # noqa: E402

VARIANTS = {  # label -> (method, options)
    "seq": ("seq", {}),
    "er": ("er", {}),
    "ewc": ("ewc", {}),
    "mtl": ("mtl", {}),
    "ilora": ("ilora", {"ema": 0.25}),
    "ilora-0.99": ("ilora", {"ema": 0.99}),
    "ilora-reference": ("ilora", {"variant": "reference"}),
}
TASKS = ["news", "gloss", "fortune", "stdlib"]
# the embedded default's own training settings (scripts/build_default.py)
CONFIG = dict(rank=8, alpha=16, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
              lr=3e-3, epochs=5, batch_size=16)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["seq", "er", "ilora", "ilora-0.99", "ilora-reference", "ewc", "mtl"],
                        choices=list(VARIANTS))
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "continual")
    parser.add_argument("--append", action="store_true",
                        help="keep the runs already in OUT.json (a run of the same method and seed is replaced)")
    parser.add_argument("--by-seed", action="store_true", help="loop seeds outside methods, so a stopped run is balanced")
    args = parser.parse_args()
    data = checkpoints_dir() / "data"
    runs = json.loads(args.out.with_suffix(".json").read_text())["runs"] if args.append else []
    order = [(label, seed) for label in args.methods for seed in args.seeds]
    if args.by_seed:
        order = [(label, seed) for seed in args.seeds for label in args.methods]
    for label, seed in order:
        name, options = VARIANTS[label]
        runs = [r for r in runs if (r["label"], r["seed"]) != (label, seed)]
        started = time.perf_counter()
        extra = {"seed": seed} if name in ("er", "ilora") else {}
        config = TrainConfig(**CONFIG, max_train=args.max_train, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            run = train_sequence(args.base, [(t, data / t) for t in args.tasks], get_method(name, **options, **extra),
                                 config, tmp, progress=False)
        m = run.metrics
        runs.append({"label": label, "seed": seed, "AP": m.ap, "BWT": m.bwt, "FWT": m.fwt, "accuracy": m.accuracy,
                     "seconds_per_step": run.seconds_per_step, "wall_seconds": time.perf_counter() - started,
                     "threads": torch.get_num_threads()})
        print(json.dumps({"label": label, "seed": seed, "AP": round(m.ap, 4), "BWT": round(m.bwt, 4),
                          "seconds_per_step": round(run.seconds_per_step, 4)}), flush=True)
        write(args, runs)  # after every run, so a long benchmark that is stopped keeps what it measured


def write(args, runs: list[dict]) -> None:
    summary = {}
    for label in [v for v in VARIANTS if any(r["label"] == v for r in runs)]:
        mine = [r for r in runs if r["label"] == label]
        summary[label] = {k: mean_std([r[k] for r in mine]) for k in ("AP", "BWT", "seconds_per_step")}
    # per seed, ilora's step time over er's (the two ran back to back in the same benchmark), then the mean
    step = {(r["label"], r["seed"]): r["seconds_per_step"] for r in runs}
    pairs = [step["ilora", s] / step["er", s] for s in sorted({r["seed"] for r in runs}) if ("ilora", s) in step and ("er", s) in step]
    ratio = statistics.fmean(pairs) if pairs else None
    result = {"base": args.base, "tasks": args.tasks, "seeds": sorted({r["seed"] for r in runs}), "config": {**CONFIG, "target_modules": list(CONFIG["target_modules"])},
              "split": "test", "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                           "threads": torch.get_num_threads(), "torch": torch.__version__},
              "summary": summary, "ilora_over_er_step_time": ratio, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    done = sorted({r["seed"] for r in runs})
    lines = [f"Embedded sequence {' → '.join(args.tasks)}, base {args.base}, seeds {done}, exact match on test splits.", "",
             "| method | AP | BWT | s / step |", "|---|---|---|---|"]
    for label, s in summary.items():
        lines.append(f"| {label} | {s['AP'][0]:.3f} ± {s['AP'][1]:.3f} | {s['BWT'][0]:+.3f} ± {s['BWT'][1]:.3f} | {s['seconds_per_step'][0]:.3f} |")
    if ratio is not None:
        lines += ["", f"I-LoRA step time / ER step time (same run): {ratio:.2f}×"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if {(r["label"], r["seed"]) for r in runs} >= {(m, s) for m in args.methods for s in args.seeds}:
        print(json.dumps({"summary": {k: {m: round(v[0], 4) for m, v in s.items()} for k, s in summary.items()},
                      "ilora_over_er_step_time": ratio}))


if __name__ == "__main__":
    main()
