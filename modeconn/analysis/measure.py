"""One-call analyses for Python users and the CLI: checkpoints → study → span and points → evaluator → result.

Each function takes the adapters it measures and one ``StudySettings`` (what to score and how), opens a ``Study``
(adapters, tasks, base model) once, builds the points it measures as coefficients over the study's adapters, scores
them in batched passes, and returns a result that records its settings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from os import PathLike
from pathlib import Path

import torch

from .. import checks
from ..errors import ConfigError, DataError
from ..evaluator.evaluate import EvalConfig, PathEvaluation
from ..lora.path_kinds import names, path_kind
from ..lora.paths import LoraPath, Span, uniform_ts
from .barrier import BarrierResult
from .bezier import control_folders, fitted_between, read_curve
from .settings import ACCURACY, StudySettings
from .study import Study
from .surface import SurfaceResult, SurfaceTask


def _evaluate_path(study: Study, path: LoraPath, ts: list[float], config: EvalConfig | None = None,
                   shared: bool = True) -> PathEvaluation:
    return PathEvaluation(list(ts), study.evaluate(path, path.coefficients(ts), config, shared=shared))


def _adapters(adapters, settings, n: int, what: str) -> list[str]:
    """The adapters an analysis measures (``n`` of them) and its settings, checked at the door."""
    if isinstance(settings, (str, bytes)) or hasattr(settings, "__fspath__"):
        raise ConfigError(f"{what} takes its adapters as one list, then a StudySettings: {what}([{', '.join('ABCD'[:n])}], "
                          "StudySettings(...), ...)")
    checks.instance("settings", settings, StudySettings, "a StudySettings (e.g. StudySettings(limit=24))")
    found = checks.texts("adapters", adapters)
    if len(found) != n:
        raise ConfigError(f"adapters must list {n} adapters, got {len(found)}")
    return found


def measure_barrier(adapters, settings: StudySettings = StudySettings(), *, space: str = "factor", points: int = 11,
                    path: str = "linear", control: str | None = None, adaptive=None) -> BarrierResult:
    """Loss and accuracy of each task along the path from ``adapters[0]`` to ``adapters[1]``, with its barriers.

    ``adaptive`` (a ``SearchConfig``) replaces the uniform grid of ``points`` by the adaptive search of search.py."""
    from .search import SearchConfig

    a, b = _adapters(adapters, settings, 2, "measure_barrier")
    checks.text("control", control, optional=True)
    if adaptive is not None:
        checks.instance("adaptive", adaptive, SearchConfig, "a SearchConfig or None")
    kind = path_kind(checks.text("path", path))
    if control is not None and not kind.free:
        raise ConfigError(f"control has no effect on a {path!r} path: pass path='bezier' with it, or leave control out")
    ts = uniform_ts(points)
    extra = {}
    if kind.free:
        if control is None:
            raise DataError(f"a {path} path needs control=FOLDER (the curve's control-point adapter, or the folder "
                            f"`modeconn curve --path {path}` wrote)")
        fitted = read_curve(control)
        if fitted is not None and fitted.get("space") != space:
            raise DataError(f"{control} was fitted in {fitted.get('space')} space; pass space='{fitted.get('space')}'")
        if fitted is not None and fitted.get("path", "bezier") != path:
            raise DataError(f"{control} holds a fitted {fitted.get('path', 'bezier')} curve; pass "
                            f"path='{fitted.get('path', 'bezier')}'")
        locations, extra = [a, *control_folders(control, path), b], {"control": str(control)}
    else:
        locations = [a, b]
    study = Study.open(locations, settings.with_accuracy(ACCURACY["barrier"]), space=space, manifest_from=[a, b])
    the_path = LoraPath(tuple(study.adapters), space, path)
    options = {"path": path, "points": points}
    if adaptive is not None:
        from .search import adaptive_evaluation

        evaluation = adaptive_evaluation(lambda ts: study.evaluate(the_path, the_path.coefficients(ts)), adaptive)
        extra["adaptive"] = {"evaluations": len(evaluation.t), **asdict(adaptive)}
        options = {"path": path, "adaptive": asdict(adaptive)}
    else:
        evaluation = _evaluate_path(study, the_path, ts)
    return BarrierResult.from_evaluation(evaluation, path, space, [str(a), str(b)], base_model=study.base_name, split=study.split,
                                         seed=study.seed, extra=extra, made_by=study.made_by(**options))


def _curve_config(config, settings: StudySettings, name: str = "curve_config"):
    """The curve fitting's config: ``config`` (checked), else the defaults with the settings' seed; its max_length is
    the settings' (one length for the whole study)."""
    from .bezier import CurveConfig

    if config is None:
        return CurveConfig(seed=settings.seed, max_length=settings.max_length)
    checks.instance(name, config, CurveConfig, "a CurveConfig or None")
    if config.max_length is not None and config.max_length != settings.max_length:
        raise ConfigError(f"the curve config's max_length ({config.max_length}) differs from the settings' "
                          f"({settings.max_length}); set max_length in the StudySettings only")
    return replace(config, max_length=settings.max_length)


