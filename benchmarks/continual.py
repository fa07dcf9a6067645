"""The continual benchmark: hyperparameters chosen on the eval split with selection seeds, all methods over one
search budget (benchmarks/continual_selection.py: the same lr grid, whose winner should be interior, at most 3 values
of one own option, the same seeds); methods then reported on the test split with other seeds, compared by
`modeconn compare` (paired by seed with er, primary comparison ilora − er, Holm-adjusted p-values for the rest).

    python benchmarks/continual.py select [--methods …] [--jobs 2]  # continual.json: bases.<base>.selection; rerun
                                      # it while a winner sits on a grid edge: it extends the grid (finished runs kept)
    python benchmarks/continual.py report [--variants …] [--seeds …]  # results/continual_tiny-llama/: compare.*,
                                      # seconds.json, matrices.json; results/ablations_tiny-llama/ (paired with ilora);
                                      # continual.json: bases.<base>.memory
    python benchmarks/continual.py controlled [--seeds …]   # er and ilora at er's lr: results/controlled_tiny-llama/,
                                                            # continual.json: bases.<base>.controlled
    python benchmarks/continual.py report --base smollm2-135m --tasks news gloss fortune --max-train 100 \\
        --epochs 2 --batch-size 8 --eval-limit 50 --seeds 0 1 2 --variants seq er ilora
    python benchmarks/continual.py summary                            # results/continual.{json,md}

Every run is a `modeconn train` run folder under --runs/one-budget (kept outside the repository), named LABEL-seedN
so that `modeconn compare` groups it. A run finished by the same command is not run again, an interrupted one resumes
(--resume), one finished by another command is refused. Runs are single-thread processes, --jobs of them side by
side. Every method that keeps labelled past examples keeps one memory of 2.5% of the stream's training examples (the
I-LoRA paper's 500 of 20,000); A-GEM and GEM train with SGD as their references (agem-adamw, gem-adamw: AdamW).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from benchmarks.continual_selection import (LR_GRID, MAX_OWN, BudgetError, check_budget, configs,  # noqa: E402
                                            next_grid, summarize)
from benchmarks.continual_tables import comparison_lines, selection_lines  # noqa: E402

SELECTION_SEEDS = [100, 101]
REPORT_SEEDS = list(range(8))
BUFFER_FRACTION = 0.025
# what is selected: label -> (method, fixed settings). A-GEM and GEM train with SGD, as their references do (their
# projection bounds the memory loss only under it); the AdamW rows stay as named variants.
CANDIDATES = {
    "seq": ("seq", {}),
    "er": ("er", {}),
    "ewc": ("ewc", {}),
    "mtl": ("mtl", {}),
    "ilora": ("ilora", {}),
    "one": ("one", {}),
    "agem": ("agem", {"optimizer": "sgd"}),
    "agem-adamw": ("agem", {"optimizer": "adamw"}),
    "gem": ("gem", {"optimizer": "sgd"}),
    "gem-adamw": ("gem", {"optimizer": "adamw"}),
    "l2p": ("l2p", {}),
    "pp": ("pp", {}),
    "olora": ("olora", {}),
    "sure": ("sure", {}),
    "seq-path": ("seq-path", {"path": "bezier"}),  # no paper of its own to take an option from: only the lr is tuned
}
# each method's one own option (≤ MAX_OWN values), from what its paper tunes; the lr grid is the same for all
OWN = {
    "ewc": {"ewc_lambda": [1e3, 1e4, 1e5]},
    "ilora": {"ema": [0.9, 0.95, 0.99]},
    "gem": {"margin": [0.0, 0.5, 1.0]},
    "gem-adamw": {"margin": [0.0, 0.5, 1.0]},
    "olora": {"orth_lambda": [0.1, 0.5, 2.0]},
    "sure": {"sure_ema": [0.9, 0.95, 0.99]},
}

# the reported variants: label -> (method, fixed options); the options selected for SELECTED_AS (else the label
# itself) are added. The fast learners of ilora and sure need no runs of their own: those runs score both learners
# (groups ilora:fast, sure:fast).
VARIANTS = {
    **CANDIDATES,
    "mtl-cumulative": ("mtl-cumulative", {}),
    "ilora-gamma0": ("ilora", {"gamma": 0.0}),
    "ilora-reference": ("ilora", {"variant": "reference"}),
    "ilora-reference-intended": ("ilora", {"variant": "reference-intended"}),
}
ILORA_ABLATIONS = {"ilora-gamma0", "ilora-reference", "ilora-reference-intended"}  # compared with ilora, not er
SELECTED_AS = {"mtl-cumulative": "mtl", **{label: "ilora" for label in ILORA_ABLATIONS}}
PROTOCOL = "one-budget"  # the runs' sub-folder: those of the earlier protocol (other code, other grid) stay apart
PRIMARY = "ilora"  # the main table's declared comparison: ilora − er
MEMORY = {"er", "ilora", "sure", "agem", "gem", "seq-path"}  # methods keeping labelled past examples: one budget M
FLAGS = {"ewc_lambda": "--ewc-lambda", "ema": "--ema", "gamma": "--gamma", "eval_adapter": "--ilora-eval",
         "variant": "--ilora-variant", "margin": "--gem-margin", "orth_lambda": "--olora-lambda1",
         "sure_ema": "--sure-ema", "sure_eval": "--sure-eval", "path": "--path", "optimizer": "--optimizer"}


def train_args(args, method: str, options: dict, lr: float, seed: int, split: str, out: Path, name: str) -> list[str]:
    """A `modeconn train --protocol embedded` command; the benchmark's own settings override the preset. ``--resume``
    continues an interrupted run from its saved state."""
    cmd = [sys.executable, "-m", "modeconn", "train", "--protocol", "embedded", "--method", method, "--tasks",
           str(args.data), "--order", ",".join(args.tasks), "--base", args.base, "--out", str(out), "--name", name,
           "--seed", str(seed), "--lr", str(lr), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--max-train", str(args.max_train), "--eval-split", split, "--eval-limit", str(args.eval_limit), "--resume"]
    if args.base != "tiny-llama":  # attention-only LoRA with dropout on a real model (LLMCL's targets)
        cmd += ["--rank", "8", "--alpha", "16", "--dropout", "0.05", "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
    if method in MEMORY:
        cmd += ["--buffer-fraction", str(BUFFER_FRACTION)]
    for key, value in options.items():
        cmd += [FLAGS[key], str(value)]
    return cmd


def recorded_command(cmd: list[str]) -> str:
    """What a run made by ``cmd`` records as its command (``made_by.command`` of its metrics.json)."""
    return shlex.join(["modeconn", *cmd[3:]])


def finished(cmd: list[str], out: Path) -> bool:
    """The run is done, and by this very command; a run finished by another command is refused, never reused."""
    if not (out / "metrics.json").is_file():
        return False
    made = json.loads((out / "metrics.json").read_text()).get("made_by", {}).get("command")
    if made != recorded_command(cmd):
        sys.exit(f"continual.py: {out} was finished by another command ({made}); remove it, or pass another --runs")
    return True


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the train commands, ``parallel`` at a time, each a single-thread process; skip finished ones (an
    interrupted one resumes). Each run's wall time goes to ``<run>.seconds`` beside its log (the attempt that
    finished it); its log keeps every attempt. Exits if any run failed."""
    todo = [(cmd, out) for cmd, out in jobs if not finished(cmd, out)]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    running: list[tuple[subprocess.Popen, Path, float]] = []
    failed = []
    while todo or running:
        while todo and len(running) < parallel:
            cmd, out = todo.pop(0)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out.parent / f"{out.name}.log", "a") as log:
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
                else:
                    failed.append(out.name)
                print(json.dumps({"run": out.name, "status": status, "seconds": seconds}), flush=True)
    if failed:
        sys.exit(f"continual.py: {len(failed)} runs failed ({', '.join(failed)}); rerun the same command to resume them")


