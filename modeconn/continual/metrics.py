"""Continual-learning metrics from one recorded matrix R[i][j]: the score on task j after training task i.

  AP  = mean_j R[T][j]                                   (average performance after the last task)
  BWT = mean_{j<T} (R[T][j] − R[j][j])                    (backward transfer; negative = forgetting)
  FWT = mean_{j>1} (R[j−1][j] − R₀[j])                    (forward transfer; R₀ = the model before any task)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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

    def to_json(self) -> dict:
        return {"kind": "continual_metrics", **asdict(self), "AP": self.ap, "BWT": self.bwt, "FWT": self.fwt}

    @classmethod
    def from_json(cls, data: dict) -> "ContinualMetrics":
        """Read the matrix back from a run's ``metrics.json`` (AP, BWT and FWT are recomputed from it)."""
        keys = ("tasks", "accuracy", "loss", "initial_accuracy", "initial_loss", "split", "joint")
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
