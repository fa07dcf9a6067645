"""`modeconn report`'s page: the accuracy matrices, each run's consecutive barriers, the plane through the pair with
the largest joint gap, the method comparison, and the settings of every result — for anyone's runs."""
from __future__ import annotations

import json
from pathlib import Path

from ..continual.compare_check import NOT_LEARNED
from ..continual.metrics import signed
from ..provenance import settings_line
from ..plots.page import Section, render, table_html, write_report


def _matrices(results) -> Section | None:
    from ..plots.kinds import figure

    runs = {e.label: e.metrics for e in results.runs if e.metrics is not None}
    if not runs:
        return None
    stopped = {e.label for e in results.runs if _learned_nothing(e)}
    text = ("R[i][j] is the score on task j after training task i (each task's own metric). AP is the mean of the last "
            "row; BWT the mean change of each earlier task from its diagonal to the last row (negative: forgetting); "
            "FWT the mean gain on each next task before training it, over the base model.\n\n"
            + "; ".join(f"{k}: AP {m.ap:.3f}, " + (f"{NOT_LEARNED}" if k in stopped else f"BWT {signed(m.bwt)}")
                        + f", FWT {signed(m.fwt)}" for k, m in runs.items()) + ".")
    return Section("Accuracy matrices", text, figure(runs))


def _barriers(entry, curves: bool) -> Section:
    from ..plots.sweep import flat_paths, sweep_figure

    sweep = entry.sweep
    lines = sweep.consecutive("linear")
    pairs = "; ".join(f"{r['from']} → {r['to']} {_num(r['joint_gap'])}" for r in lines)
    text = [f"Each consecutive pair of {entry.label}'s task adapters, joined by the straight path in LoRA factor space"
            + (" and by a fitted quadratic Bézier curve" if curves else "") + ". Top: the joint gap of each pair (the "
            "best point's excess loss over the better endpoint, on the worse of the two tasks; 0: some point of the path "
            "is as good as both minima on both). Below: each task's barrier (the loss above the straight line between "
            f"its endpoint losses). Joint gap along the line: {pairs}."]
    if curves:
        bez = {(r["from"], r["to"]): r["joint_gap"] for r in sweep.consecutive("bezier")}
        lowered = sum((bez.get((r["from"], r["to"])) or 0) < (r["joint_gap"] or 0) for r in lines)
        text.append("Along the fitted curves: " + "; ".join(
            f"{a} → {b} {_num(g)}" for (a, b), g in bez.items()) + f". The curve lowers the joint gap on {lowered} of "
            f"{len(lines)} pairs.")
    flat = flat_paths(sweep)
    if flat:
        text.append(f"No per-task barrier on any pair along the {' or the '.join(flat)} path"
                    f"{'s' if len(flat) > 1 else ''}: every task's loss stays at or under the line between its endpoint "
                    "losses, so those heatmaps are left out.")
    return Section(f"Barriers between consecutive minima: {entry.label}", "\n\n".join(text),
                   sweep_figure(sweep, hide_flat=True), [f"{entry.label}/sweep/sweep.json", f"{entry.label}/sweep/sweep.png"],
                   settings_line(sweep.made_by))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plane(results) -> Section | None:
    from ..plots.kinds import figure

    if results.plane is None:
        return Section("The plane through the largest barrier", results.plane_note) if results.plane_note else None
    plane = results.plane
    return Section("The plane through the pair with the largest joint gap", (
        f"log10 loss of each task and of their mean over the plane {results.plane_note}; the dashed line is the "
        "straight path between the two minima, the white points the three points that span the plane. Grid minimum of "
        f"the mean loss: {min(min(row) for row in plane.mean_loss()):.3f}."),
        figure(plane), ["plane/plane.json", "plane/plane.png"], settings_line(plane.made_by))


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
    sections += [_barriers(e, results.config.curves) for e in results.runs if e.sweep is not None]
    if skipped:
        sections.append(Section("Runs without barriers", "No paths were measured for " + "; ".join(skipped) + "."))
    sections += [s for s in (_plane(results), _comparison(results)) if s]
    sections.append(_settings(results))
    stopped = [_learned_nothing(e) for e in results.runs]
    summary = _greyed(table_html(["run", "AP", "BWT", "FWT", "largest consecutive joint gap (line)"],
                                 [[e.label + (f" ({NOT_LEARNED})" if g else ""),
                                   *((f"{e.metrics.ap:.3f}", "—" if g else signed(e.metrics.bwt), signed(e.metrics.fwt))
                                     if e.metrics else ("—", "—", "—")), _largest(e)]
                                  for e, g in zip(results.runs, stopped)]), stopped)
    intro = (f"modeconn report over {len(results.runs)} run{'s' if len(results.runs) > 1 else ''}: "
             + ", ".join(e.label for e in results.runs) + ". Every number is in the JSON files beside this page, and "
             "`modeconn plot FILE.json` redraws any figure.")
    return write_report(results.out / "report.html", render("modeconn report", intro, sections, summary))


def _learned_nothing(entry) -> bool:
    """The run records (``learned`` in its metrics.json) that it learned none of its tasks; unknown counts as no."""
    if entry.metrics is None:
        return False
    try:
        flags = json.loads((entry.folder / "metrics.json").read_text()).get("learned")
    except (OSError, ValueError, AttributeError):
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
