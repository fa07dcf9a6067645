"""Loss barriers along a path, the way each community reports them, and the result that writes itself out.

With L(t) sampled at t_0 = 0 < … < t_n = 1:
  barrier (Entezari et al.)      max_t L(t) − ((1−t)·L(0) + t·L(1))   the interpolation-relative headline
  barrier_mean_endpoint (Frankle) max_t L(t) − ½(L(0) + L(1))
  barrier_max_endpoint            max_t L(t) − max(L(0), L(1))
  accuracy_drop                   max_t ((1−t)·a(0) + t·a(1)) − a(t)   (and its worse-endpoint variant)
and, over several tasks at once,
  joint_gap                       min_t max_j (L_j(t) − min(L_j(0), L_j(1)))
the smallest worst-task excess over each task's better endpoint: 0 when the path passes a point as good as both
minima on every task (a shared low-loss valley). Between minima of *different* tasks each task's loss usually
rises monotonically away from its own minimum, so the per-task barrier is 0 on any path; the joint gap is the
number a curve between them can lower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..evaluator.evaluate import PathEvaluation
from ..files import nan_for_null
from ..results import JsonResult

FACTOR_NOTE = (
    "factor space interpolates A and B separately: the path depends on how each ΔW is factorised, so it is "
    "meaningful for adapters of one lineage (e.g. sequential training warm-started from the previous task)"
)
DELTA_NOTE = "delta space interpolates the merged updates ΔW = scale·B·A exactly (a LoRA of rank r1 + r2)"


@dataclass(frozen=True)
class Barrier:
    value: float
    t: float


def _interpolated(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (1 - t) * y[0] + t * y[-1]


def _check(t, y):
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    if len(t) != len(y) or len(t) < 2 or t[0] != 0.0 or t[-1] != 1.0:
        raise ValueError("barriers need values at t = 0 and t = 1 (first and last samples)")
    return t, y


def loss_barrier(t, loss) -> Barrier:
    """Largest excess of L(t) over the straight line between the endpoint losses (0 when the path never rises)."""
    t, y = _check(t, loss)
    gap = y - _interpolated(t, y)
    i = int(np.argmax(gap))
    return Barrier(float(gap[i]), float(t[i]))


def mean_endpoint_barrier(t, loss) -> Barrier:
    t, y = _check(t, loss)
    i = int(np.argmax(y))
    return Barrier(float(y[i] - 0.5 * (y[0] + y[-1])), float(t[i]))


def max_endpoint_barrier(t, loss) -> Barrier:
    t, y = _check(t, loss)
    i = int(np.argmax(y))
    return Barrier(float(y[i] - max(y[0], y[-1])), float(t[i]))


def accuracy_drop(t, acc) -> Barrier:
    """Largest shortfall of accuracy below the straight line between the endpoint accuracies."""
    t, y = _check(t, acc)
    gap = _interpolated(t, y) - y
    i = int(np.argmax(gap))
    return Barrier(float(gap[i]), float(t[i]))


def min_endpoint_accuracy_drop(t, acc) -> Barrier:
    t, y = _check(t, acc)
    i = int(np.argmin(y))
    return Barrier(float(min(y[0], y[-1]) - y[i]), float(t[i]))


def joint_gap(t, losses: list[list[float]]) -> Barrier:
    """``min_t max_j (L_j(t) − min(L_j(0), L_j(1)))`` over the tasks' loss curves, and the t where it is reached."""
    curves = [_check(t, loss)[1] for loss in losses]
    excess = np.max([y - min(y[0], y[-1]) for y in curves], axis=0)
    i = int(np.argmin(excess))
    return Barrier(float(excess[i]), float(np.asarray(t, dtype=float)[i]))


@dataclass
class TaskBarrier:
    loss: list[float]
    accuracy: list[float] | None
    examples: int
    barrier: float
    barrier_t: float
    barrier_mean_endpoint: float
    barrier_max_endpoint: float
    barrier_max_endpoint_t: float
    accuracy_drop: float | None = None
    accuracy_drop_t: float | None = None
    accuracy_drop_min_endpoint: float | None = None
    metric: str = "exact_match"
    cut_prompts: int = 0  # prompts cut from the left to fit max_length
    rank_accuracy: list[float] | None = None  # rank classification over the task's choices (evaluator/rank.py)

    @classmethod
    def from_json(cls, data: dict) -> "TaskBarrier":
        """A non-finite number was written as null: it comes back as NaN (a missing accuracy stays None)."""
        data = dict(data)
        data["loss"], data["accuracy"] = nan_for_null(data["loss"]), nan_for_null(data.get("accuracy"))
        data["rank_accuracy"] = nan_for_null(data.get("rank_accuracy"))
        numbers = ["barrier", "barrier_t", "barrier_mean_endpoint", "barrier_max_endpoint", "barrier_max_endpoint_t"]
        if data["accuracy"] is not None:
            numbers += ["accuracy_drop", "accuracy_drop_t", "accuracy_drop_min_endpoint"]
        for key in numbers:
            data[key] = math.nan if data.get(key) is None else data[key]
        return cls(**data)


