"""The kind table: for each result kind (the ``kind`` field of its JSON), how to read it back, which files it writes
and how to draw it — so any result JSON can be redrawn, or shown in a notebook, without recomputing anything."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ..checks import JSONShapeError, load_json_text
from ..errors import DataError
from ..files import Content

STEMS = {"barrier": "barrier", "plane": "plane", "random": "landscape", "sweep": "sweep", "continual_metrics": "accuracy"}


def load_result(path: str | Path):
    """A BarrierResult, SurfaceResult, SweepResult or a training run's ContinualMetrics, by the JSON's ``kind``."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from ..analysis.sweep import SweepResult
    from ..continual.metrics import ContinualMetrics

    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():  # a training run's step log
        from ..continual.train_log import TrainLog

        log = TrainLog.read(path)
        try:
            _check_shape(log)
        except ValueError as exc:
            raise DataError(f"{path}: malformed training log ({exc})") from None
        return log
    if path.is_dir():
        raise DataError(f"{path}: a folder; pass one result file (barrier.json, plane.json, sweep.json, metrics.json, …)")
    try:
        data = load_json_text(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such result file") from None
    except JSONShapeError as exc:
        raise DataError(f"{path}: not a result modeconn reads ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    from ..continual.compare import Comparison

    readers = {"barrier": BarrierResult, "plane": SurfaceResult, "random": SurfaceResult, "sweep": SweepResult,
               "continual_metrics": ContinualMetrics, "comparison": Comparison}
    if kind not in readers:
        raise DataError(f"{path}: not a modeconn result (kind {kind!r}; expected one of {sorted(readers)})")
    try:
        result = readers[kind].from_json(data)
        _check_shape(result)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: malformed {kind} result ({type(exc).__name__}: {exc})") from None
    return result


def _number(v, what: str, low: float | None = None, high: float | None = None, none: bool = False) -> None:
    """A number (NaN allowed: a non-finite value written as null reads back as NaN), within the range if given."""
    if v is None and none:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"{what} holds {v!r}, not a number")
    if v == v and ((low is not None and v < low) or (high is not None and v > high)):
        raise ValueError(f"{what} holds {v!r}, outside [{low if low is not None else '-inf'}, "
                         f"{high if high is not None else 'inf'}]")


def _numbers(values, length: int | None, what: str, low: float | None = None, high: float | None = None,
             none: bool = False, rising: bool = False) -> None:
    if not isinstance(values, list) or (length is not None and len(values) != length):
        raise ValueError(f"{what} should be a list of {'' if length is None else length} numbers".replace("  ", " "))
    for v in values:
        _number(v, what, low, high, none)
    if rising and any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} should rise from point to point")


def _names(values, what: str, unique: bool = False) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what} should be a list of names")
    if unique and len(set(values)) != len(values):
        raise ValueError(f"{what} names one twice")


