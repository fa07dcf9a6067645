"""The markdown tables of benchmarks/results/continual.md: a comparison ranked by AP with its intervals and Holm marks
(a method that learned no task last, in italics, without BWT), and a base's one-budget selection."""
from __future__ import annotations

from benchmarks.continual_selection import MAX_OWN


def _cell(entry: dict | None, signed: bool = False) -> str:
    """``mean [95% CI] PI [95% PI]`` (the PI where the comparison has one)."""
    if not entry:
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if entry.get("low") is None:
        return fmt.format(entry["mean"])
    text = f"{fmt.format(entry['mean'])} [{fmt.format(entry['low'])}, {fmt.format(entry['high'])}]"
    if entry.get("pi_low") is not None:
        text += f" PI [{fmt.format(entry['pi_low'])}, {fmt.format(entry['pi_high'])}]"
    return text


def seconds_cell(seconds: dict, label: str) -> str:
    if ":" in label:  # a dual-learner method's second learner: scored on the runs of the method itself
        return "(same runs)"
    return f"{seconds.get(label, float('nan')):.0f}"


def holm_cell(result: dict, label: str) -> str:
    """The Holm-adjusted p-value with * where it survives at 0.05; "primary" for the declared comparison."""
    if label == result.get("primary"):
        p = (result["paired"][label].get("AP") or {}).get("p")
        return "primary" + (f" (p {p:.3g})" if p is not None else "")
    row = result.get("holm", {}).get(label)
    return f"{row['p_holm']:.3g}{' *' if row['survives'] else ''}" if row else "—"


def comparison_lines(result: dict, seconds: dict | None) -> list[str]:
    """A comparison as a markdown table, ranked by AP; groups that learned no task last, greyed out in words."""
    stopped = set(result.get("not_learned", []))
    order = sorted(result["groups"], key=lambda g: (g in stopped, -(result["summary"][g].get("AP") or {"mean": 0})["mean"]))
    base = result["baseline"]
    ranked = any((result["summary"][g].get("rank_AP") or {}).get("mean") is not None for g in order)
    lines = [f"| variant | seeds | AP | BWT | FWT | AP − {base} (paired) | Holm p (* < 0.05) | BWT − {base} | "
             "relative AP |" + (f" rank AP | rank AP − {base} (paired) |" if ranked else "")
             + (" run time (s) |" if seconds is not None else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if ranked else "")
             + ("---|" if seconds is not None else "")]
    for label in order:
        summ, paired = result["summary"][label], result["paired"].get(label, {})
        gain, grey = result["relative_ap_gain"].get(label), label in stopped
        name = f"_{label} (did not learn at this scale)_" if grey else label
        lines.append(f"| {name} | {len(result['groups'][label]['seeds'])} | {_cell(summ.get('AP'))} | "
                     f"{'—' if grey else _cell(summ.get('BWT'), True)} | {_cell(summ.get('FWT'), True)} | "
                     f"{_cell(paired.get('AP'), True) if paired else '—'} | {holm_cell(result, label) if paired else '—'} | "
                     f"{'—' if grey or not paired else _cell(paired.get('BWT'), True)} | "
                     f"{f'{gain:+.1%}' if gain is not None and not grey else '—'} |"
                     + (f" {_cell(summ.get('rank_AP'))} | {_cell(paired.get('rank_AP'), True) if paired else '—'} |"
                        if ranked else "")
                     + (f" {seconds_cell(seconds, label)} |" if seconds is not None else ""))
    return lines


def _grids(grids) -> str:
    """``{"adamw": [...], "sgd": [...]}`` (or an older record's single list) as text."""
    if isinstance(grids, dict):
        return "; ".join(f"{optimizer} {[float(f'{lr:g}') for lr in grid]}" for optimizer, grid in grids.items())
    return str(grids)


def selection_lines(base: str, selection: dict, meta: dict) -> list[str]:
    lines = [f"## {base}: selected on the eval split (one budget)", "",
             f"Every method over its optimizer's lr grid ({_grids(meta.get('lr_grid'))}) × at most {MAX_OWN} values of "
             f"one own option, seeds "
             f"{next(iter(selection.values()))['seeds']}." + (f" Next select run's grid: {meta['next_lr_grid']}."
                                                              if meta.get("next_lr_grid") else ""), "",
             "| method | configurations | selected | eval AP (mean) | lr interior |", "|---|---|---|---|---|"]
    for label, entry in selection.items():
        chosen = {k: v for k, v in entry["selected"].items() if k != "eval_AP_mean"}
        where = "yes" if entry["interior"] else f"no ({entry['edge']} edge)"
        lines.append(f"| {label} | {len(entry['configs'])} ({entry.get('optimizer', 'adamw')}) | {chosen} | "
                     f"{entry['selected']['eval_AP_mean']:.3f} | "
                     f"{where}{' (flat)' if entry['flat'] else ''} |")
    return lines + [""]
