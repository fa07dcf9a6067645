"""The results behind `modeconn report`: for any runs or task sequences, their accuracy matrices, the consecutive
barriers of each (straight line, and fitted Bézier curves unless ``curves=False``) in LoRA factor space, delta space or
both, the plane through the pair with the largest straight-line joint gap (with the slow and fast learners of any run
that keeps them marked on it), and the method comparison when several runs are given.

A result already in the report folder, made with the same settings from inputs of the same content (the sha256 of
every adapter, data and manifest file it read, kept with its settings beside it in ``request.json``), is read back
instead of recomputed, so a report can be redrawn or extended with one more run cheaply, and an adapter replaced at
the same path is measured again.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checks import load_json_text
from ..errors import DataError
from ..files import content_hash
from ..outdir import KEPT


@dataclass(frozen=True)
class ReportConfig:
    points: int = 11  # points per path
    limit: int | None = 32  # examples per task for paths, curves and the plane
    curves: bool = True  # fit a Bézier curve per consecutive pair
    curve_steps: int = 100
    grid: int = 9  # plane points per axis
    seed: int = 0
    baseline: str = "er"  # the comparison's baseline, when several runs are given and it is among them
    space: str = "factor"  # the paths' space: factor, delta, or both (the plane takes the first)
    accuracy: bool = False  # score the paths by accuracy too (greedy decoding, and rank classification where choices)
    loading: dict = field(default_factory=dict)  # StudySettings fields of loading and batching given (dtype, device, …)

    def spaces(self) -> list[str]:
        return ["factor", "delta"] if self.space == "both" else [self.space]


SPACES = ("factor", "delta", "both")


@dataclass
class RunEntry:
    label: str  # the run's folder name, made unique
    folder: Path
    metrics: object | None  # ContinualMetrics of a training run; None for a bare task sequence
    sweep: object | None = None  # SweepResult of the consecutive pairs in the first space; None without LoRA adapters
    reason: str = ""  # why there is no sweep (prompt checkpoints, a single task)
    sweeps: dict = field(default_factory=dict)  # space → SweepResult, every space the report measures

    def by_space(self) -> dict:
        return self.sweeps or ({self.sweep.space: self.sweep} if self.sweep is not None else {})


@dataclass
class ReportResults:
    out: Path
    config: ReportConfig
    runs: list[RunEntry]
    pair: tuple[str, str, str] | None = None  # (run label, task a, task b) of the largest straight-line joint gap
    plane: object | None = None
    plane_note: str = ""
    comparison: object | None = None
    reused: list[str] = field(default_factory=list)  # the results read back instead of recomputed
    curvature: dict = field(default_factory=dict)  # run label → CurvatureResult of its task minima (--curvature)

    def to_json(self) -> dict:
        """``report.json``: what the page shows in numbers (the full results are in their own folders)."""
        from ..analysis.sweep import best_points
        from .sharpness import sharpness_rows

        runs = [{"label": e.label, "folder": str(e.folder), "AP": e.metrics.ap if e.metrics else None,
                 "BWT": e.metrics.bwt if e.metrics else None, "FWT": e.metrics.fwt if e.metrics else None,
                 "rank_AP": e.metrics.rank_ap if e.metrics else None,
                 "consecutive": {path: e.sweep.consecutive(path) for path in e.sweep.paths()} if e.sweep else None,
                 "spaces": {space: {path: sweep.consecutive(path) for path in sweep.paths()}
                            for space, sweep in e.by_space().items()} or None,
                 "along_paths": {space: along_paths(sweep) for space, sweep in e.by_space().items()}
                 if self.config.accuracy and e.sweep else None,
                 "best_points": {space: best_points(sweep) for space, sweep in e.by_space().items()}
                 if self.config.accuracy and e.sweep else None,
                 "no_sweep_because": e.reason or None} for e in self.runs]
        marks = self.plane.extra.get("marks") if self.plane is not None else None
        names = dict(zip(self.plane.adapters[3:], self.plane.labels[3:])) if marks else {}
        return {"kind": "report", "config": asdict(self.config), "runs": runs,
                "largest_joint_gap_pair": list(self.pair) if self.pair else None, "plane": self.plane_note or None,
                "plane_marks": {names.get(k, k): {"adapter": k, **v} for k, v in marks.items()} if marks else None,
                "comparison": self.comparison is not None, "reused": self.reused,
                "sharpness": sharpness_rows(self.runs, self.curvature) or None}


def along_paths(sweep) -> list[dict]:
    """Per consecutive pair and path, each of the pair's two tasks' accuracy (task metric, greedy) and rank accuracy
    along t, endpoints included (null where the path was scored without them)."""
    rows = []
    for pair in sweep.pairs:
        if pair.b != pair.a + 1:
            continue
        for path in sweep.paths():
            result = pair.get(path)
            if result is None:
                continue
            own = (sweep.tasks[pair.a], sweep.tasks[pair.b])
            rows.append({"from": own[0], "to": own[1], "path": path, "t": result.t,
                         **{name: {"accuracy": result.tasks[name].accuracy, "rank_accuracy": result.tasks[name].rank_accuracy,
                                   "metric": result.tasks[name].metric} for name in own if name in result.tasks}})
    return rows


REPORT_FILES = ["plane", "comparison", "report.html", "report.json", "sharpness.png"]  # what the report writes beside the runs' folders


def labels_of(folders: list[Path]) -> list[str]:
    """Each run's name in the report (and its results' folder): its folder's name, numbered when two share one; a
    number is never one another run's own name has (``x/seq``, ``y/seq``, ``z/seq-2`` → seq, seq-3, seq-2), and
    never a name of the report's own files."""
    names = [folder.resolve().name or "run" for folder in folders]
    labels: list[str] = []
    for name in names:
        label, n = name, 1
        while label in labels or label in REPORT_FILES or (label != name and label in names):
            n += 1
            label = f"{name}-{n}"
        labels.append(label)
    return labels