def compare_into(runs: list[Path], baseline: str, folder: Path, primary: str | None = None) -> dict:
    """`modeconn compare RUNS --baseline BASELINE [--primary PRIMARY]` with its outputs in ``folder``; returns the
    comparison. compare refuses an --out holding files it did not write (commands.txt, seconds.json): it writes into a
    fresh folder beside it, then its outputs move in."""
    from modeconn.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RESULTS) as scratch:
        code = main(["compare", *map(str, runs), "--baseline", baseline, "--out", str(Path(scratch) / "compare"),
                     *(["--primary", primary] if primary else [])])
        if code:
            sys.exit(code)
        for made in (Path(scratch) / "compare").iterdir():
            if not made.name.startswith("."):  # compare's own ownership record stays with its scratch folder
                os.replace(made, folder / made.name)
    return json.loads((folder / "compare.json").read_text())


def run_seconds(outs: list[Path]) -> float:
    """Summed wall time of the runs (single-thread processes; --jobs of them ran side by side)."""
    total = 0.0
    for out in outs:
        record = out.parent / f"{out.name}.seconds"
        total += float(record.read_text()) if record.is_file() else float("nan")
    return total


def metric(out: Path) -> float:
    return json.loads((out / "metrics.json").read_text())["AP"]


def results_record() -> dict:
    path = RESULTS / "continual.json"
    return json.loads(path.read_text()) if path.is_file() else {"bases": {}}


