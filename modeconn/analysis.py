"""One-call analyses for Python users and the CLI: checkpoints → path → evaluator → result."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path as FsPath

import torch

from .adapters import LoraWeights, check_compatible, load_adapter
from .barrier import BarrierResult
from .data import Example, load_examples, load_split
from .errors import CheckpointError, ConfigError, DataError
from .evaluate import EvalConfig, evaluate_path, evaluate_points
from .models import load_base
from .paths import bernstein, bezier_path, linear_path, uniform_ts
from .surface import SurfaceResult, SurfaceTask
from .scoring import get_scorer
from .sequence import find_sequence


def parse_data_spec(spec: str, split: str = "eval") -> tuple[str, FsPath]:
    """``NAME=PATH`` or ``PATH``; a folder means its ``split`` file; the name defaults to the task folder's name."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = FsPath(path)
    if not p.exists():
        raise DataError(f"{p}: data file or task folder not found")
    if not name:
        name = p.name if p.is_dir() else (p.parent.name if p.stem in ("train", "eval", "test") else p.stem)
    return name, p


def load_task_data(specs: list[str], split: str = "eval", limit: int | None = None) -> dict[str, list[Example]]:
    tasks = {}
    for spec in specs:
        name, p = parse_data_spec(spec, split)
        tasks[name] = load_split(p, split, limit) if p.is_dir() else load_examples(p, limit)
    return tasks


def manifest_data(adapter_dirs: list[str], split: str = "eval", limit: int | None = None) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """The ``split`` of each adapter's task, and the task's metric, as recorded in the manifest beside it (if any)."""
    tasks, metrics = {}, {}
    for adapter in adapter_dirs:
        seq = find_sequence(adapter) if FsPath(adapter).is_dir() else None
        if seq is not None:
            entry = seq.task_for_adapter(adapter)
            tasks[entry.name] = load_split(seq.data_dir(entry), split, limit)
            get_scorer(entry.metric)
            metrics[entry.name] = entry.metric
    return tasks, metrics


def resolve_base_name(adapters: list[LoraWeights], adapter_dirs: list[str], base: str | None) -> str:
    if base:
        return base
    for adapter in adapter_dirs:
        seq = find_sequence(adapter) if FsPath(adapter).is_dir() else None
        if seq is not None:
            return seq.base_model
    if adapters[0].base_model:
        return adapters[0].base_model
    raise CheckpointError("the adapter does not name its base model; pass --base")


def _task_data(adapter_dirs: list[str], data, split: str, limit, manifest: bool):
    """The adapters' own tasks (from the manifest beside them) plus the ``--data`` ones, and each task's metric."""
    tasks, metrics = manifest_data(adapter_dirs, split, limit) if manifest else ({}, {})
    tasks.update(load_task_data(data or [], split, limit))
    if not tasks:
        what, hint = ("training", "TASK_FOLDER") if split == "train" else ("evaluation", "FILE_OR_TASK_FOLDER")
        raise DataError(f"no {what} data: the adapters have no sequence.json beside them; pass --data {hint}")
    return tasks, metrics


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
) -> BarrierResult:
    """Loss and accuracy of each task along the path from adapter ``a`` to ``b``, with its barriers.

    ``adaptive`` (a ``SearchConfig``) replaces the uniform grid of ``points`` by the adaptive search of search.py."""
    ts = uniform_ts(points)
    torch.manual_seed(seed)
    ends = [load_adapter(a, allow_pickle), load_adapter(b, allow_pickle)]
    if path == "bezier":
        if control is None:
            raise DataError("a Bézier path needs --control (the curve's control-point adapter)")
        fitted = FsPath(control) / "curve.json"
        if fitted.is_file():
            import json

            fitted_space = json.loads(fitted.read_text()).get("space")
            if fitted_space != space:
                raise DataError(f"{control} was fitted in {fitted_space} space; pass --space {fitted_space}")
        the_path = bezier_path(ends[0], load_adapter(control, allow_pickle), ends[1], space, base_given=bool(base))
    else:
        the_path = linear_path(ends[0], ends[1], space, base_given=bool(base))
    tasks, metrics = _task_data([a, b], data, split, limit, manifest)
    base_name = resolve_base_name(ends, [a, b], base)
    model, tokenizer = load_base(base_name, device=device)
    extra = {"control": str(control)} if control else {}
    if adaptive is not None:
        from .search import adaptive_evaluation

        score = lambda ts: evaluate_points(model, tokenizer, the_path, the_path.coefficients(ts), tasks, eval_config, metrics)  # noqa: E731
        evaluation = adaptive_evaluation(score, adaptive)
        extra["adaptive"] = {"evaluations": len(evaluation.t), **asdict(adaptive)}
    else:
        evaluation = evaluate_path(model, tokenizer, the_path, ts, tasks, eval_config, metrics)
    return BarrierResult.from_evaluation(evaluation, path, space, [str(a), str(b)], base_name, split=split, seed=seed, extra=extra)


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
):
    """Fit a quadratic Bézier control point between adapters ``a`` and ``b`` on both tasks' training data."""
    from .bezier import CurveConfig, fit_bezier

    config = config or CurveConfig()
    ends = [load_adapter(a, allow_pickle), load_adapter(b, allow_pickle)]
    linear_path(ends[0], ends[1], space, base_given=bool(base))  # validates the pair before any work
    tasks, _ = _task_data([a, b], data, "train", limit, manifest)
    model, tokenizer = load_base(resolve_base_name(ends, [a, b], base), device=device)
    train = [example for examples in tasks.values() for example in examples]
    fit = fit_bezier(model, tokenizer, ends[0], ends[1], train, space, config, progress)
    fit.endpoints = [str(a), str(b)]
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
                                c.loss[grid + n_points : grid + n_points + n_curve] if n_curve else None)
    return out


