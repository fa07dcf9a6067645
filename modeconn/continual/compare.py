"""Comparing continual methods over seeds: runs grouped by method (and variant), paired by seed with a baseline.

For each group: AP, BWT and FWT as the mean over seeds with the 95% t-interval of the mean (mean ± t₀.₉₇₅,ₙ₋₁·s/√n)
and the 95% prediction interval for one new seed (mean ± t₀.₉₇₅,ₙ₋₁·s·√(1 + 1/n)). For each group against the
baseline, over the seeds both have: the paired difference of each measure (and of rank AP and rank BWT, by rank
classification over each task's label set, where the runs record them) with the same two intervals, the paired
t-test's two-sided p-value, a paired bootstrap interval (BCa) as a cross-check of the t-interval, and the relative AP
gain (mean AP − baseline mean AP) / baseline mean AP, the form of the I-LoRA paper's "up to 11%".

``primary`` declares the one comparison the study is about (its AP difference from the baseline, unadjusted). Every
other group's AP difference from the baseline is one member of a second family, and gets a Holm-adjusted p-value over
that family: the AP differences of every group except the baseline, the primary and the groups that learned no task,
over those with at least two paired seeds. Without a primary the family is every such group.

A group whose every run records (``learned`` in metrics.json) that it learned none of its tasks "did not learn at
this scale": it is shown, not ranked, kept out of the Holm family, and its BWT (trivially about 0) is not shown.
The dual-learner methods (ilora, sure) also record the learner they do not evaluate, scored on the same run: it forms
a group of its own, ``LABEL:fast`` (or ``LABEL:slow``), paired with the others by seed like any run.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from ..checks import load_json_text
from ..errors import DataError
from ..results import JsonResult
from .compare_check import ALPHA, MEASURES, RANK_MEASURES, check_comparison, settings_record

RANGES = {"AP": (0.0, 1.0), "BWT": (-1.0, 1.0), "FWT": (-1.0, 1.0), "rank_AP": (0.0, 1.0), "rank_BWT": (-1.0, 1.0)}
SCORED = MEASURES + RANK_MEASURES  # every measure summarised and paired (the rank ones where runs record them)
_SEED = re.compile(r"^(?P<label>.+)-seed(?P<seed>\d+)$")


@dataclass
class Run:
    label: str
    seed: int
    scores: dict[str, float | None]  # AP, BWT, FWT, and rank_AP, rank_BWT (None where not recorded)
    path: str
    learned: list[bool | None] | None = None  # per task; None: the run does not say


def _t_bounds(values: list[float]) -> tuple[float, float, float, float, float] | None:
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    q = t.ppf(0.975, n - 1)
    ci, pi = q * sd / math.sqrt(n), q * sd * math.sqrt(1 + 1 / n)
    return mean, mean - ci, mean + ci, mean - pi, mean + pi


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: the k-th smallest times (m − k + 1), made monotone, capped at 1. Written
    out because scipy has no Holm (``false_discovery_control`` is Benjamini–Hochberg/Yekutieli only)."""
    order = sorted(pvalues, key=pvalues.get)
    adjusted, running = {}, 0.0
    for k, label in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * pvalues[label]))
        adjusted[label] = running
    return adjusted


def paired_p(diffs: list[float]) -> float | None:
    """Two-sided p-value of the paired t-test (a one-sample t-test of the differences against 0)."""
    from scipy.stats import ttest_1samp

    if len(diffs) < 2 or max(diffs) == min(diffs):
        return None
    return float(ttest_1samp(diffs, 0.0).pvalue)