def fit_curve(adapters, settings: StudySettings = StudySettings(), *, space: str = "factor", config=None):
    """Fit the free points of a curve (the config's ``path``: a quadratic Bézier control point by default) between
    ``adapters[0]`` and ``adapters[1]`` on both tasks' training data (the settings' ``limit`` examples per task), the
    base in the settings' dtype (the free points stay float32)."""
    from .bezier import CurveConfig, fit_path, start_path

    a, b = _adapters(adapters, settings, 2, "fit_curve")
    if config is not None and not isinstance(config, CurveConfig):
        checks.instance("config", config, CurveConfig, "a CurveConfig or None")
    config = _curve_config(config, settings)
    study = Study.open([a, b], replace(settings, split="train", accuracy=False), space=space)
    train = [item for encoded, _ in study.encoded().values() for item in encoded]
    fit = fit_path(study.model, study.tokenizer, start_path(config.path, *study.adapters, space), train=train,
                   config=config, progress=settings.progress)
    fit.endpoints = [str(a), str(b)]
    fit.made_by = study.made_by(**{f"curve_{k}": v for k, v in asdict(config).items()})
    return fit


def _split_surface(curves, shape: tuple[int, int], n_points: int, n_curve: int = 0) -> dict[str, SurfaceTask]:
    """Cut the evaluator's flat per-point numbers into grid rows, the labelled points and the curve."""
    ny, nx = shape
    rows = lambda v: [v[i * nx : (i + 1) * nx] for i in range(ny)]  # noqa: E731
    out = {}
    for name, c in curves.items():
        grid = nx * ny
        out[name] = SurfaceTask(rows(c.loss[:grid]), rows(c.accuracy[:grid]) if c.accuracy is not None else None,
                                c.loss[grid : grid + n_points], c.examples, metric=c.metric,
                                curve_loss=c.loss[grid + n_points : grid + n_points + n_curve] if n_curve else None,
                                cut_prompts=c.cut_prompts,
                                rank_accuracy=rows(c.rank_accuracy[:grid]) if c.rank_accuracy is not None else None)
    return out


