"""The kind table: for each result kind (the ``kind`` field of its JSON), how to read it back, which files it writes
and how to draw it — so any result JSON can be redrawn, or shown in a notebook, without recomputing anything."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

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

        return TrainLog.read(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder; pass one result file (barrier.json, plane.json, sweep.json, metrics.json, …)")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such result file") from None
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


def _numbers(values, length: int | None, what: str) -> None:
    if not isinstance(values, list) or (length is not None and len(values) != length):
        raise ValueError(f"{what} should be a list of {length} numbers")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ValueError(f"{what} holds {v!r}, not a number")


def _check_shape(result) -> None:
    """The lists a result's pictures index agree in length (a hand-edited JSON can break that)."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from ..analysis.sweep import SweepResult
    from ..continual.metrics import ContinualMetrics

    if isinstance(result, BarrierResult):
        _numbers(result.t, None, "t")
        for name, task in result.tasks.items():
            _numbers(task.loss, len(result.t), f"{name}.loss")
            if task.accuracy is not None:
                _numbers(task.accuracy, len(result.t), f"{name}.accuracy")
    elif isinstance(result, SurfaceResult):
        _numbers(result.x, None, "x"), _numbers(result.y, None, "y")
        for name, task in result.tasks.items():
            if not isinstance(task.loss, list) or len(task.loss) != len(result.y):
                raise ValueError(f"{name}.loss should have {len(result.y)} rows")
            for row in task.loss:
                _numbers(row, len(result.x), f"{name}.loss row")
    elif isinstance(result, SweepResult):
        for pair in result.pairs:
            if not (0 <= pair.a < len(result.tasks) and 0 <= pair.b < len(result.tasks)):
                raise ValueError(f"pair ({pair.a}, {pair.b}) names no task")
            for path in (pair.linear, pair.bezier):
                if path is not None:
                    _check_shape(path)
    elif isinstance(result, ContinualMetrics):
        if len(result.accuracy) > len(result.tasks) or not result.accuracy:
            raise ValueError("accuracy should have one row per trained task")
        for row in result.accuracy:
            _numbers(row, len(result.tasks), "accuracy row")


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
