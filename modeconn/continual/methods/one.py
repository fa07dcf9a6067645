"""Per-task models (``one``): a fresh LoRA from the base model for every task, each task scored with its own adapter.
No forgetting and no transfer by construction (BWT = FWT = 0): the reference for both. LLMCL's counterpart is
method/ONE.py. The run trains one adapter throughout (so DDP keeps working); at each task's end its weights move into a
frozen per-task adapter and it starts again from peft's initialisation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..adapter_io import FAST, add_frozen_adapter, paired_weights, reset_adapter, save_peft_adapter
from .base import MethodBase
from .option import run_seed
from .protocol import TaskContext


def task_adapter(index: int) -> str:
    return f"task{index}"


@dataclass
class PerTaskModels(MethodBase):
    name: ClassVar[str] = "one"
    seed: int = run_seed()

    def __post_init__(self):
        super().__post_init__()
        self.index = 0

    def begin_task(self, ctx: TaskContext) -> None:
        for i in range(ctx.tasks):
            add_frozen_adapter(ctx.model, task_adapter(i))
        self.index = ctx.index

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        for kept, trained in zip(*paired_weights(ctx.model, task_adapter(ctx.index), FAST)):
            kept.copy_(trained)
        # before the task-end state is saved, so a resumed run starts the next task fresh
        reset_adapter(ctx.model, FAST, seed=self.seed * 1009 + ctx.index)

    def evaluation_plan(self, trained: int, tasks: int) -> list:
        # a task not yet trained is scored with the fresh adapter (B = 0: the base model)
        return [task_adapter(j) if j < trained else FAST for j in range(tasks)]

    def save(self, model, folder) -> None:
        save_peft_adapter(model, task_adapter(self.index), folder)
