"""Shape checks of each result kind: types, ranges and shapes of what its pictures read, so a hand-edited JSON is
refused in one line (ValueError naming the field) instead of failing inside a plot."""
from __future__ import annotations

from ..continual.train_log import NUMBERS


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
        _number(v, what, low, high, none=none)
    if rising and any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} should rise from point to point")


def _names(values, what: str, unique: bool = False) -> None:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what} should be a list of names")
    if unique and len(set(values)) != len(values):
        raise ValueError(f"{what} names one twice")


def barrier(result) -> None:
    """Types, ranges and shapes of a path's BarrierResult (a hand-edited JSON can break any of them)."""
    _numbers(result.t, None, "t", 0, high=1, rising=True)
    if len(result.t) < 2 or not isinstance(result.tasks, dict) or not result.tasks:
        raise ValueError("a barrier result needs at least two t and one task")
    _names(result.adapters, "adapters")
    for name, task in result.tasks.items():
        _numbers(task.loss, len(result.t), f"{name}.loss")
        if task.accuracy is not None:
            _numbers(task.accuracy, len(result.t), f"{name}.accuracy", 0, high=1)
        if task.rank_accuracy is not None:
            _numbers(task.rank_accuracy, len(result.t), f"{name}.rank_accuracy", 0, high=1)
        for key in ("barrier", "barrier_mean_endpoint", "barrier_max_endpoint", "accuracy_drop"):
            _number(getattr(task, key), f"{name}.{key}", none=True)
        for key in ("barrier_t", "barrier_max_endpoint_t", "accuracy_drop_t"):
            _number(getattr(task, key), f"{name}.{key}", 0, 1, none=True)
    _number(result.joint_gap, "joint_gap", none=True), _number(result.joint_gap_t, "joint_gap_t", 0, 1, none=True)


def surface(result) -> None:
    """Types, ranges and shapes of a plane's or landscape's SurfaceResult (a hand-edited JSON can break any of them)."""
    _numbers(result.x, None, "x", rising=True), _numbers(result.y, None, "y", rising=True)
    _names(result.labels, "labels")
    if not isinstance(result.points, list) or len(result.points) != len(result.labels):
        raise ValueError(f"points should hold one [x, y] per label ({len(result.labels)})")
    for point in result.points:
        _numbers(point, 2, "points")
    if not isinstance(result.tasks, dict) or not result.tasks:
        raise ValueError("tasks should name at least one task")
    for name, task in result.tasks.items():
        for key, low, high in (("loss", None, None), ("accuracy", 0, 1), ("rank_accuracy", 0, 1)):
            grid = getattr(task, key)
            if grid is None and key != "loss":
                continue
            if not isinstance(grid, list) or len(grid) != len(result.y):
                raise ValueError(f"{name}.{key} should have {len(result.y)} rows")
            for row in grid:
                _numbers(row, len(result.x), f"{name}.{key} row", low, high=high)
        _numbers(task.at_points, len(result.labels), f"{name}.at_points")
        if task.curve_loss is not None:
            _numbers(task.curve_loss, None, f"{name}.curve_loss")


def sweep(result) -> None:
    """Types, ranges and shapes of a SweepResult (a hand-edited JSON can break any of them)."""
    _names(result.tasks, "tasks", unique=True)
    if not isinstance(result.pairs, list):
        raise ValueError("pairs should be a list")
    for pair in result.pairs:
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(result.tasks)
                   for i in (pair.a, pair.b)):
            raise ValueError(f"pair ({pair.a!r}, {pair.b!r}) names no task")
        if not isinstance(pair.paths, dict) or "linear" not in pair.paths:
            raise ValueError(f"pair ({pair.a}, {pair.b}) has no linear path")
        for path in pair.paths.values():
            barrier(path)


def metrics(result) -> None:
    """Types, ranges and shapes of a run's ContinualMetrics (a hand-edited JSON can break any of them)."""
    _names(result.tasks, "tasks", unique=True)
    if not isinstance(result.accuracy, list) or not result.accuracy or len(result.accuracy) > len(result.tasks):
        raise ValueError("accuracy should have one row per trained task")
    for row in result.accuracy:
        _numbers(row, len(result.tasks), "accuracy row", 0, high=1)
    if not isinstance(result.loss, list) or (result.loss and len(result.loss) != len(result.accuracy)):
        raise ValueError("loss should have one row per trained task")
    for row in result.loss:
        _numbers(row, len(result.tasks), "loss row", 0, none=True)
    if result.initial_accuracy is not None:
        _numbers(result.initial_accuracy, len(result.tasks), "initial_accuracy", 0, high=1)
    if result.initial_loss is not None:
        _numbers(result.initial_loss, len(result.tasks), "initial_loss", 0, none=True)
    if result.rank_accuracy is not None:
        if not isinstance(result.rank_accuracy, list) or len(result.rank_accuracy) != len(result.accuracy):
            raise ValueError("rank_accuracy should have one row per row of accuracy")
        for row in result.rank_accuracy:
            _numbers(row, len(result.tasks), "rank_accuracy row", 0, high=1)
    if result.initial_rank_accuracy is not None:
        _numbers(result.initial_rank_accuracy, len(result.tasks), "initial_rank_accuracy", 0, high=1)
    if not isinstance(result.joint, bool):
        raise ValueError(f"joint should be true or false, not {result.joint!r}")


def train_log(result) -> None:
    """Types, ranges and shapes of a run's TrainLog (a hand-edited JSON can break any of them)."""
    for record in result.steps:
        where = f"step {record['step']}"
        if not isinstance(record["task"], str):
            raise ValueError(f"{where}: task should be a name, not {record['task']!r}")
        for key in NUMBERS:
            _number(record.get(key), f"{where}: {key}", none=True)


def curvature(result) -> None:
    if not isinstance(result.points, list) or not result.points:
        raise ValueError("points should be a non-empty list")
    for i, p in enumerate(result.points):
        _number(p.loss, f"points[{i}].loss")
        _numbers(p.hessian, None, f"points[{i}].hessian")
        if p.ggn is not None:
            _numbers(p.ggn, None, f"points[{i}].ggn")
        _number(p.trace, f"points[{i}].trace", none=True)
        _number(p.trace_se, f"points[{i}].trace_se", 0, none=True)
        _number(p.t, f"points[{i}].t", 0, 1, none=True)