def _check_shape(result) -> None:
    """Types, ranges and shapes of what a result's pictures read (a hand-edited JSON can break any of them)."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from ..analysis.sweep import SweepResult
    from ..continual.metrics import ContinualMetrics
    from ..continual.train_log import NUMBERS, TrainLog

    if isinstance(result, BarrierResult):
        _numbers(result.t, None, "t", 0, 1, rising=True)
        if len(result.t) < 2 or not isinstance(result.tasks, dict) or not result.tasks:
            raise ValueError("a barrier result needs at least two t and one task")
        _names(result.adapters, "adapters")
        for name, task in result.tasks.items():
            _numbers(task.loss, len(result.t), f"{name}.loss")
            if task.accuracy is not None:
                _numbers(task.accuracy, len(result.t), f"{name}.accuracy", 0, 1)
            for key in ("barrier", "barrier_mean_endpoint", "barrier_max_endpoint", "accuracy_drop"):
                _number(getattr(task, key), f"{name}.{key}", none=True)
            for key in ("barrier_t", "barrier_max_endpoint_t", "accuracy_drop_t"):
                _number(getattr(task, key), f"{name}.{key}", 0, 1, none=True)
        _number(result.joint_gap, "joint_gap", none=True), _number(result.joint_gap_t, "joint_gap_t", 0, 1, none=True)
    elif isinstance(result, SurfaceResult):
        _numbers(result.x, None, "x", rising=True), _numbers(result.y, None, "y", rising=True)
        _names(result.labels, "labels")
        if not isinstance(result.points, list) or len(result.points) != len(result.labels):
            raise ValueError(f"points should hold one [x, y] per label ({len(result.labels)})")
        for point in result.points:
            _numbers(point, 2, "points")
        if not isinstance(result.tasks, dict) or not result.tasks:
            raise ValueError("tasks should name at least one task")
        for name, task in result.tasks.items():
            for key, low, high in (("loss", None, None), ("accuracy", 0, 1)):
                grid = getattr(task, key)
                if grid is None and key == "accuracy":
                    continue
                if not isinstance(grid, list) or len(grid) != len(result.y):
                    raise ValueError(f"{name}.{key} should have {len(result.y)} rows")
                for row in grid:
                    _numbers(row, len(result.x), f"{name}.{key} row", low, high)
            _numbers(task.at_points, len(result.labels), f"{name}.at_points")
            if task.curve_loss is not None:
                _numbers(task.curve_loss, None, f"{name}.curve_loss")
    elif isinstance(result, SweepResult):
        _names(result.tasks, "tasks", unique=True)
        if not isinstance(result.pairs, list):
            raise ValueError("pairs should be a list")
        for pair in result.pairs:
            if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(result.tasks)
                       for i in (pair.a, pair.b)):
                raise ValueError(f"pair ({pair.a!r}, {pair.b!r}) names no task")
            for path in (pair.linear, pair.bezier):
                if path is not None:
                    _check_shape(path)
    elif isinstance(result, ContinualMetrics):
        _names(result.tasks, "tasks", unique=True)
        if not isinstance(result.accuracy, list) or not result.accuracy or len(result.accuracy) > len(result.tasks):
            raise ValueError("accuracy should have one row per trained task")
        for row in result.accuracy:
            _numbers(row, len(result.tasks), "accuracy row", 0, 1)
        if not isinstance(result.loss, list) or (result.loss and len(result.loss) != len(result.accuracy)):
            raise ValueError("loss should have one row per trained task")
        for row in result.loss:
            _numbers(row, len(result.tasks), "loss row", 0, none=True)
        if result.initial_accuracy is not None:
            _numbers(result.initial_accuracy, len(result.tasks), "initial_accuracy", 0, 1)
        if result.initial_loss is not None:
            _numbers(result.initial_loss, len(result.tasks), "initial_loss", 0, none=True)
        if not isinstance(result.joint, bool):
            raise ValueError(f"joint should be true or false, not {result.joint!r}")
    elif isinstance(result, TrainLog):
        for record in result.steps:
            where = f"step {record['step']}"
            if not isinstance(record["task"], str):
                raise ValueError(f"{where}: task should be a name, not {record['task']!r}")
            for key in NUMBERS:
                _number(record.get(key), f"{where}: {key}", none=True)


def writers(result, surface3d: bool = False, measure: str = "barrier") -> dict[str, Content]:
    """File name → writer for the result's JSON, PNG and HTML (what each command writes, and ``modeconn plot``);
    training metrics (one run, or method label → run) get only the accuracy pictures."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from .barrier import barrier_html, barrier_png
    from .continual import continual_html, continual_png
    from .surface import surface_html, surface_png
    from .sweep import sweep_html, sweep_png

    from ..continual.train_log import TrainLog
    from .train_log import train_log_html, train_log_png

    runs = _continual_runs(result)
    if runs is not None:  # a run's metrics.json stays as the trainer wrote it; only pictures
        return {"accuracy.png": partial(continual_png, runs), "accuracy.html": partial(continual_html, runs)}
    if isinstance(result, TrainLog):  # likewise its train_log.jsonl
        return {"train_log.png": partial(train_log_png, result), "train_log.html": partial(train_log_html, result)}
    from ..continual.compare import Comparison
    from .compare import compare_html, compare_png

    if isinstance(result, Comparison):
        return {"compare.json": result.dumps() + "\n", "compare.png": partial(compare_png, result),
                "compare.html": partial(compare_html, result)}
    if isinstance(result, BarrierResult):
        stem, png, html = "barrier", partial(barrier_png, result), partial(barrier_html, result)
    elif isinstance(result, SurfaceResult):
        stem, png, html = STEMS[result.kind], partial(surface_png, result), partial(surface_html, result, surface3d=surface3d)
    else:
        stem, png, html = "sweep", partial(sweep_png, result, measure=measure), partial(sweep_html, result, measure=measure)
    return {f"{stem}.json": result.dumps() + "\n", f"{stem}.png": png, f"{stem}.html": html}


def _continual_runs(result) -> dict | None:
    """Training metrics as label → ContinualMetrics (a single run is labelled "run"); None for any other result."""
    from ..continual.metrics import ContinualMetrics

    if isinstance(result, ContinualMetrics):
        return {"run": result}
    return result if isinstance(result, dict) else None


def figure(result, surface3d: bool = False, measure: str = "barrier"):
    """The plotly figure of any result (what its HTML page shows); in a notebook it displays itself.

    Training metrics, one run or a dict of them (method label → metrics), give side-by-side accuracy matrices."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from .barrier import barrier_figure
    from .continual import continual_figure
    from .surface import surface_figure
    from .sweep import sweep_figure

    from ..continual.train_log import TrainLog
    from .train_log import train_log_figure

    runs = _continual_runs(result)
    if runs is not None:
        return continual_figure(runs)
    if isinstance(result, TrainLog):
        return train_log_figure(result)
    from ..continual.compare import Comparison
    from .compare import compare_figure

    if isinstance(result, Comparison):
        return compare_figure(result)
    if isinstance(result, BarrierResult):
        return barrier_figure(result)
    if isinstance(result, SurfaceResult):
        return surface_figure(result, surface3d)
    return sweep_figure(result, measure)


def save_result(result, out: str | Path, **options) -> list[Path]:
    """Write a result's JSON, PNG and HTML into ``out`` together (as the commands do); returns the files."""
    from ..files import write_all

    return write_all(out, writers(result, **options))
