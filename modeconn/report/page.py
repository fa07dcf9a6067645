"""`modeconn report`'s page: the accuracy matrices, each run's consecutive barriers (in each space measured, with
accuracy along the paths when scored), the plane through the pair with the largest joint gap, the method comparison,
and the settings of every result — for anyone's runs."""
from __future__ import annotations

import json
from pathlib import Path

from ..continual.compare_check import NOT_LEARNED
from ..continual.metrics import signed
from ..provenance import settings_line
from ..plots.page import Section, render, table_html, write_report
from .sharpness import sharpness_section


def _matrices(results) -> Section | None:
    from ..plots.kinds import figure

    runs = {e.label: e.metrics for e in results.runs if e.metrics is not None}
    if not runs:
        return None
    stopped = {e.label for e in results.runs if _learned_nothing(e)}
    text = ("R[i][j] is the score on task j after training task i (each task's own metric). AP is the mean of the last "
            "row; BWT the mean change of each earlier task from its diagonal to the last row (negative: forgetting); "
            "FWT the mean gain on each next task before training it, over the base model."
            + (" Rank AP is AP by rank classification (the choice with the lowest answer loss) where the tasks have "
               "choices." if any(m.rank_ap is not None for m in runs.values()) else "") + "\n\n"
            + "; ".join(f"{k}: AP {m.ap:.3f}, " + (f"rank AP {m.rank_ap:.3f}, " if m.rank_ap is not None else "")
                        + (f"{NOT_LEARNED}" if k in stopped else f"BWT {signed(m.bwt)}")
                        + f", FWT {signed(m.fwt)}" for k, m in runs.items()) + ".")
    return Section("Accuracy matrices", text, figure(runs))


SPACE_WORDS = {"factor": "LoRA factor space (A and B interpolated separately)",
               "delta": "delta space (the merged updates ΔW = scale·B·A interpolated exactly)"}


def _curve_words(kind: str) -> str:
    """How the text names a curve kind: its registered help, the quadratic Bézier as it always read."""
    from ..lora.path_kinds import path_kind

    return "quadratic Bézier curve" if kind == "bezier" else path_kind(kind).help


def _barriers(entry, curves: bool, sweep=None) -> Section:
    from ..plots.sweep import flat_paths, sweep_figure
    from .gather import sweep_folder

    sweep = sweep or entry.sweep
    lines = sweep.consecutive("linear")
    curved = sweep.paths()[1:] if curves else []
    pairs = "; ".join(f"{r['from']} → {r['to']} {_num(r['joint_gap'])}" for r in lines)
    text = [f"Each consecutive pair of {entry.label}'s task adapters, joined by the straight path in "
            f"{SPACE_WORDS.get(sweep.space, sweep.space + ' space')}"
            + "".join(f" and by a fitted {_curve_words(k)}" for k in curved) + ". Top: the joint gap of each pair (the "
            "best point's excess loss over the better endpoint, on the worse of the two tasks; 0: some point of the path "
            "is as good as both minima on both). Below: each task's barrier (the loss above the straight line between "
            f"its endpoint losses). Joint gap along the line: {pairs}."]
    for kind in curved:
        bez = {(r["from"], r["to"]): r["joint_gap"] for r in sweep.consecutive(kind)}
        lowered = sum((bez.get((r["from"], r["to"])) or 0) < (r["joint_gap"] or 0) for r in lines)
        text.append(f"Along the fitted {'' if kind == 'bezier' else kind + ' '}curves: " + "; ".join(
            f"{a} → {b} {_num(g)}" for (a, b), g in bez.items()) + f". The curve lowers the joint gap on {lowered} of "
            f"{len(lines)} pairs.")
    flat = flat_paths(sweep)
    if flat:
        text.append(f"No per-task barrier on any pair along the {' or the '.join(flat)} path"
                    f"{'s' if len(flat) > 1 else ''}: every task's loss stays at or under the line between its endpoint "
                    "losses, so those heatmaps are left out.")
    folder = f"{entry.label}/{sweep_folder(sweep.space)}"
    return Section(f"Barriers between consecutive minima: {entry.label}, {sweep.space} space", "\n\n".join(text),
                   sweep_figure(sweep, hide_flat=True), files=[f"{folder}/sweep.json", f"{folder}/sweep.png"],
                   settings=settings_line(sweep.made_by))


