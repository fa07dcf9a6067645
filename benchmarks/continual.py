"""The continual benchmark: hyperparameters chosen on the eval split with selection seeds, methods then reported on
the test split with other seeds, compared by `modeconn compare` (paired by seed with er, 95% t-intervals).

    python benchmarks/continual.py select [--methods …] [--jobs 2]  # results/selection_tiny-llama.json
    python benchmarks/continual.py report [--variants …] [--seeds …]  # results/continual_tiny-llama/: compare.*,
                                      # seconds.json, matrices.json; results/ablations_tiny-llama/ (paired with ilora)
    python benchmarks/continual.py report --base smollm2-135m --tasks news gloss fortune --max-train 100 \\
        --epochs 2 --batch-size 8 --eval-limit 50 --seeds 0 1 2 --variants seq er ilora
    python benchmarks/continual.py summary                            # results/continual.{json,md}

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
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

SELECTION_SEEDS = [100, 101]
REPORT_SEEDS = list(range(8))
BUFFER_FRACTION = 0.025
MEMORY_PER_TASK = 5  # A-GEM / GEM: the replay methods' memory (2.5% of 4 × 200 examples = 20) split over 4 tasks
LRS = [1e-3, 3e-3]
PROMPT_LRS = [1e-2, 3e-2, 1e-1]  # soft prompts train at far larger rates than LoRA (Lester et al. 2021 use 0.3)
# method -> the grid it is chosen over (on the eval split, mean AP over the selection seeds); lr for every one
GRIDS = {
    "seq": {},
    "er": {},
    "ewc": {"ewc_lambda": [1e2, 1e3, 1e4, 1e5]},
    "mtl": {},
    "ilora": {"ema": [0.25, 0.9, 0.95, 0.99, 0.995], "gamma": [0.5, 1.0]},
    "one": {},
    "agem": {},
    "gem": {"margin": [0.0, 0.5]},
    "l2p": {"lr": PROMPT_LRS},
    "pp": {"lr": PROMPT_LRS},
    "olora": {"orth_lambda": [0.1, 0.5, 2.0]},
    "sure": {"sure_ema": [0.9, 0.95, 0.99]},
    "seq-path": {"path": ["linear", "bezier"]},
}


def pruned(method: str, lr: float, options: dict) -> bool:
    """Grid points left out to save CPU time, by coordinate search on eval-split results: I-LoRA's slower averages
    (0.95, 0.99, 0.995: the paper's "slowly moving average") only at the lr that won for ema 0.25 and 0.9 (3e-3)."""
    return method == "ilora" and options.get("ema", 0.0) > 0.9 and lr != 3e-3


# the reported variants: label -> (method, fixed options); the selected options of the method are added. The fast
# learners of ilora and sure need no runs of their own: those runs score both learners (groups ilora:fast, sure:fast).
VARIANTS = {
    "seq": ("seq", {}),
    "er": ("er", {}),
    "ewc": ("ewc", {}),
    "mtl": ("mtl", {}),
    "mtl-cumulative": ("mtl-cumulative", {}),
    "ilora": ("ilora", {}),
    "ilora-gamma0": ("ilora", {"gamma": 0.0}),
    "ilora-reference": ("ilora", {"variant": "reference"}),
    "ilora-reference-intended": ("ilora", {"variant": "reference-intended"}),
    "one": ("one", {}),
    "agem": ("agem", {}),
    "gem": ("gem", {}),
    "l2p": ("l2p", {}),
    "pp": ("pp", {}),
    "olora": ("olora", {}),
    "sure": ("sure", {}),
    "seq-path": ("seq-path", {}),
}
ILORA_ABLATIONS = {"ilora-gamma0", "ilora-reference", "ilora-reference-intended"}  # compared with ilora, not er
SELECTED_AS = {"mtl-cumulative": "mtl"}  # variants without a grid of their own take these methods' choice
REPLAY = {"er", "ilora", "sure"}
MEMORY = {"agem", "gem"}
FLAGS = {"ewc_lambda": "--ewc-lambda", "ema": "--ema", "gamma": "--gamma", "eval_adapter": "--ilora-eval",
         "variant": "--ilora-variant", "margin": "--gem-margin", "orth_lambda": "--olora-lambda1",
         "sure_ema": "--sure-ema", "sure_eval": "--sure-eval", "path": "--path"}


def train_args(args, method: str, options: dict, lr: float, seed: int, split: str, out: Path, name: str) -> list[str]:
    """A `modeconn train --protocol embedded` command; the benchmark's own settings override the preset."""
    cmd = [sys.executable, "-m", "modeconn", "train", "--protocol", "embedded", "--method", method, "--tasks",
           str(args.data), "--order", ",".join(args.tasks), "--base", args.base, "--out", str(out), "--name", name,
           "--seed", str(seed), "--lr", str(lr), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--max-train", str(args.max_train), "--eval-split", split, "--eval-limit", str(args.eval_limit), "--resume"]
    if args.base != "tiny-llama":  # attention-only LoRA with dropout on a real model (LLMCL's targets)
        cmd += ["--rank", "8", "--alpha", "16", "--dropout", "0.05", "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
    if method in REPLAY:
        cmd += ["--buffer-fraction", str(BUFFER_FRACTION)]
    if method in MEMORY:
        cmd += ["--memory-per-task", str(MEMORY_PER_TASK)]
    for key, value in options.items():
        cmd += [FLAGS[key], str(value)]
    return cmd


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the train commands, ``parallel`` at a time, each a single-thread process; skip finished ones. Each run's
    wall time goes to ``<run>.seconds`` beside its log."""
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
                seconds = round(time.time() - started, 1)
                if proc.returncode == 0:
                    (out.parent / f"{out.name}.seconds").write_text(f"{seconds}\n")
                print(json.dumps({"run": out.name, "status": status, "seconds": seconds}), flush=True)


def compare_into(runs: list[Path], baseline: str, folder: Path) -> None:
    """`modeconn compare RUNS --baseline BASELINE` with its outputs in ``folder``. compare refuses an --out holding
    files it did not write (commands.txt, seconds.json): it writes into a fresh folder beside it, then its outputs move
    in."""
    from modeconn.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        code = main(["compare", *map(str, runs), "--baseline", baseline, "--out", str(Path(scratch) / "compare")])
        if code:
            sys.exit(code)
        for made in (Path(scratch) / "compare").iterdir():
            os.replace(made, folder / made.name)


def run_seconds(outs: list[Path]) -> float:
    """Summed wall time of the runs (single-thread processes; --jobs of them ran side by side)."""
    total = 0.0
    for out in outs:
        record = out.parent / f"{out.name}.seconds"
        total += float(record.read_text()) if record.is_file() else float("nan")
    return total


def metric(out: Path) -> float:
    return json.loads((out / "metrics.json").read_text())["AP"]


def select(args) -> None:
    jobs, configs = [], {}
    for method in args.methods:
        grid = {k: v for k, v in GRIDS[method].items() if k != "lr"}
        for values in itertools.product(*grid.values()):
            options = dict(zip(grid, values))
            for lr in GRIDS[method].get("lr", LRS):
                if pruned(method, lr, options):
                    continue
                key = json.dumps({"method": method, "lr": lr, **options}, sort_keys=True)
                configs[key] = []
                for seed in args.select_seeds:
                    tag = "-".join([method, f"lr{lr:g}", *[f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in options.items()]])
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
    path = RESULTS / f"selection_{args.base}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    chosen = {**previous.get("chosen", {}), **chosen}  # a later call for other methods adds to the earlier choices
    table = [r for r in previous.get("grid_results", []) if r["method"] not in args.methods] + table
    commands = [c for c in previous.get("commands", [previous.get("command")]) if c]
    seeds = {**previous.get("selection_seeds", {}), **{m: args.select_seeds for m in args.methods}}
    record = {"selection_seeds": seeds, "split": "eval", "lrs": LRS, "grids": GRIDS,
              "buffer_fraction": BUFFER_FRACTION, "memory_per_task": MEMORY_PER_TASK, "settings": vars_of(args),
              "grid_results": table, "chosen": chosen,
              "seconds": {**previous.get("seconds", {}),
                          **{m: run_seconds([o for key, outs in configs.items() if json.loads(key)["method"] == m
                                             for o in outs]) for m in args.methods}},
              "commands": commands + ["python benchmarks/continual.py " + " ".join(sys.argv[1:])]}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"chosen": chosen}, indent=2))


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func",)}


def report(args) -> None:
    selection = json.loads((RESULTS / f"selection_{args.selection}.json").read_text())["chosen"]
    jobs = []
    for label in args.variants:
        method, fixed = VARIANTS[label]
        picked = dict(selection[SELECTED_AS.get(method, method)])
        lr = picked.pop("lr")
        options = {k: v for k, v in picked.items() if k not in ("method", "eval_AP")}
        options.update(fixed)
        for seed in args.seeds:
            out = args.runs / f"report-{args.base}" / f"{label}-seed{seed}"
            jobs.append((train_args(args, method, options, lr, seed, "test", out, f"{label}-seed{seed}"), out))
    run_all(jobs, args.jobs)
    # every finished run of this base so far (earlier calls may have run other variants or seeds)
    finished = sorted(p.parent for p in (args.runs / f"report-{args.base}").glob("*/metrics.json")
                      if p.parent.name.rsplit("-seed", 1)[0] in VARIANTS)
    folder = RESULTS / f"continual_{args.base}"
    label_of = {out: out.name.rsplit("-seed", 1)[0] for out in finished}
    compare_into([out for out in finished if label_of[out] not in ILORA_ABLATIONS], "er", folder)
    # I-LoRA's ablations on a page of their own, paired with ilora itself (same seeds), er beside them
    family = [out for out in finished if label_of[out] in ILORA_ABLATIONS | {"ilora", "er"}]
    if any(label_of[out] in ILORA_ABLATIONS for out in family):
        compare_into(family, "ilora", RESULTS / f"ablations_{args.base}")
    seconds: dict[str, float] = {}
    for out, label in label_of.items():
        seconds[label] = seconds.get(label, 0.0) + run_seconds([out])
    calls = folder / "commands.txt"
    previous = calls.read_text().splitlines() if calls.is_file() else []
    calls.write_text("\n".join(previous + ["python benchmarks/continual.py " + " ".join(sys.argv[1:])]) + "\n")
    runs = dict(Counter(label_of.values()))
    note = ("wall time summed over each variant's runs (all seeds); every run a single-thread process, with up to two "
            "others (this script's --jobs, or other calls of it) beside it on the 2-core CPU, so a run's time depends "
            "on what ran beside it")
    (folder / "seconds.json").write_text(json.dumps({"run_seconds_by_variant": seconds, "runs_by_variant": runs,
                                                      "note": note}, indent=2) + "\n")
    (folder / "matrices.json").write_text(json.dumps(mean_matrices(label_of), indent=2) + "\n")


def mean_matrices(label_of: dict[Path, str]) -> dict:
    """Each variant's accuracy matrix R[i][j] (test split, after task i, on task j) averaged over its seeds: how well
    it learned each task (the diagonal) beside what it kept (the last row)."""
    rows: dict[str, list] = {}
    for out, label in label_of.items():
        rows.setdefault(label, []).append(json.loads((out / "metrics.json").read_text())["accuracy"])
    return {"note": "accuracy matrices averaged over each variant's seeds (R[i][j]: after task i, on task j)",
            "variants": {label: {"seeds": len(ms), "mean_accuracy": [[round(sum(m[i][j] for m in ms) / len(ms), 4)
                                                                       for j in range(len(ms[0][i]))]
                                                                      for i in range(len(ms[0]))]}
                         for label, ms in rows.items()}}


def _cell(entry: dict | None, signed: bool = False) -> str:
    if not entry:
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if entry.get("low") is None:
        return fmt.format(entry["mean"])
    return f"{fmt.format(entry['mean'])} [{fmt.format(entry['low'])}, {fmt.format(entry['high'])}]"


def seconds_cell(seconds: dict, label: str) -> str:
    if ":" in label:  # a dual-learner method's second learner: scored on the runs of the method itself
        return "(same runs)"
    return f"{seconds.get(label, float('nan')):.0f}"


def summary(args) -> None:
    """benchmarks/results/continual.{json,md}: each base's comparison, selection and wall times in one place."""
    record, lines = {"bases": {}}, ["# Continual benchmark", "",
                                    "Made by `benchmarks/continual.py` (select on the eval split with seeds 100–101 or 100, "
                                    "report on the test split) and `modeconn compare` (paired by seed with er, 95% "
                                    "t-intervals over seeds). Each run is a single-thread process, with up to two others "
                                    "beside it on the 2-core CPU.", ""]
    for compare_json in sorted(RESULTS.glob("continual_*/compare.json")):
        base = compare_json.parent.name.removeprefix("continual_")
        result = json.loads(compare_json.read_text())
        seconds = json.loads((compare_json.parent / "seconds.json").read_text())["run_seconds_by_variant"]
        commands = (compare_json.parent / "commands.txt").read_text().splitlines()
        record["bases"][base] = {"comparison": result, "run_seconds_by_variant": seconds, "commands": commands}
        lines += [f"## {base}", "", "| variant | seeds | AP | BWT | FWT | AP − er (paired) | BWT − er | relative AP | "
                  "run time (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for label, group in result["groups"].items():
            summ, paired = result["summary"][label], result["paired"].get(label, {})
            gain = result["relative_ap_gain"].get(label)
            lines.append(f"| {label} | {len(group['seeds'])} | {_cell(summ.get('AP'))} | {_cell(summ.get('BWT'), True)} | "
                         f"{_cell(summ.get('FWT'), True)} | {_cell(paired.get('AP'), True) if paired else '—'} | "
                         f"{_cell(paired.get('BWT'), True) if paired else '—'} | "
                         f"{f'{gain:+.1%}' if gain is not None else '—'} | {seconds_cell(seconds, label)} |")
        lines += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands), ""]
    for compare_json in sorted(RESULTS.glob("ablations_*/compare.json")):
        base = compare_json.parent.name.removeprefix("ablations_")
        result = json.loads(compare_json.read_text())
        record["bases"].setdefault(base, {})["ablations"] = result
        lines += [f"## {base}: I-LoRA's ablations, paired with ilora", "",
                  "| variant | seeds | AP | BWT | AP − ilora (paired) | BWT − ilora |", "|---|---|---|---|---|---|"]
        for label, group in result["groups"].items():
            summ, paired = result["summary"][label], result["paired"].get(label, {})
            lines.append(f"| {label} | {len(group['seeds'])} | {_cell(summ.get('AP'))} | {_cell(summ.get('BWT'), True)} | "
                         f"{_cell(paired.get('AP'), True) if paired else '—'} | "
                         f"{_cell(paired.get('BWT'), True) if paired else '—'} |")
        lines.append("")
    for selection_json in sorted(RESULTS.glob("selection_*.json")):
        selection = json.loads(selection_json.read_text())
        record.setdefault("selection", {})[selection_json.stem.removeprefix("selection_")] = selection["chosen"]
        lines += [f"## Selected on the eval split ({selection_json.name})", "", "| method | lr | options | eval AP | "
                  "selection seeds |", "|---|---|---|---|---|"]
        for method, chosen in selection["chosen"].items():
            options = {k: v for k, v in chosen.items() if k not in ("method", "lr", "eval_AP")}
            seeds = selection["selection_seeds"].get(method, [])
            lines.append(f"| {method} | {chosen['lr']:g} | {options or '—'} | {chosen['eval_AP']:.3f} | "
                         f"{', '.join(map(str, seeds))} |")
        lines.append("")
    (RESULTS / "continual.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "continual.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["select", "report", "summary"])
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=["news", "gloss", "fortune", "stdlib"])
    parser.add_argument("--data", type=Path, default=ROOT / "checkpoints" / "data")
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-limit", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=REPORT_SEEDS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS), help="select: these methods")
    parser.add_argument("--select-seeds", type=int, nargs="+", default=SELECTION_SEEDS,
                        help="select: the seeds each grid point is averaged over")
    parser.add_argument("--selection", default="tiny-llama", help="whose selection_<base>.json to report with")
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("MODECONN_BENCH_RUNS", "/tmp/modeconn-bench")))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    {"select": select, "report": report, "summary": summary}[args.phase](args)


if __name__ == "__main__":
    main()