def measure_plane(adapters, settings: StudySettings = StudySettings(), *, space: str = "factor", grid: int = 21,
                  margin: float = 0.2, curve: bool | None = None, curve_points: int = 41,
                  marks: tuple[str, ...] | list[str] = ()) -> SurfaceResult:
    """Loss of each task on a grid over the plane through the three ``adapters`` a, b, c (Garipov et al.'s figure).

    ``curve`` draws the quadratic Bézier a → b with control point c on the plane (default: when c holds a
    curve.json fitted between a and b). ``marks``: further adapters placed on the plane at their orthogonal
    projection (I-LoRA's slow learner among the fast minima, say); each one's own loss is scored, and its distance
    from the plane is recorded in ``extra["marks"]``."""
    from ..lora.plane import gram, grid_axes, place, plane_basis

    a, b, c = _adapters(adapters, settings, 3, "measure_plane")
    checks.texts("marks", marks)
    if curve is not None:
        checks.flag("curve", curve)
    grid_axes(torch.zeros(1, 2), grid, margin)  # checks grid and margin before any loading
    names = [str(a), str(b), str(c), *map(str, marks)]
    n = len(names)
    study = Study.open(names, settings.with_accuracy(ACCURACY["plane"]), space=space)
    g = gram(study.adapters, space)
    basis = plane_basis(g[:3, :3], tuple(names[:3]))
    placed = [place(g, basis, k) for k in range(3, n)]  # (x, y, distance from the plane) of each mark
    coords = torch.cat([basis.coords, torch.tensor([[x, y] for x, y, _ in placed], dtype=torch.float64).reshape(-1, 2)])
    xs, ys = grid_axes(coords, grid, margin)
    xy = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float64)
    curve = fitted_between(read_curve(c), a, b, space) if curve is None else curve
    ts = uniform_ts(curve_points) if curve else []
    drawn = path_kind(_plane_curve(read_curve(c)))
    on_curve = drawn.coefficients(torch.tensor(ts))[:, [0, 2, 1]]  # weights of (a, c, b) reordered to anchors (a, b, c)
    pad = lambda w: torch.nn.functional.pad(w, (0, n - 3))  # noqa: E731  (the marks take no part in the plane's points)
    coeffs = torch.cat([pad(basis.coefficients(xy)), torch.eye(n, dtype=torch.float64), pad(on_curve)])
    curves = study.evaluate(Span(tuple(study.adapters), space), coeffs)
    size = float(basis.coords[1, 0])
    extra = {"marks": {name: {"x": x, "y": y, "off_plane": off, "off_plane_relative": off / size}
                       for name, (x, y, off) in zip(names[3:], placed)}} if marks else {}
    return SurfaceResult("plane", space, xs, ys, points=coords.tolist(), labels=names,
                         tasks=_split_surface(curves, (len(ys), len(xs)), n, len(ts)), adapters=names,
                         base_model=study.base_name, split=study.split,
                         seed=study.seed, curve={"t": ts, "xy": (on_curve @ basis.coords).tolist()} if curve else None, extra=extra,
                         made_by=study.made_by(grid=grid, margin=margin, curve_points=len(ts), marks=len(placed)))


def _plane_curve(record: dict | None) -> str:
    """The kind of curve drawn on a plane through a, b and c: the one c's curve.json records, if it has one free point."""
    kind = (record or {}).get("path", "bezier")
    return kind if isinstance(kind, str) and kind in names() and path_kind(kind).free == 1 else "bezier"


def measure_landscape(adapter: str, settings: StudySettings = StudySettings(), *, dimensions: int = 2, grid: int = 21,
                      span: float = 1.0) -> SurfaceResult:
    """Loss around ``adapter`` along one or two filter-normalised random directions (Li et al., 2018), α, β ∈
    [−span, span]; the settings' seed picks the directions."""
    from ..lora.directions import landscape_coefficients, random_span
    from ..lora.plane import check_grid

    (adapter,) = _adapters([adapter] if isinstance(adapter, (str, PathLike)) else adapter, settings, 1,
                           "measure_landscape")
    checks.choice("dimensions", dimensions, (1, 2))
    check_grid(grid, dimensions)
    checks.finite("span", span, 0, low_open=True)
    study = Study.open([adapter], settings.with_accuracy(ACCURACY["landscape"]), space="factor")
    the_span = random_span(study.adapters[0], dimensions, study.seed)
    axis = torch.linspace(-span, span, grid, dtype=torch.float64).tolist()
    ys = axis if dimensions == 2 else [0.0]
    coeffs = torch.cat([landscape_coefficients(axis, ys if dimensions == 2 else None),
                        torch.eye(dimensions + 1, dtype=torch.float64)[:1]])
    curves = study.evaluate(the_span, coeffs)
    return SurfaceResult("landscape", "factor", axis, ys, points=[[0.0, 0.0]], labels=[str(adapter)],
                         tasks=_split_surface(curves, (len(ys), len(axis)), 1), adapters=[str(adapter)],
                         base_model=study.base_name, split=study.split,
                         seed=study.seed,
                         extra={"directions": "filter-normalised Gaussian, per LoRA factor row (Li et al., 2018)", "span": span},
                         made_by=study.made_by(dimensions=dimensions, grid=grid, span=span))