def _sequence_files(seq) -> list[Path]:
    """What a sweep of ``seq`` reads: its manifest, every task's adapter and data."""
    from ..lora.sequence import MANIFEST

    return [seq.root / MANIFEST, *(p for t in seq.tasks for p in (seq.adapter_dir(t), seq.data_dir(t)))]


def sweep_folder(space: str, what: str = "sweep") -> str:
    """A run's folder in the report for its sweep (or fitted curves) in ``space``: factor space keeps the plain name."""
    return what if space == "factor" else f"{what}-{space}"


def _cached(out: Path, request: dict, load, compute, reused: list[str]):
    """The result in ``out`` if it was made by ``request``; else ``compute()`` written there with its request."""
    from ..files import write_json
    from ..plots.kinds import save_result

    recorded = out / "request.json"
    if recorded.is_file():
        try:
            if load_json_text(recorded.read_text()) == request:
                result = load(out)
                reused.append(str(out))
                return result
        except (ValueError, OSError, DataError):
            pass  # unreadable or stale: computed again
    result = compute()
    save_result(result, out)
    write_json(recorded, request)
    return result


def gather(paths: list[str], out: str | Path, config: ReportConfig = ReportConfig(), progress: bool = True,
           curvature=()) -> ReportResults:
    """Every result the report page shows, computed or read back; ``out`` must already be claimed by the caller.
    ``curvature``: ``modeconn curvature RUN`` results (curvature.json) of some of the runs."""
    from ..analysis.bezier import CurveConfig
    from ..analysis.measure import measure_plane, sweep_sequence
    from ..continual.metrics import ContinualMetrics
    from ..analysis.settings import StudySettings
    from ..lora.adapters import PROMPT_FILE
    from ..lora.sequence import MANIFEST, load_sequence
    from ..plots.kinds import load_result, save_result
    from .sharpness import read_curvature

    out = Path(out)
    folders = [Path(p) for p in paths]
    read = []  # every manifest and metrics.json checked before any work (load_result refuses a malformed one)
    for folder in folders:
        if not (folder / MANIFEST).is_file():
            raise DataError(f"{folder}: not a run or task sequence (no {MANIFEST})")
        load_sequence(folder)
        metrics = load_result(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
        if metrics is not None and not isinstance(metrics, ContinualMetrics):
            raise DataError(f"{folder / 'metrics.json'}: not a run's metrics (kind {type(metrics).__name__})")
        read.append(metrics)
    results = ReportResults(out, config, [])
    results.curvature = read_curvature(curvature, list(zip(labels_of(folders), folders)))
    losses = StudySettings(limit=config.limit, seed=config.seed, accuracy=False, progress=False, **config.loading)
    paths_eval = StudySettings(limit=config.limit, seed=config.seed, accuracy=config.accuracy, progress=progress,
                               **config.loading)
    for label, folder, metrics in zip(labels_of(folders), folders, read):
        entry = RunEntry(label, folder, metrics)
        results.runs.append(entry)
        seq = load_sequence(folder)
        if len(seq.tasks) < 2:
            entry.reason = "one task only: no pair to measure"
            continue
        if any((seq.adapter_dir(t) / PROMPT_FILE).is_file() for t in seq.tasks):
            entry.reason = "its checkpoints are soft prompts, not LoRA adapters: no path in LoRA space"
            continue
        content = content_hash(_sequence_files(seq))
        for space in config.spaces():
            request = {"kind": "sweep", "run": str(folder.resolve()), "content": content, "space": space,
                       "accuracy": config.accuracy, "points": config.points, "limit": config.limit,
                       "curves": config.curves, "curve_steps": config.curve_steps, "seed": config.seed,
                       **config.loading}
            curves, kept = out / label / sweep_folder(space, "curves"), out / label / sweep_folder(space, KEPT)
            entry.sweeps[space] = _cached(
                out / label / sweep_folder(space), request, lambda o: load_result(o / "sweep.json"),
                lambda: sweep_sequence(  # called at once, inside this iteration
                    str(folder), paths_eval, space=space, points=config.points, pairs="consecutive",
                    curve=CurveConfig(steps=config.curve_steps, seed=config.seed) if config.curves else None,
                    curves_out=str(curves) if config.curves else None, keep=str(kept)), reused=results.reused)
            shutil.rmtree(kept, ignore_errors=True)  # each pair as measured, kept until the whole sweep was saved
        entry.sweep = entry.sweeps[config.spaces()[0]]
    measured = [(e, r) for e in results.runs if e.sweep is not None for r in e.sweep.consecutive("linear")
                if r["joint_gap"] is not None]
    if measured:
        entry, row = max(measured, key=lambda er: er[1]["joint_gap"])
        results.pair = (entry.label, row["from"], row["to"])
        results.plane = _plane(entry, row, out, config, losses=losses, results=results, measure_plane=measure_plane,
                               load_result=load_result)
    if sum(e.metrics is not None for e in results.runs) >= 2:
        from ..continual.compare import compare, read_runs

        runs = read_runs([str(e.folder) for e in results.runs if e.metrics is not None])
        labels = {r.label for r in runs}
        results.comparison = compare(runs, config.baseline if config.baseline in labels else runs[0].label)
        save_result(results.comparison, out / "comparison")
    return results


def _plane(entry: RunEntry, row: dict, out: Path, config: ReportConfig, losses, results: ReportResults, measure_plane,
           load_result):
    """The plane through the pair's two minima and its fitted control point, or without curves the next (else the
    previous) minimum of the sequence; None when there is no third point."""
    from ..lora.sequence import load_sequence

    seq = load_sequence(entry.folder)
    names = [t.name for t in seq.tasks]
    a, b = (str(seq.adapter_dir(seq.tasks[names.index(n)])) for n in (row["from"], row["to"]))
    space = config.spaces()[0]
    if config.curves:
        third = str(out / entry.label / sweep_folder(space, "curves") / f"{row['from']}-{row['to']}")
        what = "the fitted control point"
    else:
        j = names.index(row["to"])
        k = j + 1 if j + 1 < len(names) else names.index(row["from"]) - 1
        if k < 0:
            results.plane_note = "no plane: the sequence has only these two minima and no curve was fitted (--no-curves)"
            return None
        third, what = str(seq.adapter_dir(seq.tasks[k])), f"the {names[k]} minimum"
    marks = learners_of(results.runs, entry, row["to"], Path(b))
    results.plane_note = (f"through the {row['from']} and {row['to']} minima of {entry.label} and {what}, in {space} "
                          "space" + (f"; marked on it: the {row['to']} adapters of " + ", ".join(marks.values())
                                     if marks else ""))
    request = {"kind": "plane", "space": space, "points": [a, b, third], "marks": list(marks),
               "content": content_hash([a, b, third, *marks, *_sequence_files(seq)]),
               "grid": config.grid, "limit": config.limit, "seed": config.seed, **config.loading}

    def compute():
        plane = measure_plane([a, b, third], losses, space=space, grid=config.grid, marks=list(marks))
        plane.labels = [*plane.labels[:3], *marks.values()]  # a new list: ``adapters`` is the same one
        return plane

    return _cached(out / "plane", request, lambda o: load_result(o / "plane.json"), compute, reused=results.reused)


def learners_of(runs: list[RunEntry], entry: RunEntry, task: str, like: Path) -> dict[str, str]:
    """The further learners the runs keep for ``task`` (I-LoRA's and SuRe's ``slow/`` and ``fast/`` adapter folders,
    ``continual/run_folder.py``), the plane's own run first, those shaped like the adapter ``like`` (same base, rank and
    modules: one plane holds them): adapter folder → its name on the page."""
    found, shape = {}, _shape(like)
    for run in sorted(runs, key=lambda r: r is not entry):
        for learner in LEARNERS:
            folder = run.folder / learner / task
            if run.metrics is not None and (folder / "adapter_config.json").is_file() and _shape(folder) == shape:
                found[str(folder)] = f"{run.label} {learner}"
    return found


LEARNERS = ("slow", "fast")


def _shape(adapter: Path) -> tuple:
    config = load_json_text((adapter / "adapter_config.json").read_text())
    return tuple(str(config.get(k)) for k in ("base_model_name_or_path", "r", "target_modules", "lora_alpha"))