def _along(entry, sweep) -> Section | None:
    """Each consecutive pair's two tasks' accuracy along its paths, by both definitions where both were scored."""
    from ..analysis.sweep import KEEPS, best_points
    from ..plots.sweep import accuracy_figure

    figure = accuracy_figure(sweep)
    if figure is None:
        return None
    best = best_points(sweep)
    text = ("Accuracy of each consecutive pair's two tasks along its paths (t = 0: the earlier task's adapter, 1: the "
            "later one's): solid, the task's own metric after greedy decoding; dashed, rank classification over the "
            "task's choices (where it has them). The table gives, per path and definition, the point where the worse of "
            "the two tasks' accuracies is highest, each task's accuracy there and at its own minimum (t = 0 for the "
            f"earlier task, t = 1 for the later), and whether that point keeps both within {KEEPS:.0%} of them.")
    rows = [[f"{b['a']} → {b['b']}", b["path"], b["by"], f"{b['t']:.2f}", f"{b['at'][0]:.3f} ({b['endpoints'][0]:.3f})",
             f"{b['at'][1]:.3f} ({b['endpoints'][1]:.3f})", "yes" if b["keeps_both"] else "no"] for b in best]
    table = table_html(["pair", "path", "scored by", "best t", "earlier task (at its minimum)",
                        "later task (at its minimum)", f"both within {KEEPS:.0%}"], rows) if rows else ""
    return Section(f"Accuracy along the paths: {entry.label}, {sweep.space} space", text, figure, table=table,
                   settings=settings_line(sweep.made_by))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plane(results) -> Section | None:
    from ..plots.kinds import figure

    if results.plane is None:
        return Section("The plane through the largest barrier", results.plane_note) if results.plane_note else None
    plane = results.plane
    marks = plane.extra.get("marks", {})
    placed = "; ".join(f"{label} at ({m['x']:.3g}, {m['y']:.3g}), {m['off_plane_relative']:.1%} of the minima's distance "
                       "off the plane" for label, m in zip(plane.labels[3:], marks.values()))
    return Section("The plane through the pair with the largest joint gap", (
        f"log10 loss of each task and of their mean over the plane {results.plane_note}; the dashed line is the "
        "straight path between the two minima, the white points the three points that span the plane"
        + (" and, projected onto it, the learners marked (each scored at its own weights)" if marks else "")
        + f". Grid minimum of the mean loss: {min(min(row) for row in plane.mean_loss()):.3f}."
        + (f"\n\nMarked: {placed}." if placed else "")
        + (f"\n\n{FOREIGN_FACTORS}" if plane.space == "factor" and any(
            not label.startswith(f"{results.pair[0]} ") for label in plane.labels[3:]) else "")),
        figure(plane), files=["plane/plane.json", "plane/plane.png"], settings=settings_line(plane.made_by))


FOREIGN_FACTORS = ("A learner marked from another run is placed in factor space, where a point depends on how its ΔW "
                   "is factorised (B·A = BG·G⁻¹A): its place is as meaningful as the two runs' factors are alike (same "
                   "seed and initialisation). `--space delta` places it without that ambiguity.")


def _comparison(results) -> Section | None:
    from ..continual.compare_table import cell, ranked
    from ..plots.kinds import figure

    c = results.comparison
    if c is None:
        return None
    rows, grey = [], []
    for label in ranked(c):
        paired, gain, stopped = c.paired.get(label, {}), c.relative_ap_gain.get(label), label in c.not_learned
        holm = c.holm.get(label, {})
        mark = "primary" if label == c.primary else ("" if not holm else f"{holm['p_holm']:.3g}"
                                                      + (" *" if holm["survives"] else ""))
        grey.append(stopped)
        rows.append([f"{label} ({NOT_LEARNED})" if stopped else label, str(len(c.groups[label]["seeds"])),
                     cell(c.summary[label].get("AP")), "—" if stopped else cell(c.summary[label].get("BWT")),
                     cell(c.summary[label].get("FWT")), cell(paired.get("AP")) if paired else "—", mark or "—",
                     f"{gain:+.1%}" if gain is not None and not stopped else "—"])
    header = ["group", "seeds", "AP", "BWT", "FWT", f"AP − {c.baseline} (paired)", "Holm-adjusted p (* < 0.05)",
              "relative AP"]
    text = (f"AP, BWT and FWT of each group of runs (runs named NAME-seedN group under NAME), ranked by AP, with the "
            f"{c.interval} of the mean in brackets and, after PI, the 95% prediction interval for one new seed; and each "
            f"group's paired difference from {c.baseline} over the seeds both have (no interval from a single seed). "
            + (f"The primary comparison is {c.primary} − {c.baseline}; " if c.primary else "No primary comparison was "
               "declared; ") + "every other AP difference has its paired t-test p-value adjusted by Holm over those "
            f"{len(c.holm)} comparisons.")
    if c.not_learned:
        text += (f"\n\n{', '.join(c.not_learned)}: {NOT_LEARNED} (no task learned above the base model in any seed), "
                 "greyed, not ranked, BWT not shown.")
    return Section("Method comparison", text, figure(c), ["comparison/compare.json", "comparison/compare.png"],
                   table=_greyed(table_html(header, rows), grey))


