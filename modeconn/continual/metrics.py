"""Continual-learning metrics from one recorded matrix R[i][j]: the score on task j after training task i.

  AP  = mean_j R[T][j]                                   (average performance after the last task)
  BWT = mean_{j<T} (R[T][j] − R[j][j])                    (backward transfer; negative = forgetting)
  FWT = mean_{j>1} (R[j−1][j] − R₀[j])                    (forward transfer; R₀ = the model before any task)

Whether each task was learned at all (``metrics.json``: ``base_accuracy``, ``eval_examples``, ``learned_margin``,
``learned``): R[j][j] − p_j > 1.96·√(p_j(1 − p_j)/n_j), with p_j = R₀[j] the base model's accuracy on task j (every
method starts at the base: a fresh LoRA has B = 0, a prompt method has no prompt yet) and n_j its scored examples;
a joint (multi-task) run uses its final row. The margin is the normal 95% margin of a proportion at the base's rate
(read one-sided: a 2.5% chance that a model no better than the base clears it), chosen over an exact binomial test
because it also covers a task metric that is a mean of [0, 1] scores rather than a count (its variance is at most
p(1 − p)). A base at 0 has margin 0, so there one correct answer counts as learned.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

LEARNED_Z = 1.96  # the 95% normal quantile of the learned-or-not margin


def signed(value: float | None) -> str:
    """A transfer value as printed everywhere: sign always shown, 'n/a' where it is undefined."""
    return "n/a" if value is None else f"{value:+.3f}"


@dataclass
class ContinualMetrics:
    tasks: list[str]
    accuracy: list[list[float]] = field(default_factory=list)  # row i: after training task i
    loss: list[list[float]] = field(default_factory=list)
    initial_accuracy: list[float] | None = None
    initial_loss: list[float] | None = None
    split: str = "test"
    joint: bool = False  # a multi-task run trained once on every task: only AP (the final row) means something
    eval_examples: list[int] | None = None  # examples scored per task (the n of the learned-or-not margin)

    def add_row(self, accuracy: list[float], loss: list[float]) -> None:
        self.accuracy.append(list(accuracy))
        self.loss.append(list(loss))

    @property
    def ap(self) -> float:
        return sum(self.accuracy[-1]) / len(self.accuracy[-1])

    @property
    def bwt(self) -> float | None:
        t = len(self.accuracy)
        if t < 2 or self.joint:
            return None
        return sum(self.accuracy[-1][j] - self.accuracy[j][j] for j in range(t - 1)) / (t - 1)

    @property
    def fwt(self) -> float | None:
        t = len(self.accuracy)
        if t < 2 or self.initial_accuracy is None or self.joint:
            return None
        return sum(self.accuracy[j - 1][j] - self.initial_accuracy[j] for j in range(1, t)) / (t - 1)

    @property
    def learned_margin(self) -> list[float] | None:
        """Per task, 1.96·√(p(1 − p)/n) at the base's accuracy p over its n scored examples."""
        if self.initial_accuracy is None or self.eval_examples is None:
            return None
        return [LEARNED_Z * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))
                for p, n in zip(self.initial_accuracy, self.eval_examples)]

    @property
    def learned(self) -> list[bool] | None:
        """Per task trained so far: its accuracy right after training it (joint: the final row, once complete) above
        the base model's by more than ``learned_margin``; None without the base's scores."""
        margins = self.learned_margin
        if margins is None:
            return None
        if self.joint:
            rows = [self.accuracy[-1]] * len(self.tasks) if len(self.accuracy) == len(self.tasks) else []
        else:
            rows = self.accuracy
        return [row[j] - self.initial_accuracy[j] > margins[j] for j, row in enumerate(rows)]

    def to_json(self) -> dict:
        return {"kind": "continual_metrics", **asdict(self), "AP": self.ap, "BWT": self.bwt, "FWT": self.fwt,
                "base_accuracy": self.initial_accuracy, "learned_margin": self.learned_margin, "learned": self.learned}

    @classmethod
    def from_json(cls, data: dict) -> "ContinualMetrics":
        """Read the matrix back from a run's ``metrics.json`` (AP, BWT, FWT and ``learned`` are recomputed from it)."""
        keys = ("tasks", "accuracy", "loss", "initial_accuracy", "initial_loss", "split", "joint", "eval_examples")
        return cls(**{k: data[k] for k in keys if k in data})

    def table(self) -> str:
        width = max(8, *(len(t) for t in self.tasks))
        lines = [f"{'after':<{width}} " + " ".join(f"{t:>{width}}" for t in self.tasks)]
        if self.initial_accuracy is not None:
            lines.append(f"{'(base)':<{width}} " + " ".join(f"{a:>{width}.3f}" for a in self.initial_accuracy))
        for name, row in zip(self.tasks, self.accuracy):
            lines.append(f"{name:<{width}} " + " ".join(f"{a:>{width}.3f}" for a in row))
        lines.append(f"AP {self.ap:.3f}   BWT {signed(self.bwt)}   FWT {signed(self.fwt)}   ({self.split} split, each task's metric)")
        return "\n".join(lines)
