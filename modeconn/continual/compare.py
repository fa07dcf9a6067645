"""Comparing continual methods over seeds: runs grouped by method (and variant), paired by seed with a baseline.

For each group: AP, BWT and FWT as the mean over seeds with a 95% t-interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n). For each
group against the baseline, over the seeds both have: the paired difference of each measure with its 95% t-interval,
and the relative AP gain (mean AP − baseline mean AP) / baseline mean AP, the form of the I-LoRA paper's "up to 11%".
The dual-learner methods (ilora, sure) also record the learner they do not evaluate, scored on the same run: it
forms a group of its own, ``LABEL:fast`` (or ``LABEL:slow``), paired with the others by seed like any run.
A t-interval assumes the seed-to-seed differences are roughly normal; with 8 seeds that is the usual choice, and the
per-seed numbers are in the result for anyone who prefers a bootstrap.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError
from ..files import json_text

MEASURES = ("AP", "BWT", "FWT")
_SEED = re.compile(r"^(?P<label>.+)-seed(?P<seed>\d+)$")


@dataclass
class Run:
    label: str
    seed: int
    scores: dict[str, float | None]  # AP, BWT, FWT
    path: str


def interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high) of a 95% t-interval; None for fewer than two values."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _label(folder: Path, record: dict) -> tuple[str, int]:
    """A run's group label and seed: from its name (``…-seedN``) when it has one, else the method and its options."""
    settings = record.get("made_by", {}).get("settings", {})
    seed = settings.get("config", {}).get("seed")
    name = ""
    manifest = folder / "sequence.json"
    if manifest.is_file():
        name = json.loads(manifest.read_text()).get("name", "")
    match = _SEED.match(name)
    if match:
        return match["label"], int(match["seed"]) if seed is None else seed
    options = settings.get("options", {})
    from .registry import METHODS

    defaults = {}
    if record.get("method") in METHODS:
        from .methods import option_fields

        defaults = {f.name: f.default for f in option_fields(METHODS[record["method"]])}
    changed = [f"{k}={v}" for k, v in sorted(options.items()) if defaults.get(k, object()) != v]
    return record.get("method", folder.name) + (f"[{','.join(changed)}]" if changed else ""), seed if seed is not None else 0


