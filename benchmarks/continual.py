"""Continual methods on the embedded task sequence: AP and BWT per method (mean ± std over seeds), and the step
time of I-LoRA relative to experience replay measured in the same run.

    python benchmarks/continual.py [--seeds 0 1 2] [--methods seq er ewc mtl ilora ilora-0.99 ilora-reference]
    # the same comparison on a real pretrained LLM, added to the same file:
    python benchmarks/continual.py --base smollm2-135m --tasks news gloss fortune --methods seq er ilora --seeds 0 \\
        --max-train 40 --epochs 2 --batch-size 8 --eval-limit 40 --append

Writes benchmarks/results/continual.json and continual.md (one table per base model), and prints one JSON line per
run. Not a test. The step times of these long runs share the machine with whatever else runs; continual.md also
quotes the controlled ilora / er measurement of benchmarks/step_time.py where results/step_time.json has the base.
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
from modeconn.continual.config import EMBEDDED_TRAINING  # noqa: E402
from modeconn.evaluator.models import checkpoints_dir  # noqa: E402

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
# The embedded default's own training settings; any other base gets TrainConfig's defaults (the I-LoRA reference
# code's for LLaMA-family models: r 8, alpha 32, dropout 0.1 on q/k/v/o).
EMBEDDED = {**EMBEDDED_TRAINING, "epochs": 5}


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
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--eval-limit", type=int, default=None, help="test examples per task (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "continual")
    parser.add_argument("--append", action="store_true",
                        help="keep the runs already in OUT.json (a run of the same base, method and seed is replaced)")
    parser.add_argument("--by-seed", action="store_true", help="loop seeds outside methods, so a stopped run is balanced")
    args = parser.parse_args()
    data = checkpoints_dir() / "data"
    runs = json.loads(args.out.with_suffix(".json").read_text())["runs"] if args.append else []
    settings = dict(EMBEDDED) if args.base == "tiny-llama" else {}
    settings.update({k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None})
    order = [(label, seed) for label in args.methods for seed in args.seeds]
    if args.by_seed:
        order = [(label, seed) for seed in args.seeds for label in args.methods]
    for label, seed in order:
        name, options = VARIANTS[label]
        runs = [r for r in runs if (r.get("base", "tiny-llama"), r["label"], r["seed"]) != (args.base, label, seed)]
        started = time.perf_counter()
        config = TrainConfig(**settings, max_train=args.max_train, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            run = train_sequence(args.base, [(t, data / t) for t in args.tasks], get_method(name, seed=seed, **options),
                                 config, tmp, eval_limit=args.eval_limit, progress=False)
        m = run.metrics
        runs.append({"base": args.base, "tasks": args.tasks, "label": label, "seed": seed, "AP": m.ap, "BWT": m.bwt,
                     "FWT": m.fwt, "accuracy": m.accuracy, "seconds_per_step": run.seconds_per_step,
                     "wall_seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
                     "config": config.to_json(), "eval_limit": args.eval_limit})
        print(json.dumps({"base": args.base, "label": label, "seed": seed, "AP": round(m.ap, 4), "BWT": round(m.bwt, 4),
                          "seconds_per_step": round(run.seconds_per_step, 4)}), flush=True)
        write(args.out, runs)  # after every run, so a long benchmark that is stopped keeps what it measured


def summarise(runs: list[dict]) -> dict:
    """Per base model: mean ± std of AP, BWT and step time per method, and ilora's step time over er's."""
    out = {}
    for base in dict.fromkeys(r.get("base", "tiny-llama") for r in runs):
        mine = [r for r in runs if r.get("base", "tiny-llama") == base]
        summary = {}
        for label in [v for v in VARIANTS if any(r["label"] == v for r in mine)]:
            rows = [r for r in mine if r["label"] == label]
            summary[label] = {k: mean_std([r[k] for r in rows]) for k in ("AP", "BWT", "seconds_per_step")}
            summary[label]["seeds"] = sorted(r["seed"] for r in rows)
        # per seed, ilora's step time over er's (both ran in the same process, under the same load), then the mean
        step = {(r["label"], r["seed"]): r["seconds_per_step"] for r in mine}
        pairs = [step["ilora", s] / step["er", s] for s in sorted({r["seed"] for r in mine}) if ("ilora", s) in step and ("er", s) in step]
        out[base] = {"tasks": mine[0].get("tasks", TASKS), "summary": summary,
                     "ilora_over_er_step_time": statistics.fmean(pairs) if pairs else None}
    return out


def write(out: Path, runs: list[dict]) -> None:
    by_base = summarise(runs)
    result = {"split": "test", "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                           "threads": torch.get_num_threads(), "torch": torch.__version__},
              "bases": by_base, "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out.with_suffix(".json"))
    timing = out.with_name("step_time.json")
    step_times = json.loads(timing.read_text())["bases"] if timing.is_file() else {}
    lines = []
    for base, b in by_base.items():
        lines += [f"## {base}: {' → '.join(b['tasks'])}, exact match on test splits", "",
                  "| method | seeds | AP | BWT | s / step |", "|---|---|---|---|---|"]
        for label, s in b["summary"].items():
            lines.append(f"| {label} | {len(s['seeds'])} | {s['AP'][0]:.3f} ± {s['AP'][1]:.3f} | "
                         f"{s['BWT'][0]:+.3f} ± {s['BWT'][1]:.3f} | {s['seconds_per_step'][0]:.3f} |")
        if b["ilora_over_er_step_time"] is not None:
            lines += ["", f"I-LoRA step time / ER step time in these runs (same process, per seed, mean; every task, "
                          f"under whatever else ran on the machine): {b['ilora_over_er_step_time']:.2f}×"]
        timed = step_times.get(base)
        if timed:  # the controlled measurement: replay steps only, alternating runs (benchmarks/step_time.py)
            med = timed["median_seconds_per_step"]
            lines += ["", f"Measured by `benchmarks/step_time.py` ({' → '.join(timed['tasks'])}, steps of the tasks after "
                          f"the first, batch {timed['config']['batch_size']}): er {med['er']:.3f} s / step, ilora "
                          f"{med['ilora']:.3f} s / step, **ilora / er = {timed['ilora_over_er']:.2f}×** (median of "
                          f"{timed['repeats']} alternating pairs; range {min(timed['ratios']):.2f}–{max(timed['ratios']):.2f})"]
        lines.append("")
    notes = out.with_name(out.name + "_notes.md")
    if notes.is_file():  # hand-written context (which commit, what ran beside what), kept under the tables
        lines += [notes.read_text()]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