def sweep_sequence(sequence: str, settings: StudySettings = StudySettings(), *, space: str = "factor", points: int = 11,
                   pairs: str = "all", curve=None, curves_out: str | None = None, keep: str | None = None):
    """Barriers between the task adapters of a sequence, every pair (or consecutive ones), scored on every task;
    with ``curve`` (a ``CurveConfig``; None: the straight line only) a curve of its ``path`` kind (a quadratic Bézier
    by default) is fitted for each pair on its two tasks' training data and measured the same way (``curves_out``:
    also save each curve there as ``A-B/``, a folder ``modeconn plane`` or ``barrier --control`` can take). ``keep``:
    a folder where each pair is written as ``A-B.json`` the moment it is measured, and read back by a later call with
    the same inputs and settings instead of measured again (a pair of a 4-task sweep on a 135M model takes a quarter
    of an hour on a CPU: a stopped sweep resumes at its next pair)."""
    from tqdm import tqdm

    from ..lora.paths import kind_path, linear_path
    from ..lora.sequence import load_sequence
    from .bezier import fit_path, start_path
    from .sweep import PairResult, SweepResult

    if pairs not in ("all", "consecutive"):
        raise ConfigError(f"pairs must be 'all' or 'consecutive', got {pairs!r}")
    checks.text("sequence", sequence)
    bezier = curve is not None
    checks.instance("settings", settings, StudySettings, "a StudySettings (e.g. StudySettings(limit=24))")
    checks.text("curves_out", curves_out, optional=True)
    checks.text("keep", keep, optional=True)
    if curves_out is not None and not bezier:
        raise ConfigError("curves_out has no effect without a curve (there are no fitted curves to save): pass both, "
                          "or leave curves_out out")
    config = _curve_config(curve, settings, "curve") if bezier else None
    ts = uniform_ts(points)
    seq = load_sequence(sequence)
    if len(seq.tasks) < 2:
        raise ConfigError(f"{sequence}: a sweep needs at least two tasks, the manifest lists {len(seq.tasks)}")
    names = [t.name for t in seq.tasks]
    for folder, suffix in ((curves_out, ""), (keep, ".json")):
        if folder is not None:
            _check_pair_names(names, pairs, folder, suffix)
    ends_of = [str(seq.adapter_dir(t)) for t in seq.tasks]
    study = Study.open(ends_of, settings.with_accuracy(ACCURACY["sweep"]), space=space, sequence=seq)
    train = study.encoded("train") if bezier else {}  # the curves' training answers must fit too, before any work
    adapters, split, seed = study.adapters, study.split, study.seed
    todo = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if pairs == "all" or j == i + 1]
    store = _Kept(keep, _pair_key(seq, settings, space=space, points=points, config=config) if keep else None,
                  names=names, curves=curves_out, space=space)
    kept = {(i, j): found for i, j in todo if (found := store.read(i, j, [ends_of[i], ends_of[j]])) is not None}
    todo = [ij for ij in todo if ij not in kept]
    shown = settings.progress and study.processes.main  # each pair's paths and fit show their own bars beneath
    inner = replace(study.eval_config, progress=shown)  # (a 4-task pair on a 135M model takes minutes on a CPU)
    done, saved = [], set()  # this process's share of the pairs (all of them in one process), gathered below
    for i, j in tqdm([todo[k] for k in study.processes.share(len(todo))], desc="adapter pairs",
                     disable=not shown):
        ends = [ends_of[i], ends_of[j]]
        line = _evaluate_path(study, linear_path(adapters[i], adapters[j], space, True), ts, inner, shared=False)
        pair = PairResult(i, j, {"linear": BarrierResult.from_evaluation(line, "linear", space, ends,
                                                                         base_model=seq.base_model, split=split, seed=seed)})
        fit = None
        if bezier:
            fit = fit_path(study.model, study.tokenizer, start_path(config.path, adapters[i], adapters[j], space),
                           train=train[names[i]][0] + train[names[j]][0], config=config, progress=shown)
            fit.endpoints = ends
            curve = _evaluate_path(study, kind_path(config.path, adapters[i], fit.controls, adapters[j], space=space,
                                                  base_given=True), ts,
                                   inner, shared=False)
            pair.paths[config.path] = BarrierResult.from_evaluation(
                curve, config.path, space, ends, base_model=seq.base_model, split=split, seed=seed,
                extra={"fit_loss_first": fit.history[0], "fit_loss_last": fit.history[-1]})
        if study.processes.main:  # at once, so a stop loses at most the pair under way
            store.save(pair, fit)
            saved.add((i, j))
        done.append((pair, fit))
    done = study.processes.gather(done)
    if study.processes.main:  # the other processes' pairs (their file systems may not be this one's)
        for pair, fit in done:
            if (pair.a, pair.b) not in saved:
                store.save(pair, fit)
    results = sorted([*kept.values(), *(pair for pair, _ in done)], key=lambda p: (p.a, p.b))
    options = {"points": points, "pairs": pairs, "bezier": bezier,
               **({f"curve_{k}": v for k, v in asdict(config).items()} if bezier else {})}
    return SweepResult(str(sequence), names, ends_of, space, base_model=study.base_name, pairs=results, split=split, seed=seed,
                       extra={"points": points, "pairs": pairs}, made_by=study.made_by(**options))