def store(base: str, **entries) -> None:
    """Put ``entries`` under the base's key of results/continual.json, keeping everything else there."""
    record = results_record()
    record.setdefault("bases", {}).setdefault(base, {}).update(entries)
    (RESULTS / "continual.json").write_text(json.dumps(record, indent=2) + "\n")


def _tag(label: str, config: dict) -> str:
    return "-".join([label, *[f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in config.items()]])


def select(args) -> None:
    """Choose each method's settings on the eval split, all over one budget (continual_selection.py), and write every
    configuration tried, its per-seed eval AP, the seeds, the winner and the grid under the base's key."""
    base_entry = results_record().get("bases", {}).get(args.base, {})
    previous, meta = base_entry.get("selection", {}), base_entry.get("selection_settings", {})
    grid = sorted(args.lr_grid or meta.get("next_lr_grid") or LR_GRID)
    plans = {label: {"lr_grid": entry["lr_grid"], "seeds": entry["seeds"],
                     "own": {k: sorted({c[k] for c in entry["configs"]}) for k in entry["selected"] if k != "lr"
                             and k != "eval_AP_mean"}}
             for label, entry in previous.items() if label not in args.methods}
    plans.update({label: {"lr_grid": grid, "seeds": args.select_seeds, "own": OWN.get(label, {})} for label in args.methods})
    try:
        check_budget(plans)
    except BudgetError as exc:
        sys.exit(f"continual.py: {exc}")
    jobs, outs = [], {}
    for label in args.methods:
        method, fixed = CANDIDATES[label]
        for config in configs(grid, OWN.get(label, {})):
            options = {**fixed, **{k: v for k, v in config.items() if k != "lr"}}
            for seed in args.select_seeds:
                name = f"{_tag(label, config)}-seed{seed}"
                out = args.runs / f"select-{args.base}" / name
                outs.setdefault(label, []).append((config, seed, out))
                jobs.append((train_args(args, method, options, config["lr"], seed, "eval", out, name), out))
    run_all(jobs, args.jobs)
    selection = dict(previous)
    for label in args.methods:
        tried = {}
        for config, seed, out in outs[label]:
            tried.setdefault(json.dumps(config), {**config, "eval_AP": []})["eval_AP"].append(metric(out))
        selection[label] = {**summarize(list(tried.values()), args.select_seeds, grid),
                            "fixed": CANDIDATES[label][1], "seconds": run_seconds([o for _, _, o in outs[label]])}
    proposed, notes = next_grid(grid, selection)
    store(args.base, selection=selection, selection_settings={
        "split": "eval", "lr_grid": grid, "next_lr_grid": proposed if proposed != grid else None, "edges": notes,
        "max_own_configurations": MAX_OWN, "buffer_fraction": BUFFER_FRACTION, "settings": vars_of(args),
        "commands": meta.get("commands", []) + ["python benchmarks/continual.py " + " ".join(sys.argv[1:])],
        "note": "eval_AP: the AP on the eval split per selection seed; seconds: summed wall time of the method's "
                "selection runs (single-thread processes, --jobs side by side)"})
    for label in args.methods:
        entry = selection[label]
        print(f"{label}: selected {entry['selected']} over lr {grid}; "
              + ("interior" if entry["interior"] else f"on the {entry['edge']} edge") + (" (flat)" if entry["flat"] else ""))
    for note in notes:
        print(note)


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func",)}


def stored_selection(base: str) -> dict:
    """The selection of ``base`` (select's record), checked to be one budget; non-interior winners are warned about."""
    selection = results_record().get("bases", {}).get(base, {}).get("selection")
    if not selection:
        sys.exit(f"continual.py: no selection for {base} in {RESULTS / 'continual.json'}; run select first")
    try:
        check_budget({label: {"lr_grid": e["lr_grid"], "seeds": e["seeds"], "own": {}} for label, e in selection.items()})
    except BudgetError as exc:
        sys.exit(f"continual.py: {exc}")
    for label, entry in selection.items():
        if not entry["interior"] and not entry["flat"]:
            print(f"warning: {label}'s selected lr {entry['selected']['lr']:g} is on the {entry['edge']} edge of the "
                  "grid; run select again (it extends the grid)", flush=True)
    return selection