def _fitted_between(control: str, a: str, b: str, space: str) -> bool:
    """Whether ``control`` is a Bézier control point fitted between ``a`` and ``b`` in ``space`` (its curve.json says so)."""
    import json

    record = FsPath(control) / "curve.json"
    if not record.is_file():
        return False
    fitted = json.loads(record.read_text())
    ends = [FsPath(e).resolve() for e in fitted.get("endpoints", [])]
    return ends == [FsPath(a).resolve(), FsPath(b).resolve()] and fitted.get("space") == space


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
) -> SurfaceResult:
    """Loss of each task on a grid over the plane through adapters ``a``, ``b``, ``c`` (Garipov et al.'s figure).

    ``curve`` draws the quadratic Bézier a → b with control point ``c`` on the plane (default: when ``c`` holds a
    curve.json fitted between ``a`` and ``b``)."""
    from .paths import Span
    from .plane import gram, grid_axes, plane_basis

    grid_axes(torch.zeros(1, 2), grid, margin)  # checks grid and margin before any loading
    torch.manual_seed(seed)
    anchors = [load_adapter(p, allow_pickle) for p in (a, b, c)]
    check_compatible(anchors, space, base_given=bool(base))
    basis = plane_basis(gram(anchors, space), (str(a), str(b), str(c)))
    xs, ys = grid_axes(basis.coords, grid, margin)
    xy = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float64)
    coeffs = [basis.coefficients(xy), torch.eye(3, dtype=torch.float64)]
    curve = _fitted_between(c, a, b, space) if curve is None else curve
    ts = uniform_ts(curve_points) if curve else []
    on_curve = bernstein(torch.tensor(ts), 2)[:, [0, 2, 1]]  # Bernstein weights (a, c, b) reordered to anchors (a, b, c)
    coeffs.append(on_curve)
    tasks, metrics = _task_data([a, b, c], data, split, limit, manifest)
    names = [str(a), str(b), str(c)]
    base_name = resolve_base_name(anchors, names, base)
    model, tokenizer = load_base(base_name, device=device)
    curves = evaluate_points(model, tokenizer, Span(tuple(anchors), space), torch.cat(coeffs), tasks, eval_config, metrics)
    return SurfaceResult("plane", space, xs, ys, basis.coords.tolist(), names,
                         _split_surface(curves, (len(ys), len(xs)), 3, len(ts)), names, base_name, split, seed,
                         {"t": ts, "xy": (on_curve @ basis.coords).tolist()} if curve else None)


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
) -> SurfaceResult:
    """Loss around ``adapter`` along one or two filter-normalised random directions (Li et al., 2018), α, β ∈ [−span, span]."""
    from .directions import landscape_coefficients, random_span
    from .plane import check_grid

    if dimensions not in (1, 2):
        raise ConfigError(f"--dimensions must be 1 or 2, got {dimensions}")
    check_grid(grid)
    if not span > 0:
        raise ConfigError(f"--span must be positive, got {span}")
    centre = load_adapter(adapter, allow_pickle)
    the_span = random_span(centre, dimensions, seed)
    axis = torch.linspace(-span, span, grid, dtype=torch.float64).tolist()
    ys = axis if dimensions == 2 else [0.0]
    coeffs = torch.cat([landscape_coefficients(axis, ys if dimensions == 2 else None),
                        torch.eye(dimensions + 1, dtype=torch.float64)[:1]])
    tasks, metrics = _task_data([adapter], data, split, limit, manifest)
    base_name = resolve_base_name([centre], [adapter], base)
    model, tokenizer = load_base(base_name, device=device)
    curves = evaluate_points(model, tokenizer, the_span, coeffs, tasks, eval_config, metrics)
    return SurfaceResult("random", "factor", axis, ys, [[0.0, 0.0]], [str(adapter)],
                         _split_surface(curves, (len(ys), len(axis)), 1), [str(adapter)], base_name, split, seed,
                         extra={"directions": "filter-normalised Gaussian, per LoRA factor row (Li et al., 2018)", "span": span})


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
):
    """Barriers between the task adapters of a sequence, every pair (or consecutive ones), scored on every task;
    with ``bezier`` a curve is fitted for each pair on its two tasks' training data and measured the same way
    (``curves_out``: also save each control point there as ``A-B/``, a folder ``modeconn plane`` can take)."""
    from tqdm import tqdm

    from .bezier import CurveConfig, fit_bezier
    from .scoring import get_scorer
    from .sequence import load_sequence
    from .sweep import PairResult, SweepResult

    if pairs not in ("all", "consecutive"):
        raise ConfigError(f"--pairs must be 'all' or 'consecutive', got {pairs!r}")
    ts = uniform_ts(points)
    seq = load_sequence(sequence)
    if len(seq.tasks) < 2:
        raise ConfigError(f"{sequence}: a sweep needs at least two tasks, the manifest lists {len(seq.tasks)}")
    torch.manual_seed(seed)
    names = [t.name for t in seq.tasks]
    adapters = [load_adapter(seq.adapter_dir(t), allow_pickle) for t in seq.tasks]
    check_compatible(adapters, space, base_given=bool(base))
    for t in seq.tasks:
        get_scorer(t.metric)
    tasks = {t.name: load_split(seq.data_dir(t), split, limit) for t in seq.tasks}
    metrics = {t.name: t.metric for t in seq.tasks}
    train = {t.name: load_split(seq.data_dir(t), "train", limit) for t in seq.tasks} if bezier else {}
    model, tokenizer = load_base(base or seq.base_model, device=device)
    todo = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if pairs == "all" or j == i + 1]
    quiet = replace(eval_config, progress=False)
    results = []
    for i, j in tqdm(todo, desc="adapter pairs", disable=not progress):
        ends = [str(seq.adapter_dir(seq.tasks[k])) for k in (i, j)]
        line = evaluate_path(model, tokenizer, linear_path(adapters[i], adapters[j], space, True), ts, tasks, quiet, metrics)
        pair = PairResult(i, j, BarrierResult.from_evaluation(line, "linear", space, ends, seq.base_model, split=split, seed=seed))
        if bezier:
            config = curve_config or CurveConfig(seed=seed)
            fit = fit_bezier(model, tokenizer, adapters[i], adapters[j], train[names[i]] + train[names[j]], space, config, False)
            if curves_out is not None:
                fit.endpoints = ends
                fit.save(FsPath(curves_out) / f"{names[i]}-{names[j]}")
            curve = bezier_path(adapters[i], fit.control, adapters[j], space, True)
            evaluation = evaluate_path(model, tokenizer, curve, ts, tasks, quiet, metrics)
            pair.bezier = BarrierResult.from_evaluation(evaluation, "bezier", space, ends, seq.base_model, split=split, seed=seed,
                                                        extra={"fit_loss_first": fit.history[0], "fit_loss_last": fit.history[-1]})
        results.append(pair)
    return SweepResult(str(sequence), names, [str(seq.adapter_dir(t)) for t in seq.tasks], space, base or seq.base_model,
                       results, split, seed, {"points": points, "pairs": pairs})


__all__ = ["measure_barrier", "fit_curve", "measure_plane", "measure_landscape", "sweep_sequence", "load_task_data",
           "manifest_data"]
