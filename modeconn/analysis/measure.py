"""One-call analyses for Python users and the CLI: checkpoints → study → span and points → evaluator → result.

Each function opens a ``Study`` (adapters, tasks, base model) once, builds the points it measures as coefficients
over the study's adapters, scores them in batched passes, and returns a result that records its settings.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch

from .. import checks
from ..errors import ConfigError, DataError
from ..evaluator.data import encode_counted, resolve_max_length
from ..evaluator.evaluate import EvalConfig, PathEvaluation
from ..lora.paths import LoraPath, Span, bernstein, uniform_ts
from .barrier import BarrierResult
from .bezier import fitted_between, read_curve
from .study import Study
from .surface import SurfaceResult, SurfaceTask


def _evaluate_path(study: Study, path: LoraPath, ts: list[float], config: EvalConfig | None = None,
                   shared: bool = True) -> PathEvaluation:
    return PathEvaluation(list(ts), study.evaluate(path, path.coefficients(ts), config, shared=shared))


def measure_barrier(
    a: str,
    b: str,
    data: list[str] | None = None,
    space: str = "factor",
    points: int = 11,
    path: str = "linear",
    control: str | None = None,
    base: str | None = None,
    split: str = "eval",
    limit: int | None = None,
    manifest: bool = True,
    seed: int = 0,
    device: str = "cpu",
    allow_pickle: bool = False,
    eval_config: EvalConfig = EvalConfig(),
    adaptive=None,
    device_map: str | None = None,
) -> BarrierResult:
    """Loss and accuracy of each task along the path from adapter ``a`` to ``b``, with its barriers.

    ``adaptive`` (a ``SearchConfig``) replaces the uniform grid of ``points`` by the adaptive search of search.py."""
    from .search import SearchConfig

    checks.text("a", a), checks.text("b", b), checks.text("control", control, optional=True)
    if adaptive is not None:
        checks.instance("adaptive", adaptive, SearchConfig, "a SearchConfig or None")
    if control is not None and path != "bezier":
        raise ConfigError(f"control has no effect on a {path!r} path: pass path='bezier' with it, or leave control out")
    ts = uniform_ts(points)
    extra = {}
    if path == "bezier":
        if control is None:
            raise DataError("a Bézier path needs control=ADAPTER (the curve's control-point adapter)")
        fitted = read_curve(control)
        if fitted is not None and fitted.get("space") != space:
            raise DataError(f"{control} was fitted in {fitted.get('space')} space; pass space='{fitted.get('space')}'")
        locations, extra = [a, control, b], {"control": str(control)}
    elif path == "linear":
        locations = [a, b]
    else:
        raise ConfigError(f"unknown path '{path}'; choose 'linear' or 'bezier'")
    study = Study.open(locations, data or [], space=space, split=split, limit=limit, manifest=manifest, base=base,
                       seed=seed, device=device, allow_pickle=allow_pickle, eval_config=eval_config, manifest_from=[a, b],
                       device_map=device_map)
    the_path = LoraPath(tuple(study.adapters), space, path)
    settings = {"path": path, "points": points}
    if adaptive is not None:
        from .search import adaptive_evaluation

        evaluation = adaptive_evaluation(lambda ts: study.evaluate(the_path, the_path.coefficients(ts)), adaptive)
        extra["adaptive"] = {"evaluations": len(evaluation.t), **asdict(adaptive)}
        settings = {"path": path, "adaptive": asdict(adaptive)}
    else:
        evaluation = _evaluate_path(study, the_path, ts)
    return BarrierResult.from_evaluation(evaluation, path, space, [str(a), str(b)], study.base_name, split=split, seed=seed,
                                         extra=extra, made_by=study.made_by(**settings))


def fit_curve(
    a: str,
    b: str,
    data: list[str] | None = None,
    space: str = "factor",
    base: str | None = None,
    limit: int | None = None,
    manifest: bool = True,
    device: str = "cpu",
    allow_pickle: bool = False,
    config=None,
    progress: bool = True,
    device_map: str | None = None,
    dtype: str = "float32",
):
    """Fit a quadratic Bézier control point between adapters ``a`` and ``b`` on both tasks' training data, the base in
    ``dtype`` (the control point's factors stay float32)."""
    from .bezier import CurveConfig, fit_bezier

    checks.text("a", a), checks.text("b", b), checks.flag("progress", progress)
    config = CurveConfig() if config is None else checks.instance("config", config, CurveConfig, "a CurveConfig or None")
    study = Study.open([a, b], data or [], space=space, split="train", limit=limit, manifest=manifest, base=base,
                       seed=config.seed, device=device, allow_pickle=allow_pickle, device_map=device_map,
                       eval_config=EvalConfig(max_length=config.max_length, dtype=dtype))
    train = [example for examples in study.tasks().values() for example in examples]
    fit = fit_bezier(study.model, study.tokenizer, *study.adapters, train, space, config, progress)
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
                                c.loss[grid : grid + n_points], c.examples, c.metric,
                                c.loss[grid + n_points : grid + n_points + n_curve] if n_curve else None, c.cut_prompts)
    return out