def _greyed(table: str, grey: list[bool]) -> str:
    """``table_html``'s table with the rows of the methods that learned nothing greyed."""
    head, header, *rows = table.split("<tr>")
    return head + "<tr>" + header + "".join(("<tr style='color:#999'>" if g else "<tr>") + r for g, r in zip(grey, rows))


def _settings(results) -> Section:
    rows = []
    for e in results.runs:
        made = json.loads((e.folder / "metrics.json").read_text()).get("made_by", {}) if e.metrics is not None else {}
        settings = made.get("settings", {})
        train = settings.get("config", {})
        rows.append([e.label, str(e.folder), str(settings.get("method", "") or "sequence"), str(settings.get("base", "")),
                     ", ".join(f"{k} {train[k]}" for k in ("rank", "lr", "epochs", "batch_size", "max_train", "seed")
                               if k in train) or (e.reason or "—")])
    text = ("What made each run (from its metrics.json) and the report's own settings: "
            + ", ".join(f"{k} {v}" for k, v in vars(results.config).items()) + ".")
    if results.reused:
        text += f"\n\nRead back instead of recomputed (same settings): {', '.join(Path(r).name for r in results.reused)} " \
                f"({len(results.reused)} results)."
    return Section("Settings", text, table=table_html(["run", "folder", "method", "base", "training"], rows))


def write_run_report(results) -> Path:
    """``report.html`` in the report folder, from the gathered results alone."""
    sections = [s for s in (_matrices(results),) if s]
    skipped = [f"{e.label} ({e.reason})" for e in results.runs if e.sweep is None and e.reason]
    for e in results.runs:
        for sweep in e.by_space().values():
            sections += [s for s in (_barriers(e, results.config.curves, sweep), _along(e, sweep)) if s]
    if skipped:
        sections.append(Section("Runs without barriers", "No paths were measured for " + "; ".join(skipped) + "."))
    sections += [s for s in (_plane(results), _comparison(results), sharpness_section(results)) if s]
    sections.append(_settings(results))
    stopped = [_learned_nothing(e) for e in results.runs]
    ranked = any(_rank_ap(e) != "—" for e in results.runs)  # a rank AP column only where some run has one
    summary = _greyed(table_html(["run", "AP", *(["rank AP"] if ranked else []), "BWT", "FWT",
                                  f"largest consecutive joint gap (line, {results.config.spaces()[0]} space)"],
                                 [[e.label + (f" ({NOT_LEARNED})" if g else ""),
                                   f"{e.metrics.ap:.3f}" if e.metrics else "—", *([_rank_ap(e)] if ranked else []),
                                   *(("—" if g else signed(e.metrics.bwt), signed(e.metrics.fwt)) if e.metrics
                                     else ("—", "—")), _largest(e)]
                                  for e, g in zip(results.runs, stopped)]), stopped)
    intro = (f"modeconn report over {len(results.runs)} run{'s' if len(results.runs) > 1 else ''}: "
             + ", ".join(e.label for e in results.runs) + ". Every number is in the JSON files beside this page, and "
             "`modeconn plot FILE.json` redraws any figure.")
    return write_report(results.out / "report.html", render("modeconn report", intro, sections, summary))


def _rank_ap(entry) -> str:
    rank = entry.metrics.rank_ap if entry.metrics is not None else None
    return "—" if rank is None else f"{rank:.3f}"


def _learned_nothing(entry) -> bool:
    """The run learned none of its tasks (``learned_flags``: from its matrices, else as its metrics.json records);
    unknown counts as no."""
    from ..continual.compare import learned_flags
    from ..errors import DataError

    if entry.metrics is None:
        return False
    try:
        record = json.loads((entry.folder / "metrics.json").read_text())
        flags = learned_flags(record, str(entry.folder / "metrics.json")) if isinstance(record, dict) else None
    except (OSError, ValueError, AttributeError, DataError):
        return False
    return isinstance(flags, list) and bool(flags) and all(f is False for f in flags)


def _largest(entry) -> str:
    if entry.sweep is None:
        return entry.reason or "—"
    rows = [r for r in entry.sweep.consecutive("linear") if r["joint_gap"] is not None]
    if not rows:
        return "n/a"
    top = max(rows, key=lambda r: r["joint_gap"])
    return f"{top['from']} → {top['to']} {top['joint_gap']:.3f}"
