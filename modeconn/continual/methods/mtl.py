"""Multi-task training, the upper reference (not a continual method), in two forms.

``mtl``: one joint run over all tasks at once, with the same epochs per task as the continual methods: nothing is
trained until the last task, which trains on the union of every task's examples. Only its final row means something,
so its BWT and FWT are not reported (``joint``). LLMCL's MTL (method/MTL.py) likewise trains once on the concatenation.

``mtl-cumulative``: at each task, the union of the tasks seen so far (earlier tasks get more epochs than later ones);
the form this project's benchmark used before, kept under its own name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import MethodBase


@dataclass
class MultiTask(MethodBase):
    name: ClassVar[str] = "mtl"
    joint: ClassVar[bool] = True

    def train_set(self, seen: list[list], tasks: int) -> list:
        return [example for task in seen for example in task] if len(seen) == tasks else []

    @property
    def memory_examples(self) -> None:
        return None  # every task's data: the upper reference, outside the memory budget


@dataclass
class CumulativeMultiTask(MethodBase):
    name: ClassVar[str] = "mtl-cumulative"

    def train_set(self, seen: list[list], tasks: int) -> list:
        return [example for task in seen for example in task]

    @property
    def memory_examples(self) -> None:
        return None  # every past task's data: outside the memory budget