def measure_plane(
    a: str,
    b: str,
    c: str,
    data: list[str] | None = None,
    space: str = "factor",
    grid: int = 21,
    margin: float = 0.2,
    curve: bool | None = None,
    curve_points: int = 41,
    base: str | None = None,
    split: str = "eval",
    limit: int | None = None,
    manifest: bool = True,
    seed: int = 0,
    device: str = "cpu",
    allow_pickle: bool = False,
    eval_config: EvalConfig = EvalConfig(accuracy=False),
    device_map: str | None = None,
    marks: tuple[str, ...] | list[str] = (),
) -> SurfaceResult:
    """Loss of each task on a grid over the plane through adapters ``a``, ``b``, ``c`` (Garipov et al.'s figure).

    ``curve`` draws the quadratic Bézier a → b with control point ``c`` on the plane (default: when ``c`` holds a
    curve.json fitted between ``a`` and ``b``). ``marks``: further adapters placed on the plane at their orthogonal
    projection (I-LoRA's slow learner among the fast minima, say); each one's own loss is scored, and its distance
    from the plane is recorded in ``extra["marks"]``."""
    from ..lora.plane import gram, grid_axes, place, plane_basis

    checks.text("a", a), checks.text("b", b), checks.text("c", c), checks.texts("marks", marks)
    if curve is not None:
        checks.flag("curve", curve)
    grid_axes(torch.zeros(1, 2), grid, margin)  # checks grid and margin before any loading
    names = [str(a), str(b), str(c), *map(str, marks)]
    n = len(names)
    study = Study.open(names, data or [], space=space, split=split, limit=limit, manifest=manifest, base=base, seed=seed,
                       device=device, allow_pickle=allow_pickle, eval_config=eval_config, device_map=device_map)
    g = gram(study.adapters, space)
    basis = plane_basis(g[:3, :3], tuple(names[:3]))
    placed = [place(g, basis, k) for k in range(3, n)]  # (x, y, distance from the plane) of each mark
    coords = torch.cat([basis.coords, torch.tensor([[x, y] for x, y, _ in placed], dtype=torch.float64).reshape(-1, 2)])
    xs, ys = grid_axes(coords, grid, margin)
    xy = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float64)
    curve = fitted_between(read_curve(c), a, b, space) if curve is None else curve
    ts = uniform_ts(curve_points) if curve else []
    on_curve = bernstein(torch.tensor(ts), 2)[:, [0, 2, 1]]  # Bernstein weights (a, c, b) reordered to anchors (a, b, c)
    pad = lambda w: torch.nn.functional.pad(w, (0, n - 3))  # noqa: E731  (the marks take no part in the plane's points)
    coeffs = torch.cat([pad(basis.coefficients(xy)), torch.eye(n, dtype=torch.float64), pad(on_curve)])
    curves = study.evaluate(Span(tuple(study.adapters), space), coeffs)
    size = float(basis.coords[1, 0])
    extra = {"marks": {name: {"x": x, "y": y, "off_plane": off, "off_plane_relative": off / size}
                       for name, (x, y, off) in zip(names[3:], placed)}} if marks else {}
    return SurfaceResult("plane", space, xs, ys, coords.tolist(), names,
                         _split_surface(curves, (len(ys), len(xs)), n, len(ts)), names, study.base_name, split, seed,
                         {"t": ts, "xy": (on_curve @ basis.coords).tolist()} if curve else None, extra=extra,
                         made_by=study.made_by(grid=grid, margin=margin, curve_points=len(ts), marks=len(placed)))