def settings_of(selection: dict, label: str) -> tuple[str, dict, float]:
    """(method, options, lr) of a reported variant: its selection's winner, its candidate's and its own fixed options."""
    method, fixed = VARIANTS[label]
    chosen = SELECTED_AS.get(label, label)
    if chosen not in selection:
        sys.exit(f"continual.py: {chosen} was not selected for this base; run select --methods {chosen}")
    picked = {k: v for k, v in selection[chosen]["selected"].items() if k != "eval_AP_mean"}
    lr = picked.pop("lr")
    return method, {**CANDIDATES[chosen][1], **picked, **fixed}, lr


def report(args) -> None:
    selection = stored_selection(args.selection)
    jobs = []
    for label in args.variants:
        method, options, lr = settings_of(selection, label)
        for seed in args.seeds:
            out = args.runs / f"report-{args.base}" / f"{label}-seed{seed}"
            jobs.append((train_args(args, method, options, lr, seed, "test", out, f"{label}-seed{seed}"), out))
    run_all(jobs, args.jobs)
    # every finished run of this base so far (earlier calls may have run other variants or seeds)
    finished_runs = sorted(p.parent for p in (args.runs / f"report-{args.base}").glob("*/metrics.json")
                           if p.parent.name.rsplit("-seed", 1)[0] in VARIANTS)
    folder = RESULTS / f"continual_{args.base}"
    label_of = {out: out.name.rsplit("-seed", 1)[0] for out in finished_runs}
    main_runs = [out for out in finished_runs if label_of[out] not in ILORA_ABLATIONS]
    compare_into(main_runs, "er", folder, PRIMARY if PRIMARY in {label_of[o] for o in main_runs} else None)
    # I-LoRA's ablations on a page of their own, paired with ilora itself (same seeds), er beside them
    family = [out for out in finished_runs if label_of[out] in ILORA_ABLATIONS | {"ilora", "er"}]
    if any(label_of[out] in ILORA_ABLATIONS for out in family):
        compare_into(family, "ilora", RESULTS / f"ablations_{args.base}")
    seconds: dict[str, float] = {}
    for out, label in label_of.items():
        seconds[label] = seconds.get(label, 0.0) + run_seconds([out])
    append_command(folder)
    runs = dict(Counter(label_of.values()))
    note = ("wall time summed over each variant's runs (all seeds); every run a single-thread process, with up to two "
            "others (this script's --jobs, or other calls of it) beside it on the 2-core CPU, so a run's time depends "
            "on what ran beside it")
    (folder / "seconds.json").write_text(json.dumps({"run_seconds_by_variant": seconds, "runs_by_variant": runs,
                                                      "note": note}, indent=2) + "\n")
    (folder / "matrices.json").write_text(json.dumps(mean_matrices(label_of), indent=2) + "\n")
    store(args.base, memory=memory_of(label_of))


def append_command(folder: Path) -> None:
    calls = folder / "commands.txt"
    previous = calls.read_text().splitlines() if calls.is_file() else []
    calls.write_text("\n".join(previous + ["python benchmarks/continual.py " + " ".join(sys.argv[1:])]) + "\n")


def memory_of(label_of: dict[Path, str]) -> dict:
    """Each variant's labelled past-task examples kept (``memory_examples`` of its runs' metrics.json): one number when
    every seed kept the same, else each seed's; variants whose runs do not record it are left out."""
    kept: dict[str, set] = {}
    for out, label in label_of.items():
        value = json.loads((out / "metrics.json").read_text()).get("memory_examples")
        if value is not None:
            kept.setdefault(label, set()).add(value)
    return {label: next(iter(v)) if len(v) == 1 else sorted(v) for label, v in sorted(kept.items())}


def controlled(args) -> None:
    """er and ilora at one shared lr (er's selected one), the report's seeds: the comparison that isolates the method
    from its tuning. er's runs are the report's own (same command, same folder); ilora keeps its selected options."""
    selection = stored_selection(args.selection)
    method, er_options, lr = settings_of(selection, "er")
    ilora_method, ilora_options, ilora_lr = settings_of(selection, "ilora")
    jobs, outs = [], []
    for seed in args.seeds:
        er_out = args.runs / f"report-{args.base}" / f"er-seed{seed}"
        il_out = args.runs / f"controlled-{args.base}" / f"ilora-seed{seed}"
        jobs += [(train_args(args, method, er_options, lr, seed, "test", er_out, f"er-seed{seed}"), er_out),
                 (train_args(args, ilora_method, ilora_options, lr, seed, "test", il_out, f"ilora-seed{seed}"), il_out)]
        outs += [er_out, il_out]
    run_all(jobs, args.jobs)
    folder = RESULTS / f"controlled_{args.base}"
    comparison = compare_into(outs, "er", folder, "ilora")
    append_command(folder)
    store(args.base, controlled={"lr": lr, "ilora_selected_lr": ilora_lr, "seeds": list(args.seeds),
                                 "er": er_options, "ilora": ilora_options, "comparison": comparison,
                                 "note": "er and ilora at er's selected lr, the report's seeds (er's runs are the "
                                         "report's); ilora keeps its other selected options"})


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


