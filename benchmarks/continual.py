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

O-LoRA's CL benchmark (`--protocol standard-cl`: `modeconn train --protocol standard-cl --tasks ROOT --order …`, ROOT
holding CL_Benchmark/ and configs/, the eval split carved from train.json) is a stream of its own: its runs go under
--runs/one-budget/{select,report,controlled}-<base>_standard-cl-<order>/, its results under
results/{continual,ablations,controlled}_<base>_standard-cl-<order>/ and continual.json's
bases.<base>.streams.standard-cl-<order> (the embedded stream's keys and folders are as they were). The SmolLM2-135M
experiment (issue 27: the tasks of the shared copy that SmolLM2 learns something of in 16 steps, in the relative
order of O-LoRA's scripts/long.sh; 128 training examples per task, one epoch of batch 8 with no accumulation, since
O-LoRA's 8 × 8 would leave 2 steps per task; every method at its defaults with only the lr searched, --own default),
from a worktree pinned to the measured commit:

    S="--protocol standard-cl --data ../shared/cl_benchmark --order QQP,RTE,SST-2,agnews --base smollm2-135m \
       --precision auto --max-train 128 --epochs 1 --batch-size 8 --grad-accum 1 --runs $RUNS --jobs 2"
    M="seq er ewc mtl ilora one agem gem l2p pp olora sure seq-path"
    python benchmarks/continual.py select $S --eval-limit 32 --own default --lr-grid 3e-4 1e-3 3e-3 \
        --sgd-lr-grid 0.1 0.3 1 --methods $M   # SGD on LoRA factors: GEM won at 1, A-GEM at 0.3 on the embedded stream
    python benchmarks/continual.py select $S --eval-limit 32 --own default --methods $M  # while a winner is on an edge
                                    # (no --lr-grid there: it would override the stored next grid)
    python benchmarks/continual.py report $S --eval-limit 64 --variants seq er ilora seq-path one mtl --seeds 0 1 2 3 4
    python benchmarks/continual.py report $S --eval-limit 64 --variants ewc agem gem olora sure l2p pp --seeds 0 1 2
    python benchmarks/continual.py controlled $S --eval-limit 64 --seeds 0 1 2 3 4
    python benchmarks/continual.py summary
    W=$RUNS/one-budget/report-smollm2-135m_standard-cl-QQP+RTE+SST-2+agnews       # then, for seq, er and ilora:
    modeconn curvature $W/seq-seed0 --limit 16 --top-k 3 --probes 10 --tol 1e-3 --seed 0 --out $RUNS/curvature/seq
    modeconn report $W/seq-seed0 $W/er-seed0 $W/ilora-seed0 --out $RUNS/mc-report --space both --accuracy \
        --dtype auto --seed 0 --curve-steps 30 --points 7 --limit 16 --grid 7 \
        --curvature $RUNS/curvature/seq/curvature.json …  # and er's, ilora's
    M="mc-sgd merge ties magmax"                    # issue 29's methods last, on the grid the others ended on
    python benchmarks/continual.py select $S --eval-limit 32 --own default --methods $M
    python benchmarks/continual.py report $S --eval-limit 64 --variants $M --seeds 0 1 2
    python benchmarks/continual.py summary

(the later report calls add their variants to the same comparison: 5 paired seeds where the issue asks for 5, 3 for
the rest). Costs seen on the 2-core machine beside other jobs (so upper bounds): one seq selection run (lr 1e-3, seed
100, eval-limit 32) 6.9 minutes wall, 6.6 CPU-minutes, beside two embedded runs (at bb9df84; an earlier pilot
of one er run, before the loss at the answer positions and the length groups of modeconn/continual/methods/base.py,
took 27 minutes with 3-4 processes side by side); the curvature of one task minimum at 4
examples and ARPACK's default tolerance 5 minutes; at the analysis's settings (--limit 8 --top-k 3 --probes 10
--tol 1e-3, seq lr 3e-4 seed 100's QQP minimum, beside two ilora runs) 14.7 minutes wall, 13.9 CPU-minutes, 8.2 GB
RSS; the report's line path of one 4-task pair with accuracy 8 minutes,
a curve-fitting step 20-30 s (niced; the steps' cost does not grow with --limit). A report pilot on the seq selection
run (lr 1e-3, seed 100; --space both --accuracy --limit 8 --points 5 --curve-steps 10 --grid 5) took 29.6 minutes
wall, 28.4 CPU-minutes, beside the chain's two runs: 13 minutes per space, three quarters of it fitting. Ten steps
are too few (the QQP → RTE curve's QQP barrier came out at 0.27 against the line's 0.04); over 30 steps at the
default lr 0.01 and at 1e-3 the fitted curve's training loss (mean of the last 10 steps, the same sampled t and
batches) fell to 0.35 and 0.34 from the line's 0.46 (`modeconn curve … --steps 30 --lr 1e-7`, the line held still),
so the report above takes 30 steps at the default lr: some 10 minutes per pair, 18 pairs for the three runs.
select, report and controlled with --dry-run print each run's command and whether it is done, would resume
or would start, and run nothing.

Every run is a `modeconn train` run folder under --runs/one-budget (kept outside the repository), named LABEL-seedN
so that `modeconn compare` groups it. A run finished by the same command is not run again; an interrupted one resumes
from its saved state (--resume), or restarts when it was stopped before its first one (benchmarks/continual_runs.py);
one finished by another command is refused. Runs are single-thread processes, --jobs of them side by side. Every
method that keeps labelled past examples keeps one memory of 2.5% of the stream's training examples (the I-LoRA
paper's 500 of 20,000); A-GEM and GEM train with SGD as their references (agem-adamw, gem-adamw: AdamW).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from benchmarks.continual_selection import (LR_GRIDS, MAX_OWN, BudgetError, check_budget, configs,  # noqa: E402
                                            grids_of, next_grids, summarize)
from benchmarks.continual_runs import finished, recorded_command, run_all, show  # noqa: E402,F401
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
    "mc-sgd": ("mc-sgd", {}),
    "merge": ("merge", {}),  # λ is chosen on the memory by the method itself, after every task
    "ties": ("ties", {}),
    "magmax": ("magmax", {}),
}
# each method's one own option (≤ MAX_OWN values), from what its paper tunes; the lr grid is the same for all
OWN = {
    "ewc": {"ewc_lambda": [1e3, 1e4, 1e5]},
    "ilora": {"ema": [0.9, 0.95, 0.99]},
    "gem": {"margin": [0.0, 0.5, 1.0]},
    "gem-adamw": {"margin": [0.0, 0.5, 1.0]},
    "olora": {"orth_lambda": [0.1, 0.5, 2.0]},
    "sure": {"sure_ema": [0.9, 0.95, 0.99]},
    "mc-sgd": {"mcsgd_lr": [0.05, 0.2, 0.8]},  # the second stage's lr (CL-Gym's default 0.05); the first stage's is the grid's
    "ties": {"ties_density": [0.1, 0.2, 0.3]},  # k, the share of each task vector kept (the paper's 20% in the middle)
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
MEMORY = {"er", "ilora", "sure", "agem", "gem", "seq-path", "mc-sgd", "merge", "ties", "magmax"}  # methods keeping labelled past examples: one budget M
FLAGS = {"ewc_lambda": "--ewc-lambda", "ema": "--ema", "gamma": "--gamma", "eval_adapter": "--ilora-eval",
         "variant": "--ilora-variant", "margin": "--gem-margin", "orth_lambda": "--olora-lambda1",
         "sure_ema": "--sure-ema", "sure_eval": "--sure-eval", "path": "--path", "optimizer": "--optimizer",
         "mcsgd_lr": "--mcsgd-lr", "ties_density": "--ties-density"}


def train_args(args, method: str, options: dict, lr: float, seed: int, split: str, out: Path, name: str) -> list[str]:
    """A `modeconn train --protocol embedded|standard-cl` command; the benchmark's own settings override the preset.
    ``--resume`` continues an interrupted run from its saved state. --precision, --max-length, --state-every and
    --grad-accum go in only when given, so the embedded runs' commands (by which finished runs are matched) stay what
    they were."""
    order = ",".join(args.tasks) if args.protocol == "embedded" else args.order
    cmd = [sys.executable, "-m", "modeconn", "train", "--protocol", args.protocol, "--method", method, "--tasks",
           str(args.data), "--order", order, "--base", args.base, "--out", str(out), "--name", name,
           "--seed", str(seed), "--lr", str(lr), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--max-train", str(args.max_train), "--eval-split", split, "--eval-limit", str(args.eval_limit), "--resume"]
    for flag, value in (("--precision", args.precision), ("--max-length", args.max_length),
                        ("--state-every", args.state_every), ("--grad-accum", args.grad_accum)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.base != "tiny-llama":  # attention-only LoRA with dropout on a real model (LLMCL's targets)
        cmd += ["--rank", "8", "--alpha", "16", "--dropout", "0.05", "--target-modules", "q_proj,k_proj,v_proj,o_proj"]
    if method in MEMORY:
        cmd += ["--buffer-fraction", str(BUFFER_FRACTION)]
    for key, value in options.items():
        cmd += [FLAGS[key], str(value)]
    return cmd


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


def stream_of(args) -> str | None:
    """The task stream's name: None for the embedded one (its results stay where they were), else ``standard-cl-``
    and the order (a named one, or the tasks joined by +)."""
    return None if args.protocol == "embedded" else "standard-cl-" + args.order.replace(",", "+")


def place(base: str, stream: str | None) -> str:
    """The suffix of the stream's run and results folders: ``<base>``, or ``<base>_<stream>``."""
    return base if stream is None else f"{base}_{stream}"


def entry_of(record: dict, base: str, stream: str | None, create: bool = False) -> dict:
    """The base's entry of continual.json (``bases.<base>``), or its stream's (``bases.<base>.streams.<stream>``)."""
    get = (lambda d, k: d.setdefault(k, {})) if create else (lambda d, k: d.get(k, {}))  # noqa: E731
    entry = get(get(record, "bases"), base)
    return entry if stream is None else get(get(entry, "streams"), stream)


def store(base: str, stream: str | None, **entries) -> None:
    """Put ``entries`` under the base's (or its stream's) key of results/continual.json, keeping everything else."""
    record = results_record()
    entry_of(record, base, stream, create=True).update(entries)
    (RESULTS / "continual.json").write_text(json.dumps(record, indent=2) + "\n")


def optimizer_of(label: str) -> str:
    """The optimizer a selected method trains with: its lr grid (continual_selection.LR_GRIDS)."""
    return CANDIDATES[label][1].get("optimizer", "adamw")


def _tag(label: str, config: dict) -> str:
    return "-".join([label, *[f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in config.items()]])


def select(args) -> None:
    """Choose each method's settings on the eval split, all over one budget (continual_selection.py), and write every
    configuration tried, its per-seed eval AP, the seeds, the winner and the grid under the base's key."""
    stream = stream_of(args)
    base_entry = entry_of(results_record(), args.base, stream)
    previous, meta = base_entry.get("selection", {}), base_entry.get("selection_settings", {})
    grids = grids_of(meta.get("next_lr_grid") or meta.get("lr_grid"))
    grids.update({k: sorted(v) for k, v in (("adamw", args.lr_grid), ("sgd", args.sgd_lr_grid)) if v})
    used = {optimizer_of(label) for label in [*args.methods, *previous]}
    grids, _ = next_grids({k: v for k, v in grids.items() if k in used}, {})  # as many points in every grid in use
    plans = {label: {"lr_grid": entry["lr_grid"], "seeds": entry["seeds"], "optimizer": optimizer_of(label),
                     "own": {k: sorted({c[k] for c in entry["configs"]}) for k in entry["selected"] if k != "lr"
                             and k != "eval_AP_mean"}}
             for label, entry in previous.items() if label not in args.methods}
    own = OWN if args.own == "searched" else {}
    plans.update({label: {"lr_grid": grids[optimizer_of(label)], "seeds": args.select_seeds,
                          "optimizer": optimizer_of(label), "own": own.get(label, {})} for label in args.methods})
    try:
        check_budget(plans)
    except BudgetError as exc:
        sys.exit(f"continual.py: {exc}")
    jobs, outs = [], {}
    for label in args.methods:
        method, fixed = CANDIDATES[label]
        for config in configs(grids[optimizer_of(label)], own.get(label, {})):
            options = {**fixed, **{k: v for k, v in config.items() if k != "lr"}}
            for seed in args.select_seeds:
                name = f"{_tag(label, config)}-seed{seed}"
                out = args.runs / f"select-{place(args.base, stream)}" / name
                outs.setdefault(label, []).append((config, seed, out))
                jobs.append((train_args(args, method, options, config["lr"], seed, "eval", out, name), out))
    if args.dry_run:
        return show(jobs)
    run_all(jobs, args.jobs)
    selection = dict(previous)
    for label in args.methods:
        tried = {}
        for config, seed, out in outs[label]:
            tried.setdefault(json.dumps(config), {**config, "eval_AP": []})["eval_AP"].append(metric(out))
        selection[label] = {**summarize(list(tried.values()), args.select_seeds, grids[optimizer_of(label)]),
                            "optimizer": optimizer_of(label), "fixed": CANDIDATES[label][1],
                            "seconds": run_seconds([o for _, _, o in outs[label]])}
    proposed, notes = next_grids(grids, selection)
    store(args.base, stream, selection=selection, selection_settings={
        "split": "eval", "lr_grid": grids, "next_lr_grid": proposed if proposed != grids else None, "edges": notes,
        "max_own_configurations": MAX_OWN, "buffer_fraction": BUFFER_FRACTION, "settings": vars_of(args),
        "commands": meta.get("commands", []) + ["python benchmarks/continual.py " + " ".join(sys.argv[1:])],
        "note": "eval_AP: the AP on the eval split per selection seed; seconds: summed wall time of the method's "
                "selection runs (single-thread processes, --jobs side by side)"})
    for label in args.methods:
        entry = selection[label]
        print(f"{label}: selected {entry['selected']} over lr {entry['lr_grid']}; "
              + ("interior" if entry["interior"] else f"on the {entry['edge']} edge") + (" (flat)" if entry["flat"] else ""))
    for note in notes:
        print(note)


def vars_of(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func",)}


def stored_selection(base: str, stream: str | None = None) -> dict:
    """The selection of ``base`` on ``stream`` (select's record), checked to be one budget; non-interior winners are
    warned about."""
    selection = entry_of(results_record(), base, stream).get("selection")
    if not selection:
        sys.exit(f"continual.py: no selection for {place(base, stream)} in {RESULTS / 'continual.json'}; run select first")
    try:
        check_budget({label: {"lr_grid": e["lr_grid"], "seeds": e["seeds"], "own": {},
                              "optimizer": e.get("optimizer", optimizer_of(label))} for label, e in selection.items()})
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


def selection_of(args) -> dict:
    """The selection to report with: --selection's (a base's, on this stream), by default the embedded stream's
    tiny-llama one, or this base's own on a standard-cl stream."""
    stream = stream_of(args)
    return stored_selection(args.selection or ("tiny-llama" if stream is None else args.base), stream)


def report(args) -> None:
    """Each variant at its selected settings, on the test split with the report's seeds; compared over every finished
    run of this base and stream (so a second call with more seeds for some variants adds to the same table)."""
    selection = selection_of(args)
    where = place(args.base, stream_of(args))
    jobs = []
    for label in args.variants:
        method, options, lr = settings_of(selection, label)
        for seed in args.seeds:
            out = args.runs / f"report-{where}" / f"{label}-seed{seed}"
            jobs.append((train_args(args, method, options, lr, seed, "test", out, f"{label}-seed{seed}"), out))
    if args.dry_run:
        return show(jobs)
    run_all(jobs, args.jobs)
    # every finished run of this base so far (earlier calls may have run other variants or seeds)
    finished_runs = sorted(p.parent for p in (args.runs / f"report-{where}").glob("*/metrics.json")
                           if p.parent.name.rsplit("-seed", 1)[0] in VARIANTS)
    folder = RESULTS / f"continual_{where}"
    label_of = {out: out.name.rsplit("-seed", 1)[0] for out in finished_runs}
    main_runs = [out for out in finished_runs if label_of[out] not in ILORA_ABLATIONS]
    compare_into(main_runs, "er", folder, PRIMARY if PRIMARY in {label_of[o] for o in main_runs} else None)
    # I-LoRA's ablations on a page of their own, paired with ilora itself (same seeds), er beside them
    family = [out for out in finished_runs if label_of[out] in ILORA_ABLATIONS | {"ilora", "er"}]
    if any(label_of[out] in ILORA_ABLATIONS for out in family):
        compare_into(family, "ilora", RESULTS / f"ablations_{where}")
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
    store(args.base, stream_of(args), memory=memory_of(label_of))


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
    from its tuning. er's runs are the report's own (same command, same folder); ilora keeps its selected options,
    and where its selected lr is er's its runs are the report's too (the same command but for --out)."""
    selection = selection_of(args)
    where = place(args.base, stream_of(args))
    method, er_options, lr = settings_of(selection, "er")
    ilora_method, ilora_options, ilora_lr = settings_of(selection, "ilora")
    jobs, outs = [], []
    for seed in args.seeds:
        er_out = args.runs / f"report-{where}" / f"er-seed{seed}"
        il_out = args.runs / (f"report-{where}" if ilora_lr == lr else f"controlled-{where}") / f"ilora-seed{seed}"
        jobs += [(train_args(args, method, er_options, lr, seed, "test", er_out, f"er-seed{seed}"), er_out),
                 (train_args(args, ilora_method, ilora_options, lr, seed, "test", il_out, f"ilora-seed{seed}"), il_out)]
        outs += [er_out, il_out]
    if args.dry_run:
        return show(jobs)
    run_all(jobs, args.jobs)
    folder = RESULTS / f"controlled_{where}"
    comparison = compare_into(outs, "er", folder, "ilora")
    append_command(folder)
    store(args.base, stream_of(args), controlled={"lr": lr, "ilora_selected_lr": ilora_lr, "seeds": list(args.seeds),
                                 "er": er_options, "ilora": ilora_options, "comparison": comparison,
                                 "ilora_runs_are_the_report's": ilora_lr == lr,
                                 "note": "er and ilora at er's selected lr, the report's seeds (er's runs are the "
                                         "report's, and ilora's too where its selected lr is er's); ilora keeps its "
                                         "other selected options"})


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


KEPT = ("selection", "selection_settings", "memory", "controlled")  # what select, report and controlled store


def _kept(entry: dict) -> dict:
    """What summary keeps of a base's entry: the stored keys, and those of each of its streams."""
    streams = {name: {k: v for k, v in e.items() if k in KEPT} for name, e in entry.get("streams", {}).items()}
    return {**{k: v for k, v in entry.items() if k in KEPT}, **({"streams": streams} if streams else {})}


def _folders(pattern: str) -> list[tuple[Path, str, str | None]]:
    """Each results folder ``<kind>_<base>[_<stream>]`` holding a compare.json, with its base and stream."""
    found = []
    for compare_json in sorted(RESULTS.glob(f"{pattern}_*/compare.json")):
        base, _, stream = compare_json.parent.name.removeprefix(f"{pattern}_").partition("_")
        found.append((compare_json.parent, base, stream or None))
    return found


def _title(base: str, stream: str | None) -> str:
    return base if stream is None else f"{base}, {stream}"


def summary(args) -> None:
    """benchmarks/results/continual.{json,md}: each base's (and stream's) comparison, selection, memory, controlled
    pair and wall times in one place (what select, report and controlled stored there is kept)."""
    kept = {base: _kept(entry) for base, entry in results_record().get("bases", {}).items()}
    record, lines = {"bases": kept}, ["# Continual benchmark", "",
                                      "Made by `benchmarks/continual.py` (select on the eval split, report on the test "
                                      "split with other seeds) and `modeconn compare` (paired by seed with er; 95% "
                                      "t-intervals of the mean, PI: 95% prediction interval for one new seed; Holm-"
                                      "adjusted p-values beside the primary comparison). Each run is a single-thread "
                                      "process, with up to two others beside it on the 2-core CPU.", ""]
    for folder, base, stream in _folders("continual"):
        result = json.loads((folder / "compare.json").read_text())
        seconds = json.loads((folder / "seconds.json").read_text())["run_seconds_by_variant"]
        commands = (folder / "commands.txt").read_text().splitlines()
        entry = entry_of(record, base, stream, create=True)
        entry.update(comparison=result, run_seconds_by_variant=seconds, commands=commands)
        lines += [f"## {_title(base, stream)}", "", *comparison_lines(result, seconds), ""]
        if entry.get("memory"):
            lines += ["Labelled past-task examples kept (memory_examples): "
                      + ", ".join(f"{k} {v}" for k, v in entry["memory"].items()) + ".", ""]
        lines += ["Commands: " + "; ".join(f"`{c}`" for c in commands), ""]
    for folder, base, stream in _folders("ablations"):
        result = json.loads((folder / "compare.json").read_text())
        entry_of(record, base, stream, create=True)["ablations"] = result
        lines += [f"## {_title(base, stream)}: I-LoRA's ablations, paired with ilora", "",
                  *comparison_lines(result, None), ""]
    for base, base_entry in record["bases"].items():
        for stream, entry in [(None, base_entry), *base_entry.get("streams", {}).items()]:
            if entry.get("controlled"):
                c = entry["controlled"]
                lines += [f"## {_title(base, stream)}: the controlled pair (er and ilora at lr {c['lr']:g})", "",
                          *comparison_lines(c["comparison"], None), ""]
            if entry.get("selection"):
                lines += selection_lines(_title(base, stream), entry["selection"], entry.get("selection_settings", {}))
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
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["select", "report", "controlled", "summary"])
    parser.add_argument("--protocol", choices=["embedded", "standard-cl"], default="embedded",
                        help="the task stream: the embedded one (--tasks of --data), or O-LoRA's CL benchmark (--order "
                             "of the tasks under --data, the folder holding CL_Benchmark/ and configs/)")
    parser.add_argument("--base", default="tiny-llama")
    parser.add_argument("--tasks", nargs="+", default=["news", "gloss", "fortune", "stdlib"],
                        help="embedded: the tasks, in order")
    parser.add_argument("--order", default=None,
                        help="standard-cl: a named order (order1, order2, order3, long) or comma-separated tasks")
    parser.add_argument("--data", type=Path, default=None,
                        help="the tasks' root [embedded: checkpoints/data; standard-cl: required]")
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-limit", type=int, default=100)
    parser.add_argument("--precision", default=None, help="train --precision (auto: bf16 where fast) [train's default]")
    parser.add_argument("--max-length", type=int, default=None, help="train --max-length [train's default]")
    parser.add_argument("--state-every", type=int, default=None,
                        help="train --state-every: steps between saved states [train's default]")
    parser.add_argument("--grad-accum", type=int, default=None,
                        help="train --grad-accum [the protocol's: 1 embedded, 8 standard-cl as O-LoRA's scripts, "
                             "which on a short stream leaves a handful of steps per task]")
    parser.add_argument("--own", choices=["searched", "default"], default="searched",
                        help="select: searched: each method's one own option over its values (OWN) beside the lr; "
                             "default: every method at its paper's defaults, only the lr searched (the same budget "
                             "for all, at a third of the runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=REPORT_SEEDS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES),
                        help="select: these methods")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None,
                        help=f"select: the lr grid of every AdamW method [default: the one the last select run "
                             f"proposed, else {LR_GRIDS['adamw']}]")
    parser.add_argument("--sgd-lr-grid", type=float, nargs="+", default=None,
                        help=f"select: the lr grid of every SGD method (agem, gem), as many points as the AdamW grid "
                             f"[default: the one the last select run proposed, else {LR_GRIDS['sgd']}]")
    parser.add_argument("--select-seeds", type=int, nargs="+", default=SELECTION_SEEDS,
                        help="select: the seeds each grid point is averaged over")
    parser.add_argument("--selection", default=None, help="whose selection (a base in continual.json, on this stream) "
                                                          "to report with [embedded: tiny-llama; standard-cl: --base]")
    parser.add_argument("--runs", type=Path, default=Path(os.environ.get("MODECONN_BENCH_RUNS", "/tmp/modeconn-bench")),
                        help=f"where the runs go (under {PROTOCOL}/: runs of the earlier protocol are never reused)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go [benchmarks/results]")
    parser.add_argument("--dry-run", action="store_true", help="select, report, controlled: print each run's command "
                                                               "and whether it is done, would resume or start; run "
                                                               "nothing, write nothing")
    args = parser.parse_args()
    if args.protocol == "standard-cl" and (args.order is None or args.data is None):
        parser.error("--protocol standard-cl needs --order and --data (the folder holding CL_Benchmark/ and configs/)")
    if args.protocol == "embedded" and args.order is not None:
        parser.error("--order is for --protocol standard-cl; the embedded stream's order is --tasks")
    if args.phase == "summary" and args.dry_run:
        parser.error("--dry-run is for select, report and controlled")
    args.data = args.data or ROOT / "checkpoints" / "data"
    args.runs = args.runs / PROTOCOL
    RESULTS = args.results
    {"select": select, "report": report, "controlled": controlled, "summary": summary}[args.phase](args)


if __name__ == "__main__":
    main()