def measure_landscape(
    adapter: str,
    data: list[str] | None = None,
    dimensions: int = 2,
    grid: int = 21,
    span: float = 1.0,
    base: str | None = None,
    split: str = "eval",
    limit: int | None = None,
    manifest: bool = True,
    seed: int = 0,
    device: str = "cpu",
    allow_pickle: bool = False,
    eval_config: EvalConfig = EvalConfig(accuracy=False),
    device_map: str | None = None,
) -> SurfaceResult:
    """Loss around ``adapter`` along one or two filter-normalised random directions (Li et al., 2018), α, β ∈ [−span, span]."""
    from ..lora.directions import landscape_coefficients, random_span
    from ..lora.plane import check_grid

    checks.text("adapter", adapter)
    checks.choice("dimensions", dimensions, (1, 2))
    check_grid(grid, dimensions)
    checks.finite("span", span, 0, low_open=True)
    study = Study.open([adapter], data or [], space="factor", split=split, limit=limit, manifest=manifest, base=base,
                       seed=seed, device=device, allow_pickle=allow_pickle, eval_config=eval_config, device_map=device_map)
    the_span = random_span(study.adapters[0], dimensions, seed)
    axis = torch.linspace(-span, span, grid, dtype=torch.float64).tolist()
    ys = axis if dimensions == 2 else [0.0]
    coeffs = torch.cat([landscape_coefficients(axis, ys if dimensions == 2 else None),
                        torch.eye(dimensions + 1, dtype=torch.float64)[:1]])
    curves = study.evaluate(the_span, coeffs)
    return SurfaceResult("random", "factor", axis, ys, [[0.0, 0.0]], [str(adapter)],
                         _split_surface(curves, (len(ys), len(axis)), 1), [str(adapter)], study.base_name, split, seed,
                         extra={"directions": "filter-normalised Gaussian, per LoRA factor row (Li et al., 2018)", "span": span},
                         made_by=study.made_by(dimensions=dimensions, grid=grid, span=span))


