"""Continual-learning metrics from one recorded matrix R[i][j]: the score on task j after training task i.

  AP  = mean_j R[T][j]                                   (average performance after the last task)
  BWT = mean_{j<T} (R[T][j] − R[j][j])                    (backward transfer; negative = forgetting)
  FWT = mean_{j>1} (R[j−1][j] − R₀[j])                    (forward transfer; R₀ = the model before any task)

Whether each task was learned at all (``metrics.json``: ``base_accuracy``, ``eval_examples``, ``learned_margin``,
``learned``, ``learned_by``): R[j][j] − p_j > 1.96·√(p_j(1 − p_j)/n_j), with p_j = R₀[j] the base model's accuracy on
task j (every method starts at the base: a fresh LoRA has B = 0, a prompt method has no prompt yet) and n_j its scored
examples; a joint (multi-task) run uses its final row. The margin is the normal 95% margin of a proportion at the base's
rate (read one-sided: a 2.5% chance that a model no better than the base clears it), chosen over an exact binomial test
because it also covers a task metric that is a mean of [0, 1] scores rather than a count (its variance is at most
p(1 − p)). A base at 0 has margin 0, so there one correct answer counts as learned.

Where every task's examples carry their choices, the rank-classification accuracy (``evaluator/rank.py``) is recorded
beside it, row for row (``rank_accuracy``, ``initial_rank_accuracy``, ``rank_AP``, ``rank_BWT``); the task's own metric
stays the primary one (AP, BWT and FWT are computed from it), but ``learned`` reads the rank accuracy where every row
has it: a base that never answers in the label format scores 0 by exact match, and a prompt that teaches only the
format would clear that at chance; the rank accuracy of the label set says whether the task was learned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..results import JsonResult

LEARNED_Z = 1.96  # the 95% normal quantile of the learned-or-not margin


def signed(value: float | None) -> str:
    """A transfer value as printed everywhere: sign always shown, 'n/a' where it is undefined."""
    return "n/a" if value is None else f"{value:+.3f}"


@dataclass
class ContinualMetrics(JsonResult):
    kind: ClassVar[str] = "continual_metrics"

    tasks: list[str]
    accuracy: list[list[float]] = field(default_factory=list)  # row i: after training task i
    loss: list[list[float]] = field(default_factory=list)
    initial_accuracy: list[float] | None = None
    initial_loss: list[float] | None = None
    split: str = "test"
    joint: bool = False  # a multi-task run trained once on every task: only AP (the final row) means something
    eval_examples: list[int] | None = None  # examples scored per task (the n of the learned-or-not margin)
    rank_accuracy: list[list[float]] | None = None  # rank classification, rows as ``accuracy`` (tasks with choices)
    initial_rank_accuracy: list[float] | None = None

    def add_row(self, accuracy: list[float], loss: list[float], rank: list[float] | None = None) -> None:
        self.accuracy.append(list(accuracy))
        self.loss.append(list(loss))
        if rank is not None:
            self.rank_accuracy = (self.rank_accuracy or []) + [list(rank)]

    @property
    def ap(self) -> float:
        return sum(self.accuracy[-1]) / len(self.accuracy[-1])

    @property
    def bwt(self) -> float | None:
        return self._bwt(self.accuracy)

    @property
    def rank_ap(self) -> float | None:
        return sum(self.rank_accuracy[-1]) / len(self.rank_accuracy[-1]) if self.rank_accuracy else None

    @property
    def rank_bwt(self) -> float | None:
        return self._bwt(self.rank_accuracy) if self.rank_accuracy else None

    def _bwt(self, matrix: list[list[float]]) -> float | None:
        t = len(matrix)
        if t < 2 or self.joint:
            return None
        return sum(matrix[-1][j] - matrix[j][j] for j in range(t - 1)) / (t - 1)

    @property
    def fwt(self) -> float | None:
        t = len(self.accuracy)
        if t < 2 or self.initial_accuracy is None or self.joint:
            return None
        return sum(self.accuracy[j - 1][j] - self.initial_accuracy[j] for j in range(1, t)) / (t - 1)

    @property
    def learned_by(self) -> str | None:
        """Which accuracy the learned-or-not verdict reads: "rank" where the run records rank classification for every
        row (a base that never answers in the label format scores 0 by its metric, so any run that learns the format
        would clear it; rank accuracy asks whether the task itself was learned), else "accuracy" (the task's metric);
        None without the base's scores."""
        if self.eval_examples is None:
            return None
        ranks = self.rank_accuracy
        if self.initial_rank_accuracy is not None and ranks and len(ranks) == len(self.accuracy):
            return "rank"
        return "accuracy" if self.initial_accuracy is not None else None

    def _verdict_rows(self) -> tuple[list[list[float]], list[float]] | None:
        by = self.learned_by
        if by is None:
            return None
        if by == "rank":
            return self.rank_accuracy, self.initial_rank_accuracy
        return self.accuracy, self.initial_accuracy

    @property
    def learned_margin(self) -> list[float] | None:
        """Per task, 1.96·√(p(1 − p)/n) at the base's accuracy p (by ``learned_by``) over its n scored examples."""
        verdict = self._verdict_rows()
        if verdict is None:
            return None
        return [LEARNED_Z * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))
                for p, n in zip(verdict[1], self.eval_examples)]

    @property
    def learned(self) -> list[bool] | None:
        """Per task trained so far: its accuracy (by ``learned_by``) right after training it (joint: the final row,
        once complete) above the base model's by more than ``learned_margin``; None without the base's scores."""
        verdict, margins = self._verdict_rows(), self.learned_margin
        if verdict is None:
            return None
        matrix, initial = verdict
        if self.joint:
            rows = [matrix[-1]] * len(self.tasks) if len(matrix) == len(self.tasks) else []
        else:
            rows = matrix
        return [row[j] - initial[j] > margins[j] for j, row in enumerate(rows)]

    def json_summary(self) -> dict:
        """AP, BWT, FWT and what was learned, recomputed from the matrix on reading."""
        verdict = self._verdict_rows()  # the base's accuracy by what the verdict reads (rank where it reads rank)
        return {"AP": self.ap, "BWT": self.bwt, "FWT": self.fwt,
                "base_accuracy": verdict[1] if verdict else self.initial_accuracy,
                "learned_margin": self.learned_margin, "learned": self.learned, "learned_by": self.learned_by,
                "rank_AP": self.rank_ap, "rank_BWT": self.rank_bwt}

    @classmethod
    def from_fields(cls, data: dict) -> "ContinualMetrics":
        """The matrix from a run's ``metrics.json`` (AP, BWT, FWT and ``learned`` are recomputed from it); a run
        record's other keys beside it are left alone."""
        keys = ("tasks", "accuracy", "loss", "initial_accuracy", "initial_loss", "split", "joint", "eval_examples",
                "rank_accuracy", "initial_rank_accuracy")
        return cls(**{k: data[k] for k in keys if k in data})

    def table(self) -> str:
        width = max(8, *(len(t) for t in self.tasks))
        lines = [f"{'after':<{width}} " + " ".join(f"{t:>{width}}" for t in self.tasks)]
        if self.initial_accuracy is not None:
            lines.append(f"{'(base)':<{width}} " + " ".join(f"{a:>{width}.3f}" for a in self.initial_accuracy))
        for name, row in zip(self.tasks, self.accuracy):
            lines.append(f"{name:<{width}} " + " ".join(f"{a:>{width}.3f}" for a in row))
        lines.append(f"AP {self.ap:.3f}   BWT {signed(self.bwt)}   FWT {signed(self.fwt)}   ({self.split} split, each task's metric)")
        if self.rank_accuracy:
            lines.append(f"rank AP {self.rank_ap:.3f}   rank BWT {signed(self.rank_bwt)}   (rank classification over "
                         "each task's choices)")
        return "\n".join(lines)