def summary(args) -> None:
    """benchmarks/results/continual.{json,md}: each base's comparison, selection, memory, controlled pair and wall
    times in one place (what select, report and controlled stored there is kept)."""
    kept = {base: {k: v for k, v in entry.items() if k in ("selection", "selection_settings", "memory", "controlled")}
            for base, entry in results_record().get("bases", {}).items()}
    record, lines = {"bases": kept}, ["# Continual benchmark", "",
                                      "Made by `benchmarks/continual.py` (select on the eval split, report on the test "
                                      "split with other seeds) and `modeconn compare` (paired by seed with er; 95% "
                                      "t-intervals of the mean, PI: 95% prediction interval for one new seed; Holm-"
                                      "adjusted p-values beside the primary comparison). Each run is a single-thread "
                                      "process, with up to two others beside it on the 2-core CPU.", ""]
    for compare_json in sorted(RESULTS.glob("continual_*/compare.json")):
        base = compare_json.parent.name.removeprefix("continual_")
        result = json.loads(compare_json.read_text())
        seconds = json.loads((compare_json.parent / "seconds.json").read_text())["run_seconds_by_variant"]
        commands = (compare_json.parent / "commands.txt").read_text().splitlines()
        record["bases"].setdefault(base, {}).update(comparison=result, run_seconds_by_variant=seconds, commands=commands)
        lines += [f"## {base}", "", *comparison_lines(result, seconds), ""]
        memory = record["bases"][base].get("memory")
        if memory:
            lines += ["Labelled past-task examples kept (memory_examples): "
                      + ", ".join(f"{k} {v}" for k, v in memory.items()) + ".", ""]
        lines += ["Commands: " + "; ".join(f"`{c}`" for c in commands), ""]
    for compare_json in sorted(RESULTS.glob("ablations_*/compare.json")):
        base = compare_json.parent.name.removeprefix("ablations_")
        result = json.loads(compare_json.read_text())
        record["bases"].setdefault(base, {})["ablations"] = result
        lines += [f"## {base}: I-LoRA's ablations, paired with ilora", "", *comparison_lines(result, None), ""]
    for base, entry in record["bases"].items():
        if entry.get("controlled"):
            c = entry["controlled"]
            lines += [f"## {base}: the controlled pair (er and ilora at lr {c['lr']:g})", "",
                      *comparison_lines(c["comparison"], None), ""]
        if entry.get("selection"):
            lines += selection_lines(base, entry["selection"], entry.get("selection_settings", {}))
    for selection_json in sorted(RESULTS.glob("selection_*.json")):
        selection = json.loads(selection_json.read_text())
        record.setdefault("selection", {})[selection_json.stem.removeprefix("selection_")] = selection["chosen"]
        lines += [f"## Selected on the eval split before the one-budget protocol ({selection_json.name})", "",
                  "| method | lr | options | eval AP | selection seeds |", "|---|---|---|---|---|"]
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
    parser.add_argument("phase", choices=["select", "report", "controlled", "summary"])
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=["news", "gloss", "fortune", "stdlib"])
    parser.add_argument("--data", type=Path, default=ROOT / "checkpoints" / "data")
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-limit", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=REPORT_SEEDS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES),
                        help="select: these methods")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None,
                        help=f"select: the lr grid of every method [default: the one the last select run proposed, "
                             f"else {LR_GRID}]")
    parser.add_argument("--select-seeds", type=int, nargs="+", default=SELECTION_SEEDS,
                        help="select: the seeds each grid point is averaged over")
    parser.add_argument("--selection", default="tiny-llama", help="whose selection (in continual.json) to report with")
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("MODECONN_BENCH_RUNS", "/tmp/modeconn-bench")),
                        help=f"where the runs go (under {PROTOCOL}/: runs of the earlier protocol are never reused)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.runs = args.runs / PROTOCOL
    {"select": select, "report": report, "controlled": controlled, "summary": summary}[args.phase](args)


if __name__ == "__main__":
    main()