def task_barrier(t: list[float], loss: list[float], accuracy: list[float] | None, examples: int,
                 metric: str = "exact_match", cut_prompts: int = 0, rank_accuracy: list[float] | None = None) -> TaskBarrier:
    b, mean, worst = loss_barrier(t, loss), mean_endpoint_barrier(t, loss), max_endpoint_barrier(t, loss)
    out = TaskBarrier(loss, accuracy, examples, b.value, barrier_t=b.t, barrier_mean_endpoint=mean.value,
                      barrier_max_endpoint=worst.value, barrier_max_endpoint_t=worst.t, metric=metric,
                      cut_prompts=cut_prompts, rank_accuracy=rank_accuracy)
    if accuracy is not None:
        d, dm = accuracy_drop(t, accuracy), min_endpoint_accuracy_drop(t, accuracy)
        out.accuracy_drop, out.accuracy_drop_t, out.accuracy_drop_min_endpoint = d.value, d.t, dm.value
    return out


@dataclass
class BarrierResult(JsonResult):
    kind: ClassVar[str] = "barrier"

    """Loss and accuracy along one path for each task, with its barriers; ``barrier.json`` is ``to_json()``."""

    path: str
    space: str
    t: list[float]
    tasks: dict[str, TaskBarrier]
    adapters: list[str]
    base_model: str
    split: str = "eval"
    seed: int = 0
    space_note: str = ""
    extra: dict = field(default_factory=dict)
    joint_gap: float | None = None  # over all tasks (see the module docstring)
    joint_gap_t: float | None = None
    made_by: dict = field(default_factory=dict)  # settings, versions, command (provenance.made_by)

    @classmethod
    def from_evaluation(cls, evaluation: PathEvaluation, path: str, space: str, adapters: list[str], base_model: str,
                        **kwargs) -> "BarrierResult":
        tasks = {n: task_barrier(evaluation.t, c.loss, c.accuracy, c.examples, metric=c.metric, cut_prompts=c.cut_prompts,
                                 rank_accuracy=c.rank_accuracy)
                 for n, c in evaluation.tasks.items()}
        note = FACTOR_NOTE if space == "factor" else DELTA_NOTE
        gap = joint_gap(evaluation.t, [c.loss for c in evaluation.tasks.values()]) if len(tasks) > 1 else None
        return cls(path, space, list(evaluation.t), tasks, adapters=adapters, base_model=base_model, space_note=note,
                   **kwargs,
                   joint_gap=gap.value if gap else None, joint_gap_t=gap.t if gap else None)

    @classmethod
    def from_fields(cls, data: dict) -> "BarrierResult":
        data["tasks"] = {n: TaskBarrier.from_json(v) for n, v in data["tasks"].items()}
        if len(data["tasks"]) > 1:
            data["joint_gap"] = math.nan if data.get("joint_gap") is None else data["joint_gap"]
            data["joint_gap_t"] = math.nan if data.get("joint_gap_t") is None else data["joint_gap_t"]
        return cls(**data)

    def table(self) -> str:
        """The readable table: loss (and accuracy) per task at each t, then the barriers."""
        names = list(self.tasks)
        ranked = any(tb.rank_accuracy is not None for tb in self.tasks.values())  # a column only where some task has it
        head = f"{'t':>6} " + " ".join(f"{n[:14] + ' loss':>20}{'acc':>7}" + (f"{'rank':>7}" if ranked else "") for n in names)
        lines = [f"{self.path} path in {self.space} space: {self.adapters[0]} → {self.adapters[-1]}", head]
        for i, t in enumerate(self.t):
            cells = []
            for n in names:
                tb = self.tasks[n]
                acc = f"{tb.accuracy[i]:7.3f}" if tb.accuracy is not None else f"{'-':>7}"
                if ranked:
                    acc += f"{tb.rank_accuracy[i]:7.3f}" if tb.rank_accuracy is not None else f"{'-':>7}"
                cells.append(f"{tb.loss[i]:20.4f}{acc}")
            lines.append(f"{t:6.3f} " + " ".join(cells))
        lines.append("")
        lines.append(f"{'task':<16}{'barrier':>9}{'at t':>7}{'vs mean':>9}{'vs max':>9}{'acc drop':>10}{'at t':>7}")
        for n, tb in self.tasks.items():
            drop = f"{tb.accuracy_drop:10.3f}{tb.accuracy_drop_t:7.3f}" if tb.accuracy_drop is not None else f"{'-':>10}{'-':>7}"
            lines.append(f"{n[:16]:<16}{tb.barrier:9.4f}{tb.barrier_t:7.3f}{tb.barrier_mean_endpoint:9.4f}"
                         f"{tb.barrier_max_endpoint:9.4f}{drop}")
        if self.joint_gap is not None:
            lines.append(f"joint gap (worst task's excess over its better endpoint, best point): {self.joint_gap:.4f} at t={self.joint_gap_t:.3f}")
        return "\n".join(lines)