def _pair_key(seq, settings: StudySettings, *, space: str, points: int, config) -> dict:
    """What a kept pair was measured from and with: the content of every file the sweep reads (manifest, adapters,
    data, any ``--data``), the settings that change a number, the space, the points and the curve's settings."""
    from ..files import content_hash
    from ..lora.sequence import MANIFEST
    from .study import parse_data_spec

    data = [parse_data_spec(s).path if isinstance(s, str) else s.path for s in settings.data]
    files = [seq.root / MANIFEST, *(p for t in seq.tasks for p in (seq.adapter_dir(t), seq.data_dir(t))), *data]
    fields = {k: v for k, v in asdict(settings).items() if k != "progress"}
    return {"content": content_hash(files), "settings": fields, "space": space, "points": points,
            "curve": None if config is None else asdict(config)}


@dataclass(frozen=True)
class _Kept:
    """A sweep's pairs on disk: each measured pair's curve in ``curves`` (``A-B/``) and result in ``folder``
    (``A-B.json``, with the key it was measured with); either folder may be None."""
    folder: str | None
    key: dict | None
    names: list[str]
    curves: str | None
    space: str

    def name(self, i: int, j: int) -> str:
        return f"{self.names[i]}-{self.names[j]}"

    def read(self, i: int, j: int, ends: list[str]):
        """The pair as a former call kept it with the same key (and its curve still there), or None: measured again."""
        from ..files import kept
        from .sweep import PairResult

        if self.folder is None:
            return None
        found = kept(Path(self.folder) / f"{self.name(i, j)}.json", self.key)
        try:
            pair = PairResult.from_json(found) if found is not None else None
        except (KeyError, TypeError, ValueError, DataError):
            return None  # from another version: measured again
        if pair is None or (pair.a, pair.b) != (i, j):
            return None
        if self.curves is not None and not fitted_between(read_curve(Path(self.curves) / self.name(i, j)), *ends,
                                                          self.space):
            return None
        return pair

    def save(self, pair, fit) -> None:
        """A measured pair's curve, then its result (last: a kept pair's curve is there)."""
        from ..files import keep

        name = self.name(pair.a, pair.b)
        if self.curves is not None:
            fit.save(Path(self.curves) / name)
        if self.folder is not None:
            keep(Path(self.folder) / f"{name}.json", self.key,
                 {"a": pair.a, "b": pair.b, "paths": {k: r.to_json() for k, r in pair.paths.items()}})


def _check_pair_names(names: list[str], pairs: str, folder: str, suffix: str = "") -> None:
    """Before any work: every pair's name ``A-B`` (plus ``suffix``) fits the file system of ``folder``."""
    from ..outdir import name_max

    longest = name_max(folder)
    for i in range(len(names)):
        for j in range(i + 1, len(names) if pairs == "all" else min(i + 2, len(names))):
            if len(f"{names[i]}-{names[j]}{suffix}".encode()) > longest:
                raise ConfigError(f"the pair {names[i][:30]!r}… and {names[j][:30]!r}… would be saved as a "
                                  f"name longer than the {longest} bytes this file system allows; shorten the task "
                                  "names")


__all__ = ["measure_barrier", "fit_curve", "measure_plane", "measure_landscape", "sweep_sequence"]