def sweep_sequence(
    sequence: str,
    space: str = "factor",
    points: int = 11,
    pairs: str = "all",
    bezier: bool = False,
    curve_config=None,
    base: str | None = None,
    split: str = "eval",
    limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    allow_pickle: bool = False,
    eval_config: EvalConfig = EvalConfig(accuracy=False),
    progress: bool = True,
    curves_out: str | None = None,
    device_map: str | None = None,
):
    """Barriers between the task adapters of a sequence, every pair (or consecutive ones), scored on every task;
    with ``bezier`` a curve is fitted for each pair on its two tasks' training data and measured the same way
    (``curves_out``: also save each control point there as ``A-B/``, a folder ``modeconn plane`` can take)."""
    from pathlib import Path

    from tqdm import tqdm

    from ..lora.paths import bezier_path, linear_path
    from ..lora.sequence import load_sequence
    from .bezier import CurveConfig, fit_bezier
    from .sweep import PairResult, SweepResult

    if pairs not in ("all", "consecutive"):
        raise ConfigError(f"pairs must be 'all' or 'consecutive', got {pairs!r}")
    checks.text("sequence", sequence), checks.flag("bezier", bezier), checks.flag("progress", progress)
    checks.text("curves_out", curves_out, optional=True)
    if curves_out is not None and not bezier:
        raise ConfigError("curves_out has no effect without bezier=True (there are no fitted curves to save): pass both, "
                          "or leave curves_out out")
    if curve_config is not None:
        checks.instance("curve_config", curve_config, CurveConfig, "a CurveConfig or None")
    ts = uniform_ts(points)
    seq = load_sequence(sequence)
    if len(seq.tasks) < 2:
        raise ConfigError(f"{sequence}: a sweep needs at least two tasks, the manifest lists {len(seq.tasks)}")
    names = [t.name for t in seq.tasks]
    if curves_out is not None:
        _check_pair_names(names, pairs, curves_out)
    ends_of = [str(seq.adapter_dir(t)) for t in seq.tasks]
    study = Study.open(ends_of, space=space, split=split, limit=limit, base=base, seed=seed, device=device,
                       allow_pickle=allow_pickle, eval_config=eval_config, sequence=seq, device_map=device_map)
    train = study.tasks("train") if bezier else {}
    for examples in train.values():  # the curves' training answers must fit too, before any work
        encode_counted(study.tokenizer, examples, resolve_max_length(study.model, curve_config and curve_config.max_length))
    adapters = study.adapters
    todo = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if pairs == "all" or j == i + 1]
    quiet = replace(study.eval_config, progress=False)
    config = curve_config or CurveConfig(seed=seed)
    done = []  # this process's share of the pairs (all of them in one process), gathered below
    for i, j in tqdm([todo[k] for k in study.processes.share(len(todo))], desc="adapter pairs",
                     disable=not (progress and study.processes.main)):
        ends = [ends_of[i], ends_of[j]]
        line = _evaluate_path(study, linear_path(adapters[i], adapters[j], space, True), ts, quiet, shared=False)
        pair = PairResult(i, j, BarrierResult.from_evaluation(line, "linear", space, ends, seq.base_model, split=split, seed=seed))
        fit = None
        if bezier:
            fit = fit_bezier(study.model, study.tokenizer, adapters[i], adapters[j], train[names[i]] + train[names[j]], space,
                             config, False)
            fit.endpoints = ends
            curve = _evaluate_path(study, bezier_path(adapters[i], fit.control, adapters[j], space, True), ts, quiet,
                                   shared=False)
            pair.bezier = BarrierResult.from_evaluation(curve, "bezier", space, ends, seq.base_model, split=split, seed=seed,
                                                        extra={"fit_loss_first": fit.history[0], "fit_loss_last": fit.history[-1]})
        done.append((pair, fit))
    done = study.processes.gather(done)
    results = [pair for pair, _ in done]
    if curves_out is not None and study.processes.main:
        for pair, fit in done:
            fit.save(Path(curves_out) / f"{names[pair.a]}-{names[pair.b]}")
    settings = {"points": points, "pairs": pairs, "bezier": bezier,
                **({f"curve_{k}": v for k, v in asdict(config).items()} if bezier else {})}
    return SweepResult(str(sequence), names, ends_of, space, study.base_name, results, split, seed,
                       {"points": points, "pairs": pairs}, made_by=study.made_by(**settings))


def _check_pair_names(names: list[str], pairs: str, curves_out: str) -> None:
    """Before any work: every control point's folder name ``A-B`` fits the file system of ``curves_out``."""
    from ..outdir import name_max

    longest = name_max(curves_out)
    for i in range(len(names)):
        for j in range(i + 1, len(names) if pairs == "all" else min(i + 2, len(names))):
            if len(f"{names[i]}-{names[j]}".encode()) > longest:
                raise ConfigError(f"the control point of {names[i][:30]!r}… and {names[j][:30]!r}… would be saved as a "
                                  f"folder name longer than the {longest} bytes this file system allows; shorten the task "
                                  "names")


__all__ = ["measure_barrier", "fit_curve", "measure_plane", "measure_landscape", "sweep_sequence"]
