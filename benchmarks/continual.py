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
    args = parser.parse_args()
    data = checkpoints_dir() / "data"
    runs = []
    for label in args.methods:
        name, options = VARIANTS[label]
        for seed in args.seeds:
            extra = {"seed": seed} if name in ("er", "ilora") else {}
            config = TrainConfig(**CONFIG, max_train=args.max_train, seed=seed)
            with tempfile.TemporaryDirectory() as tmp:
                run = train_sequence(args.base, [(t, data / t) for t in args.tasks], get_method(name, **options, **extra),
                                     config, tmp, progress=False)
            m = run.metrics
            runs.append({"label": label, "seed": seed, "AP": m.ap, "BWT": m.bwt, "FWT": m.fwt, "accuracy": m.accuracy,
                         "seconds_per_step": run.seconds_per_step})
            print(json.dumps({"label": label, "seed": seed, "AP": round(m.ap, 4), "BWT": round(m.bwt, 4),
                              "seconds_per_step": round(run.seconds_per_step, 4)}), flush=True)
            write(args, runs)  # after every run, so a long benchmark that is stopped keeps what it measured


def write(args, runs: list[dict]) -> None:
    summary = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        mine = [r for r in runs if r["label"] == label]
        summary[label] = {k: mean_std([r[k] for r in mine]) for k in ("AP", "BWT", "seconds_per_step")}
    ratio = None
    if "ilora" in summary and "er" in summary:
        ratio = summary["ilora"]["seconds_per_step"][0] / summary["er"]["seconds_per_step"][0]
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
    if len(runs) == len(args.methods) * len(args.seeds):
        print(json.dumps({"summary": {k: {m: round(v[0], 4) for m, v in s.items()} for k, s in summary.items()},
                      "ilora_over_er_step_time": ratio}))


if __name__ == "__main__":
    main()
