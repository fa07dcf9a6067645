"""The printed table of a comparison: each group's means with 95% CIs and prediction intervals, ranked by AP; then
each paired difference from the baseline with its p-value, Holm-adjusted p-value and whether it survives."""
from __future__ import annotations

from .compare_check import ALPHA, MEASURES, NOT_LEARNED


def cell(entry: dict | None, pi: bool = True) -> str:
    """``+0.123 [+0.100, +0.146] PI [+0.050, +0.196]``; the mean alone from one seed; n/a without any."""
    if not entry:
        return "n/a"
    text = f"{entry['mean']:+.3f}"
    if entry.get("low") is not None:
        text += f" [{entry['low']:+.3f}, {entry['high']:+.3f}]"
    if pi and entry.get("pi_low") is not None:
        text += f" PI [{entry['pi_low']:+.3f}, {entry['pi_high']:+.3f}]"
    return text


def ranked(result) -> list[str]:
    """The groups by mean AP, best first; those that learned no task after them, unranked."""
    def ap(label: str) -> float:
        entry = result.summary[label].get("AP")
        return -entry["mean"] if entry else float("inf")

    learned = sorted((g for g in result.groups if g not in result.not_learned), key=ap)
    return learned + [g for g in result.groups if g in result.not_learned]


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _rank_lines(result, width: int, col: int) -> list[str]:
    """The same groups by rank classification over each task's label set, where their runs record it: rank AP, rank
    BWT and the paired rank AP difference from the baseline (not in the Holm family: AP is the declared measure)."""
    rows = [g for g in ranked(result) if result.summary[g].get("rank_AP")]
    if not rows:
        return []
    lines = ["", "by rank classification (the label with the lowest answer NLL) where every task has a label set:",
             f"{'':>4} {'method':<{width}} {'seeds':>5}  {'rank AP':<{col}}  {'rank BWT':<{col}}  "
             f"{'rank AP − ' + result.baseline + ' (paired)':<{col}}"]
    for label in rows:
        summary, paired = result.summary[label], result.paired.get(label, {})
        lines.append(f"{'':>4} {label:<{width}} {summary['rank_AP']['n']:>5}  {cell(summary['rank_AP']):<{col}}  "
                     f"{cell(summary.get('rank_BWT')):<{col}}  {cell(paired.get('rank_AP')) if paired else '—':<{col}}")
    return lines


def comparison_table(result) -> str:
    width = max(12, *(len(label) for label in result.groups))
    col = 44
    lines = ["mean over seeds [95% CI of the mean] PI [95% prediction interval for one new seed]",
             f"{'rank':>4} {'method':<{width}} {'seeds':>5}  " + "  ".join(f"{m:<{col}}" for m in MEASURES)]
    for rank, label in enumerate(ranked(result), start=1):
        summary, stopped = result.summary[label], label in result.not_learned
        cells = [cell(summary.get("AP")), NOT_LEARNED if stopped else cell(summary.get("BWT")), cell(summary.get("FWT"))]
        lines.append(f"{'—' if stopped else rank:>4} {label:<{width}} {len(result.groups[label]['seeds']):>5}  "
                     + "  ".join(f"{c:<{col}}" for c in cells))
    family = len(result.holm)
    lines += ["", f"paired difference from {result.baseline} (same seeds) [95% CI] PI [95% PI]; p: paired t-test; "
              f"p_holm: Holm-adjusted over the {family} comparisons other than the primary"
              + (f" ({result.primary})" if result.primary else " (none declared)")
              + f"; * survives at {ALPHA}:"]
    lines.append(f"{'':>4} {'method':<{width}} {'seeds':>5}  {'AP':<{col}} {'p':>8} {'p_holm':>8} {'':<7} {'BWT':<{col}}")
    for label in (g for g in ranked(result) if g in result.paired):
        measures, stopped = result.paired[label], label in result.not_learned
        ap = measures.get("AP")
        holm = result.holm.get(label, {})
        if label == result.primary:
            mark = "primary"
        elif holm:
            mark = "*" if holm["survives"] else ""
        else:
            mark = ""
        bwt = NOT_LEARNED if stopped else cell(measures.get("BWT"))
        gain = result.relative_ap_gain.get(label)
        lines.append(f"{'':>4} {label:<{width}} {ap['n'] if ap else 0:>5}  {cell(ap):<{col}} "
                     f"{_p(ap.get('p') if ap and not stopped else None):>8} {_p(holm.get('p_holm')):>8} {mark:<7} "
                     f"{bwt:<{col}}" + (f"  AP {gain:+.1%} relative" if gain is not None and not stopped else ""))
    lines += _rank_lines(result, width, col)
    if result.not_learned:
        lines += ["", f"{', '.join(result.not_learned)}: {NOT_LEARNED} (no task's accuracy rose above the base model's "
                  "by more than its binomial margin, in any seed): not ranked, BWT not shown, out of the Holm family."]
    return "\n".join(lines)
