"""Adaptive barrier search: the same barrier as a fine uniform grid from fewer evaluated points.

Start with a coarse grid (denser near the ends). Then, round after round, for every task whose barrier gap
``g(t) = L(t) − ((1−t)L(0) + tL(1))`` peaks inside the path, fit a parabola through the best sampled point and its
two neighbours and evaluate at its vertex (successive parabolic interpolation, kept inside the bracket). All new
points of a round go through the batched evaluator together. A task is done when the parabola predicts less than
``rel_tol`` × its barrier (or ``abs_tol`` in loss) still to gain; the search ends when every task is done or
``max_points`` are used. Like any grid, the coarse start can miss a peak narrower than its spacing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..evaluator.evaluate import PathEvaluation, TaskCurve


@dataclass(frozen=True)
class SearchConfig:
    # the points to start with: denser near the ends, where a task's loss leaves its own minimum and bumps hide
    coarse: tuple[float, ...] = (0.0, 0.1, 0.35, 0.65, 0.9, 1.0)
    rel_tol: float = 0.005  # done when the predicted gain is below this fraction of the barrier...
    abs_tol: float = 1e-4  # ...or below this, in loss units
    max_points: int = 10  # half the usual 21-point grid
    min_spacing: float = 1e-3  # no two evaluated t closer than this


def _proposal(t: np.ndarray, g: np.ndarray, config: SearchConfig) -> float | None:
    """The next t to evaluate for one task's gap curve, or None when its peak is pinned down."""
    i = int(np.argmax(g))
    if i == 0 or i == len(t) - 1 or g[i] <= config.abs_tol:
        return None  # the peak is an endpoint: the barrier is 0
    (t0, t1, t2), (g0, g1, g2) = t[i - 1 : i + 2], g[i - 1 : i + 2]
    wider = (t0 + t1) / 2 if t1 - t0 > t2 - t1 else (t1 + t2) / 2
    d0, d2 = (g1 - g0) / (t1 - t0), (g2 - g1) / (t2 - t1)
    curvature = (d2 - d0) / (t2 - t0)  # p(t) = g1 + slope·(t − t1) + curvature·(t − t1)² through the three points
    slope = d0 + curvature * (t1 - t0)
    if curvature >= 0:  # flat top: no vertex to aim at, halve the wider side
        vertex, predicted = wider, np.inf
    else:
        vertex = min(max(t1 - slope / (2 * curvature), t0), t2)
        predicted = g1 + slope * (vertex - t1) + curvature * (vertex - t1) ** 2
    if predicted - g1 <= max(config.rel_tol * g1, config.abs_tol):
        return None
    if np.min(np.abs(t - vertex)) < config.min_spacing:  # the vertex sits on a sampled point: split the wider side
        vertex = wider
        if np.min(np.abs(t - vertex)) < config.min_spacing:
            return None
    return float(vertex)


def adaptive_evaluation(evaluate: Callable[[list[float]], dict[str, TaskCurve]], config: SearchConfig = SearchConfig()) -> PathEvaluation:
    """``evaluate(ts)`` scores a list of t (one batched call per round); returns every evaluated point, sorted."""
    ts = sorted(set(config.coarse) | {0.0, 1.0})
    curves = evaluate(ts)
    scored = {t: _point(curves, i) for i, t in enumerate(ts)}
    meta = {name: (c.examples, c.metric) for name, c in curves.items()}
    while len(scored) < config.max_points:
        t = np.array(sorted(scored))
        new = set()
        for name in meta:
            loss = np.array([scored[x][name][0] for x in t])
            proposal = _proposal(t, loss - ((1 - t) * loss[0] + t * loss[-1]), config)
            if proposal is not None:
                new.add(round(proposal, 9))
        new = sorted(new - set(scored))[: config.max_points - len(scored)]
        if not new:
            break
        more = evaluate(new)
        for i, x in enumerate(new):
            scored[x] = _point(more, i)
    t = sorted(scored)
    tasks = {}
    for name, (examples, metric) in meta.items():
        acc, rank = [scored[x][name][1] for x in t], [scored[x][name][2] for x in t]
        tasks[name] = TaskCurve([scored[x][name][0] for x in t], None if acc[0] is None else acc, examples, metric,
                                rank_accuracy=None if rank[0] is None else rank)
    return PathEvaluation(t, tasks)


def _point(curves: dict[str, TaskCurve], i: int) -> dict[str, tuple]:
    """Point ``i`` of each task's curves: (loss, accuracy, rank accuracy), the accuracies None where not scored."""
    return {name: (c.loss[i], c.accuracy[i] if c.accuracy else None, c.rank_accuracy[i] if c.rank_accuracy else None)
            for name, c in curves.items()}
