"""What a compare.json must hold before it is drawn or read (a hand-edited one can break any of it), the record of
what made one, and the names a comparison's table, JSON and pictures share."""
from __future__ import annotations

import math

MEASURES = ("AP", "BWT", "FWT")
# by rank classification over each task's label set, where every task of a run has one (metrics.json's rank_AP,
# rank_BWT); optional in a compare.json (one written before they were kept has none)
RANK_MEASURES = ("rank_AP", "rank_BWT")
ALPHA = 0.05
NOT_LEARNED = "did not learn at this scale"
_ENTRY_KEYS = ("mean", "low", "high", "pi_low", "pi_high", "p", "boot_low", "boot_high")


def settings_record(baseline: str, primary: str | None, seed: int, resamples: int) -> dict:
    """``made_by`` of a comparison: its settings, the library versions (scipy's too: it computes every interval)
    and the command."""
    from importlib import metadata

    from ..provenance import made_by

    record = made_by({"baseline": baseline, "primary": primary, "seed": seed, "bootstrap_resamples": resamples,
                      "bootstrap": "paired, BCa, 95%", "interval": "95% t-interval of the mean; 95% prediction interval "
                      "for one new seed", "holm_family": "AP difference from the baseline of every group but the "
                      "baseline, the primary and the groups that learned no task", "alpha": ALPHA})
    record["versions"]["scipy"] = metadata.version("scipy")
    return record


def _fail(what: str) -> None:
    raise ValueError(what)


def _is_number(value, none_ok: bool = True) -> bool:
    if value is None:
        return none_ok
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _entry(entry, where: str) -> None:
    if entry is None:
        return
    if not isinstance(entry, dict) or not _is_number(entry.get("mean"), none_ok=False):
        _fail(f"{where} should be an entry with a numeric mean")
    for key in _ENTRY_KEYS[1:]:
        if not _is_number(entry.get(key)):
            _fail(f"{where}.{key} is {entry.get(key)!r}, not a number")
    n = entry.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        _fail(f"{where}.n is {n!r}, not a count")


def check_comparison(result) -> None:
    """Raise ValueError at the first field of a Comparison read from JSON that has the wrong type or shape."""
    if not isinstance(result.baseline, str) or not isinstance(result.groups, dict) or result.baseline not in result.groups:
        _fail("baseline should name one of the groups")
    for label, group in result.groups.items():
        if not isinstance(group, dict) or not isinstance(group.get("seeds"), list):
            _fail(f"groups.{label} should hold seeds, runs and the measures")
        n = len(group["seeds"])
        if any(isinstance(s, bool) or not isinstance(s, int) for s in group["seeds"]):
            _fail(f"groups.{label}.seeds should be whole numbers")
        for m in MEASURES + tuple(k for k in RANK_MEASURES if k in group):
            values = group.get(m)
            if not isinstance(values, list) or len(values) != n or not all(_is_number(v) for v in values):
                _fail(f"groups.{label}.{m} should be {n} numbers (or null)")
    for name in ("summary", "paired", "relative_ap_gain", "holm"):
        table = getattr(result, name)
        if not isinstance(table, dict) or not set(table) <= set(result.groups):
            _fail(f"{name} should be keyed by the groups")
    for label, measures in result.summary.items():
        if not isinstance(measures, dict):
            _fail(f"summary.{label} should map measures to entries")
        for m in MEASURES + RANK_MEASURES:
            _entry(measures.get(m), f"summary.{label}.{m}")
    for label, measures in result.paired.items():
        if not isinstance(measures, dict) or not isinstance(measures.get("seeds", []), list):
            _fail(f"paired.{label} should map measures to entries")
        for m in MEASURES + RANK_MEASURES:
            _entry(measures.get(m), f"paired.{label}.{m}")
    if not all(_is_number(v) for v in result.relative_ap_gain.values()):
        _fail("relative_ap_gain should hold numbers (or null)")
    for label, row in result.holm.items():
        if not isinstance(row, dict) or not all(_is_number(row.get(k), none_ok=False) for k in ("p", "p_holm")):
            _fail(f"holm.{label} should hold p and p_holm")
    if result.primary is not None and result.primary not in result.groups:
        _fail("primary should name one of the groups")
    if not isinstance(result.not_learned, list) or not set(result.not_learned) <= set(result.groups):
        _fail("not_learned should list groups")
    if not isinstance(result.interval, str) or not (result.made_by is None or isinstance(result.made_by, dict)):
        _fail("interval should be text and made_by a record")
