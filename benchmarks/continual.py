"""The continual benchmark: hyperparameters chosen on the eval split with selection seeds, methods then reported on
the test split with other seeds, compared by `modeconn compare` (paired by seed with er, 95% t-intervals).

    python benchmarks/continual.py select [--jobs 2]      # writes benchmarks/results/selection.json
    python benchmarks/continual.py report [--jobs 2]      # 8 seeds per variant; results/continual_tiny-llama/compare.*
    python benchmarks/continual.py report --base smollm2-135m --tasks news gloss fortune --max-train 100 \\
        --epochs 2 --batch-size 8 --eval-limit 50 --seeds 0 1 2 --variants seq er ilora

Every run is a `modeconn train` run folder under --runs (kept outside the repository; a finished one is not run
again), named LABEL-seedN so that `modeconn compare` groups it. Runs are single-thread processes, --jobs of them side
by side. The replay buffer is 2.5% of the stream's training examples (the I-LoRA paper's 500 of 20,000).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

SELECTION_SEEDS = [100, 101]
REPORT_SEEDS = list(range(8))
BUFFER_FRACTION = 0.025
# method -> the grid it is chosen over (on the eval split, mean AP over the selection seeds); lr is chosen for every one
GRIDS = {
    "seq": {},
    "er": {},
    "ewc": {"ewc_lambda": [1e2, 1e3, 1e4, 1e5]},
    "mtl": {},
    "ilora": {"ema": [0.25, 0.9, 0.95, 0.99, 0.995], "gamma": [0.5, 1.0]},
}
LRS = [1e-3, 3e-3]
# the reported variants: label -> (method, fixed options); the selected options of the method are added
VARIANTS = {
    "seq": ("seq", {}),
    "er": ("er", {}),
    "ewc": ("ewc", {}),
    "mtl": ("mtl", {}),
    "mtl-cumulative": ("mtl-cumulative", {}),
    "ilora": ("ilora", {}),
    "ilora-fast": ("ilora", {"eval_adapter": "fast"}),
    "ilora-gamma0": ("ilora", {"gamma": 0.0}),
    "ilora-reference": ("ilora", {"variant": "reference"}),
    "ilora-reference-intended": ("ilora", {"variant": "reference-intended"}),
}
REPLAY = {"er", "ilora"}


def train_args(args, method: str, options: dict, lr: float, seed: int, split: str, out: Path, name: str) -> list[str]:
    cmd = [sys.executable, "-m", "modeconn", "train", "--method", method, "--tasks", str(args.data), "--order",
           ",".join(args.tasks), "--base", args.base, "--out", str(out), "--name", name, "--seed", str(seed), "--lr", str(lr),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--max-train", str(args.max_train),
           "--eval-split", split, "--eval-limit", str(args.eval_limit), "--resume"]
    if args.base == "tiny-llama":  # the embedded default's own LoRA settings
        cmd += ["--rank", "8", "--alpha", "16", "--dropout", "0", "--target-modules",
                "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"]
    else:
        cmd += ["--rank", "8", "--alpha", "16", "--dropout", "0.05", "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
    if method in REPLAY:
        cmd += ["--buffer-fraction", str(BUFFER_FRACTION)]
    flags = {"ewc_lambda": "--ewc-lambda", "ema": "--ema", "gamma": "--gamma", "eval_adapter": "--ilora-eval",
             "variant": "--ilora-variant"}
    for key, value in options.items():
        cmd += [flags[key], str(value)]
    return cmd


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the train commands, ``parallel`` at a time, each a single-thread process; skip finished ones."""
    todo = [(cmd, out) for cmd, out in jobs if not (out / "metrics.json").is_file()]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    running: list[tuple[subprocess.Popen, Path, float]] = []
    while todo or running:
        while todo and len(running) < parallel:
            cmd, out = todo.pop(0)
            out.parent.mkdir(parents=True, exist_ok=True)
            log = open(out.parent / f"{out.name}.log", "w")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), out, time.time()))
        time.sleep(2)
        for entry in list(running):
            proc, out, started = entry
            if proc.poll() is not None:
                running.remove(entry)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode}; see {out}.log)"
                print(json.dumps({"run": out.name, "status": status, "seconds": round(time.time() - started)}), flush=True)


def metric(out: Path) -> float:
    return json.loads((out / "metrics.json").read_text())["AP"]


def select(args) -> None:
    jobs, configs = [], {}
    for method, grid in GRIDS.items():
        for values in itertools.product(*grid.values()):
            options = dict(zip(grid, values))
            for lr in LRS:
                key = json.dumps({"method": method, "lr": lr, **options}, sort_keys=True)
                configs[key] = []
                for seed in SELECTION_SEEDS:
                    tag = "-".join([method, f"lr{lr:g}", *[f"{k}{v:g}" for k, v in options.items()]])
                    out = args.runs / "select" / f"{tag}-seed{seed}"
                    configs[key].append(out)
                    jobs.append((train_args(args, method, options, lr, seed, "eval", out, f"{tag}-seed{seed}"), out))
    run_all(jobs, args.jobs)
    chosen, table = {}, []
    for key, outs in configs.items():
        config = json.loads(key)
        score = sum(metric(o) for o in outs) / len(outs)
        table.append({**config, "eval_AP": score, "runs": [o.name for o in outs]})
        method = config["method"]
        if method not in chosen or score > chosen[method]["eval_AP"]:
            chosen[method] = {**config, "eval_AP": score}
    record = {"selection_seeds": SELECTION_SEEDS, "split": "eval", "lrs": LRS, "grids": GRIDS, "buffer_fraction": BUFFER_FRACTION,
              "settings": vars_of(args), "grid_results": table, "chosen": chosen,
              "command": "python benchmarks/continual.py " + " ".join(sys.argv[1:])}
    path = RESULTS / f"selection_{args.base}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"chosen": chosen}, indent=2))


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func",)}


def report(args) -> None:
    selection = json.loads((RESULTS / f"selection_{args.selection}.json").read_text())["chosen"]
    jobs = []
    for label in args.variants:
        method, fixed = VARIANTS[label]
        picked = dict(selection[method])
        lr = picked.pop("lr")
        options = {k: v for k, v in picked.items() if k not in ("method", "eval_AP")}
        options.update(fixed)
        for seed in args.seeds:
            out = args.runs / f"report-{args.base}" / f"{label}-seed{seed}"
            jobs.append((train_args(args, method, options, lr, seed, "test", out, f"{label}-seed{seed}"), out))
    run_all(jobs, args.jobs)
    folder = RESULTS / f"continual_{args.base}"
    from modeconn.cli import main

    code = main(["compare", *[str(out) for _, out in jobs], "--baseline", "er", "--out", str(folder)])
    if code:
        sys.exit(code)
    (folder / "command.sh").write_text("python benchmarks/continual.py " + " ".join(sys.argv[1:]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["select", "report"])
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=["news", "gloss", "fortune", "stdlib"])
    parser.add_argument("--data", type=Path, default=ROOT / "checkpoints" / "data")
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-limit", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=REPORT_SEEDS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--selection", default="tiny-llama", help="whose selection_<base>.json to report with")
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("MODECONN_BENCH_RUNS", "/tmp/modeconn-bench")))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    select(args) if args.phase == "select" else report(args)


if __name__ == "__main__":
    main()