def read_runs(paths: list[str]) -> list[Run]:
    """Every finished run (a folder with metrics.json) at or one or two levels below each path."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such run folder")
        found = [path] if (path / "metrics.json").is_file() else sorted(
            {m.parent for pattern in ("*/metrics.json", "*/*/metrics.json") for m in path.glob(pattern)})
        if not found:
            raise DataError(f"{path}: holds no finished run (no metrics.json)")
        for folder in found:
            try:
                record = json.loads((folder / "metrics.json").read_text())
                label, seed = _label(folder, record)
                scores = {m: record.get(m) for m in MEASURES}
            except (ValueError, AttributeError, TypeError) as exc:
                raise DataError(f"{folder / 'metrics.json'}: not a run's metrics ({exc})") from None
            runs.append(Run(label, int(seed), scores, str(folder)))
            other = _other_learner(record)
            if other is not None:
                runs.append(Run(f"{label}:{other[0]}", int(seed), other[1], str(folder)))
    return runs


def _other_learner(record: dict) -> tuple[str, dict] | None:
    """The dual-learner methods' second learner (``method_record.other_learner``: the one not evaluated, scored on
    the same run) as its own group, ``LABEL:fast`` or ``LABEL:slow``."""
    from .metrics import ContinualMetrics

    other = (record.get("method_record") or {}).get("other_learner")
    if not isinstance(other, dict) or not other.get("accuracy"):
        return None
    try:
        scores = ContinualMetrics(tasks=[], accuracy=other["accuracy"], initial_accuracy=record.get("initial_accuracy"))
        return str(other["learner"]), {"AP": scores.ap, "BWT": scores.bwt, "FWT": scores.fwt}
    except (KeyError, TypeError, IndexError, ZeroDivisionError) as exc:
        raise DataError(f"metrics.json: a malformed other_learner record ({exc!r})") from None


@dataclass
class Comparison:
    baseline: str
    groups: dict[str, dict]  # label -> {"seeds": [...], "runs": [...], "AP": [...], "BWT": [...], "FWT": [...]}
    summary: dict[str, dict] = field(default_factory=dict)  # label -> measure -> {mean, low, high, n}
    paired: dict[str, dict] = field(default_factory=dict)  # label -> measure -> {mean, low, high, n, seeds}
    relative_ap_gain: dict[str, float | None] = field(default_factory=dict)
    interval: str = "95% t-interval over seeds"

    def to_json(self) -> dict:
        return {"kind": "comparison", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> "Comparison":
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def dumps(self) -> str:
        return json_text(self.to_json())

    def table(self) -> str:
        def cell(entry: dict | None) -> str:
            if not entry:
                return "n/a"
            if entry.get("low") is None:
                return f"{entry['mean']:+.3f}"
            return f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"

        width = max(12, *(len(label) for label in self.groups))
        lines = [f"{'method':<{width}} {'seeds':>5}  " + "  ".join(f"{m:<26}" for m in MEASURES)]
        for label in self.groups:
            lines.append(f"{label:<{width}} {len(self.groups[label]['seeds']):>5}  "
                         + "  ".join(f"{cell(self.summary[label].get(m)):<26}" for m in MEASURES))
        lines += ["", f"paired difference from {self.baseline} (same seeds), {self.interval}:"]
        for label, measures in self.paired.items():
            gain = self.relative_ap_gain.get(label)
            lines.append(f"{label:<{width}} {measures['AP']['n'] if measures.get('AP') else 0:>5}  "
                         + "  ".join(f"{cell(measures.get(m)):<26}" for m in MEASURES)
                         + (f"  AP {gain:+.1%} relative" if gain is not None else ""))
        return "\n".join(lines)


def _entry(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    bounds = interval(values)
    mean = sum(values) / len(values)
    return {"mean": mean, "low": bounds[1] if bounds else None, "high": bounds[2] if bounds else None, "n": len(values)}


def compare(runs: list[Run], baseline: str = "er") -> Comparison:
    """Group, summarise, and pair every group with ``baseline`` by seed."""
    groups: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: (r.label, r.seed)):
        group = groups.setdefault(run.label, {"seeds": [], "runs": [], **{m: [] for m in MEASURES}})
        if run.seed in group["seeds"]:
            raise DataError(f"two runs of {run.label} have seed {run.seed}: {group['runs'][group['seeds'].index(run.seed)]} "
                            f"and {run.path}")
        group["seeds"].append(run.seed)
        group["runs"].append(run.path)
        for m in MEASURES:
            group[m].append(run.scores[m])
    if baseline not in groups:
        raise DataError(f"no runs of the baseline {baseline!r}; the runs are of {sorted(groups)}")
    result = Comparison(baseline, groups)
    base = dict(zip(groups[baseline]["seeds"], range(len(groups[baseline]["seeds"]))))
    for label, group in groups.items():
        result.summary[label] = {m: _entry(group[m]) for m in MEASURES}
        if label == baseline:
            continue
        common = [s for s in group["seeds"] if s in base]
        result.paired[label] = {"seeds": common}
        for m in MEASURES:
            diffs = [group[m][group["seeds"].index(s)] - groups[baseline][m][base[s]] for s in common
                     if group[m][group["seeds"].index(s)] is not None and groups[baseline][m][base[s]] is not None]
            result.paired[label][m] = _entry(diffs)
        base_ap = [groups[baseline]["AP"][base[s]] for s in common]
        gain = result.paired[label]["AP"]
        result.relative_ap_gain[label] = gain["mean"] / (sum(base_ap) / len(base_ap)) if gain and sum(base_ap) else None
    return result
