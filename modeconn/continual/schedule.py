"""The learning rate at a step: a linear warm-up, then constant, linear or cosine decay to 0 (the shapes of
transformers' ``get_{constant,linear,cosine}_schedule_with_warmup``).

Written as a plain function of the step, not a scheduler object, because the loop makes a fresh optimizer per task:
with ``schedule_scope="stream"`` one schedule runs across those optimizers, and a resumed run recomputes its rate from
the step counters alone."""
from __future__ import annotations

import math


def lr_factor(kind: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of a schedule of ``total`` steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never 0, so the first step moves
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def schedule_position(scope: str, steps_per_task: list[int], task: int, step_in_task: int) -> tuple[int, int]:
    """``(step, total)`` of the schedule: within the task, or within the whole stream."""
    if scope == "task":
        return step_in_task, steps_per_task[task]
    return sum(steps_per_task[:task]) + step_in_task, sum(steps_per_task)
