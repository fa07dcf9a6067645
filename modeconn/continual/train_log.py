"""A run's ``train_log.jsonl`` read back: one record per optimizer step (step, task, loss and the method's loss parts,
learning rate, gradient norm, tokens/s, seconds), for ``modeconn plot`` and notebooks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..checks import load_json_text
from ..errors import DataError

NUMBERS = ("loss", "ce_current", "ce_replay", "consistency", "lr", "grad_norm", "tokens_per_second", "seconds")


@dataclass
class TrainLog:
    kind: ClassVar[str] = "train_log"  # read from its JSON-lines file, not a JSON round trip

    steps: list[dict] = field(default_factory=list)
    source: str = ""

    @classmethod
    def read(cls, path: str | Path) -> "TrainLog":
        """Every complete line of the log (a line cut by a kill is the last one, and is left out)."""
        path = Path(path)
        steps = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                record = load_json_text(line)
            except ValueError:  # a cut line (or one nested too deeply to read)
                break
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) or "task" not in record:
                raise DataError(f"{path}: line {number} is not a training-log record (step, task, loss, …)")
            steps.append(record)
        if not steps:
            raise DataError(f"{path}: no training steps logged")
        return cls(steps, str(path))

    @property
    def tasks(self) -> list[str]:
        """The tasks in the order they were trained."""
        return list(dict.fromkeys(record["task"] for record in self.steps))

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """The steps that logged ``name`` and its values there."""
        pairs = [(r["step"], r[name]) for r in self.steps if isinstance(r.get(name), (int, float))]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def boundaries(self) -> list[tuple[int, str]]:
        """``(first step, task)`` of each task."""
        first: dict[str, int] = {}
        for record in self.steps:
            first.setdefault(record["task"], record["step"])
        return [(step, task) for task, step in first.items()]