def paired_bootstrap(values: list[float], base: list[float], seed: int, resamples: int) -> tuple[float, float] | None:
    """95% BCa interval of the mean paired difference, resampling seeds (``scipy.stats.bootstrap``, paired)."""
    import warnings

    import numpy as np
    from scipy.stats import bootstrap

    diffs = [v - b for v, b in zip(values, base)]
    if len(diffs) < 3 or max(diffs) == min(diffs):  # BCa's jackknife needs some spread and more than two seeds
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample is reported as NaN, turned into None below
        res = bootstrap((np.asarray(values), np.asarray(base)), lambda x, y, axis: np.mean(x - y, axis=axis),
                        paired=True, vectorized=True, method="BCa", n_resamples=resamples, random_state=seed)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def _number(value, where: str, low: float | None = None, high: float | None = None, none_ok: bool = True):
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where} is {value!r}, not a number; fix or remove that run")
    if (low is not None and value < low) or (high is not None and value > high):
        raise DataError(f"{where} is {value!r}, outside [{low}, {high}]; fix or remove that run")
    return float(value)


def _seed(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{where}: the seed is {value!r}, not a whole number ≥ 0; fix or remove that run")
    return value


def _matrix(rows, where: str) -> None:
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise DataError(f"{where} should be a list of rows of numbers; fix or remove that run")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            _number(v, f"{where}[{i}][{j}]", 0.0, 1.0, none_ok=False)


def learned_flags(record: dict, where: str) -> list[bool | None] | None:
    """Per task, whether the run learned it: recomputed from the run's matrices where it records them (so a run written
    before the verdict read rank accuracy is judged by today's rule, ``ContinualMetrics.learned``), else as recorded."""
    from .metrics import ContinualMetrics

    if all(isinstance(record.get(k), list) for k in ("tasks", "accuracy", "initial_accuracy", "eval_examples")):
        try:
            return ContinualMetrics.from_fields(record).learned
        except (IndexError, ZeroDivisionError, TypeError) as exc:
            raise DataError(f"{where}: malformed matrices ({exc!r}); fix or remove that run") from None
    flags = record.get("learned")
    if flags is None:
        return None
    if not isinstance(flags, list) or not all(f is None or isinstance(f, bool) for f in flags):
        raise DataError(f"{where}: 'learned' should be a list of true/false per task; fix or remove that run")
    return flags


def _label(folder: Path, record: dict) -> tuple[str, int]:
    """A run's group label and seed: from its name (``…-seedN``) when it has one, else the method and its options."""
    where = str(folder / "metrics.json")
    made_by = record.get("made_by", {})
    settings = made_by.get("settings", {}) if isinstance(made_by, dict) else None
    config = settings.get("config", {}) if isinstance(settings, dict) else None
    if not isinstance(config, dict):
        raise DataError(f"{where}: 'made_by' should hold settings.config; fix or remove that run")
    seed = config.get("seed")
    name = ""
    manifest = folder / "sequence.json"
    if manifest.is_file():
        name = load_json_text(manifest.read_text()).get("name", "")
    match = _SEED.match(name) if isinstance(name, str) else None
    if match:
        return match["label"], int(match["seed"]) if seed is None else _seed(seed, where)
    options = settings.get("options", {})
    method = record.get("method", folder.name)
    if not isinstance(options, dict) or not isinstance(method, str):
        raise DataError(f"{where}: 'method' should be a name and settings.options a mapping; fix or remove that run")
    from .old_names import new_options

    options = new_options(method, options)  # a run recorded before its method's options were renamed
    from .methods.registry import METHODS

    defaults = {}
    if method in METHODS:
        from .methods.option import option_fields

        defaults = {f.name: f.default for f in option_fields(METHODS[method])}
    changed = [f"{k}={v}" for k, v in sorted(options.items()) if defaults.get(k, object()) != v]
    return method + (f"[{','.join(changed)}]" if changed else ""), 0 if seed is None else _seed(seed, where)


def read_runs(paths: list[str]) -> list[Run]:
    """Every finished run (a folder with metrics.json) at or one or two levels below each path, each record checked
    (scores are numbers in range, seeds whole numbers, matrices numbers) before any is used."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such run folder")
        found = [path] if (path / "metrics.json").is_file() else sorted(
            {m.parent for pattern in ("*/metrics.json", "*/*/metrics.json") for m in path.glob(pattern)})
        if not found:
            raise DataError(f"{path}: holds no finished run (no metrics.json)")
        for folder in found:
            where = folder / "metrics.json"
            try:
                record = load_json_text(where.read_text())
                if not isinstance(record, dict):
                    raise DataError(f"{where}: not a run's metrics (a JSON object is expected)")
                label, seed = _label(folder, record)
            except (ValueError, UnicodeDecodeError, AttributeError, TypeError, RecursionError) as exc:
                raise DataError(f"{where}: not a run's metrics ({type(exc).__name__}); fix or remove that run") from None
            scores = {m: _number(record.get(m), f"{where}: {m}", *RANGES[m]) for m in SCORED}
            if scores["AP"] is None:
                raise DataError(f"{where}: no AP; fix or remove that run")
            if "accuracy" in record:
                _matrix(record["accuracy"], f"{where}: accuracy")
            runs.append(Run(label, seed, scores, str(folder), learned=learned_flags(record, str(where))))
            other = _other_learner(record, str(where))
            if other is not None:
                runs.append(Run(f"{label}:{other[0]}", seed, other[1], str(folder), learned=other[2]))
    return runs


def _other_learner(record: dict, where: str) -> tuple[str, dict, list | None] | None:
    """The dual-learner methods' second learner (``method_record.other_learner``: the one not evaluated, scored on
    the same run) as its own group, ``LABEL:fast`` or ``LABEL:slow``: its name, scores and per-task learned flags
    (from the run's base accuracy and eval sizes, as for the run itself; None where the run lacks them)."""
    from .metrics import ContinualMetrics

    method_record = record.get("method_record") or {}
    if not isinstance(method_record, dict):
        raise DataError(f"{where}: method_record should be a mapping; fix or remove that run")
    other = method_record.get("other_learner")
    if not isinstance(other, dict) or not other.get("accuracy"):
        return None
    _matrix(other["accuracy"], f"{where}: other_learner.accuracy")
    initial, ranks = record.get("initial_accuracy"), other.get("rank_accuracy")
    initial_rank = record.get("initial_rank_accuracy") if ranks is not None else None
    if initial is not None:
        _matrix([initial], f"{where}: initial_accuracy")
    if ranks is not None:  # its rank AP; the verdict reads rank too where the base's rank scores are there
        _matrix(ranks, f"{where}: other_learner.rank_accuracy")
        if initial_rank is not None:
            _matrix([initial_rank], f"{where}: initial_rank_accuracy")
    if not isinstance(other.get("learner"), str):
        raise DataError(f"{where}: other_learner.learner should be a name; fix or remove that run")
    counts = record.get("eval_examples")
    if not (isinstance(counts, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in counts)):
        counts = None  # the learned-or-not margin needs them: without, unknown
    try:
        scores = ContinualMetrics(tasks=list(record.get("tasks") or []), accuracy=other["accuracy"],
                                  initial_accuracy=initial, eval_examples=counts, rank_accuracy=ranks,
                                  initial_rank_accuracy=initial_rank)
        learned = scores.learned if counts is not None and initial is not None else None
        return other["learner"], {"AP": scores.ap, "BWT": scores.bwt, "FWT": scores.fwt, "rank_AP": scores.rank_ap,
                                  "rank_BWT": scores.rank_bwt}, learned
    except (IndexError, ZeroDivisionError, TypeError) as exc:
        raise DataError(f"{where}: a malformed other_learner record ({exc!r})") from None


@dataclass
class Comparison(JsonResult):
    kind: ClassVar[str] = "comparison"

    baseline: str
    groups: dict[str, dict]  # label -> {"seeds", "runs", "AP", "BWT", "FWT", "learned"}
    summary: dict[str, dict] = field(default_factory=dict)  # label -> measure -> {mean, low, high, pi_low, pi_high, n}
    paired: dict[str, dict] = field(default_factory=dict)  # label -> measure -> {…, p, boot_low, boot_high}; seeds
    relative_ap_gain: dict[str, float | None] = field(default_factory=dict)
    interval: str = "95% t-interval over seeds"
    primary: str | None = None
    holm: dict[str, dict] = field(default_factory=dict)  # label -> {p, p_holm, survives}: the family of AP differences
    not_learned: list[str] = field(default_factory=list)
    made_by: dict | None = None

    @classmethod
    def from_fields(cls, data: dict) -> "Comparison":
        """Read a compare.json back, its shapes and types checked (ValueError names the first bad field)."""
        result = cls(**data)
        check_comparison(result)
        return result

    def table(self) -> str:
        from .compare_table import comparison_table

        return comparison_table(self)


def _entry(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    bounds = _t_bounds(values)
    mean = sum(values) / len(values)
    low, high, pi_low, pi_high = bounds[1:] if bounds else (None,) * 4
    return {"mean": mean, "low": low, "high": high, "pi_low": pi_low, "pi_high": pi_high, "n": len(values)}


def did_not_learn(group: dict) -> bool:
    """Every run of the group records its tasks' learned flags, and every flag is false."""
    flags = group.get("learned") or []
    return bool(flags) and all(f and all(x is False for x in f) for f in flags)


def check_labels(runs: list[Run], baseline: str, primary: str | None) -> None:
    """The baseline names a group of the runs, and the primary another one."""
    groups = sorted({run.label for run in runs})
    if baseline not in groups:
        raise DataError(f"no runs of the baseline {baseline!r}; the runs are of {groups}")
    if primary is not None and (primary == baseline or primary not in groups):
        raise DataError(f"--primary {primary!r} names no compared group; choose one of "
                        f"{[g for g in groups if g != baseline]}")


def compare(runs: list[Run], baseline: str = "er", primary: str | None = None, seed: int = 0, *,
            resamples: int = 9999) -> Comparison:
    """Group, summarise, and pair every group with ``baseline`` by seed; p-values Holm-adjusted over the family of
    every compared group but ``primary`` (see the module's docstring); ``seed`` fixes the bootstrap's resampling."""
    groups: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: (r.label, r.seed)):
        group = groups.setdefault(run.label, {"seeds": [], "runs": [], **{m: [] for m in SCORED}, "learned": []})
        if run.seed in group["seeds"]:
            raise DataError(f"two runs of {run.label} have seed {run.seed}: {group['runs'][group['seeds'].index(run.seed)]} "
                            f"and {run.path}")
        group["seeds"].append(run.seed)
        group["runs"].append(run.path)
        group["learned"].append(run.learned)
        for m in SCORED:
            group[m].append(run.scores.get(m))
    check_labels(runs, baseline, primary)
    result = Comparison(baseline, groups, primary=primary, not_learned=[g for g in groups if did_not_learn(groups[g])])
    result.made_by = settings_record(baseline, primary, seed, resamples)
    base = dict(zip(groups[baseline]["seeds"], range(len(groups[baseline]["seeds"]))))
    for label, group in groups.items():
        result.summary[label] = {m: _entry(group[m]) for m in SCORED}
        if label == baseline:
            continue
        common = [s for s in group["seeds"] if s in base]
        result.paired[label] = {"seeds": common}
        for m in SCORED:
            pairs = [(group[m][group["seeds"].index(s)], groups[baseline][m][base[s]]) for s in common]
            pairs = [(v, b) for v, b in pairs if v is not None and b is not None]
            entry = _entry([v - b for v, b in pairs])
            if entry is not None:
                entry["p"] = paired_p([v - b for v, b in pairs])
                boot = paired_bootstrap([v for v, _ in pairs], [b for _, b in pairs], seed, resamples)
                entry["boot_low"], entry["boot_high"] = boot if boot else (None, None)
            result.paired[label][m] = entry
        base_ap = [groups[baseline]["AP"][base[s]] for s in common]
        gain = result.paired[label]["AP"]
        result.relative_ap_gain[label] = gain["mean"] / (sum(base_ap) / len(base_ap)) if gain and sum(base_ap) else None
    family = {label: p["AP"]["p"] for label, p in result.paired.items() if label != primary and p.get("AP")
              and p["AP"]["p"] is not None and label not in result.not_learned}
    for label, adjusted in holm(family).items():
        result.holm[label] = {"p": family[label], "p_holm": adjusted, "survives": adjusted < ALPHA}
    return result
