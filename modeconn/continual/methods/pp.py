"""Progressive Prompts (Razdaibiedina et al., 2023, ICLR, "Progressive Prompts: Continual Learning for Language
Models"): one new soft prompt per task, trained with the base model frozen; the prompts of finished tasks are frozen
and stay prepended, newest first: [P_t; …; P_1; input]. Each prompt is reparameterised by a residual MLP while its task
trains (P + MLP(P)), as in the paper and LLMCL's method/PP.py; at the task's end the result is frozen.

Choices where the paper is open or LLMCL differs: 20 virtual tokens per task and a 128-wide MLP bottleneck (LLMCL's
settings); prompts start from random vocabulary embeddings (LLMCL also divides them by 100); ``--pp-eval own`` scores
task j with the prompts of tasks 1…j, the paper's protocol with the task known at test (earlier tasks then cannot be
forgotten: BWT = 0 exactly), ``all`` with every prompt learned so far, as LLMCL evaluates (no task identity). No LoRA is
trained; the runs's checkpoints are prompts, which the analysis commands refuse. One process only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..adapter_io import FAST
from .base import MethodBase, answer_loss, unwrap
from .option import option
from .protocol import Batch, Scorer, TaskContext
from .prompts import embedding_rows, install, prepend, save_prompts


class ProgressiveTable(nn.Module):
    """Rows of every task's prompt: finished ones frozen (``done``), the current one ``prompt + mlp(prompt)``."""

    def __init__(self, tasks: int, length: int, init: torch.Tensor, bottleneck: int = 128):
        super().__init__()
        hidden = init.shape[1]
        self.length, self.current = length, 0
        self.done = nn.Parameter(init.new_zeros(tasks * length, hidden), requires_grad=False)
        self.prompt = nn.Parameter(init)
        self.mlp = nn.Sequential(nn.Linear(hidden, bottleneck), nn.ReLU(), nn.Linear(bottleneck, hidden)).to(init.device)

    def reparameterised(self) -> torch.Tensor:
        return self.prompt + self.mlp(self.prompt)

    def forward(self) -> torch.Tensor:
        if self.current is None:
            return self.done
        rows = slice(self.current * self.length, (self.current + 1) * self.length)
        return torch.cat([self.done[: rows.start], self.reparameterised(), self.done[rows.stop :]])


@dataclass
class ProgressivePrompts(MethodBase):
    name: ClassVar[str] = "pp"
    distributed: ClassVar[bool] = False
    checkpoint_kind: ClassVar[str] = "prompt"
    pp_length: int = option(20, "virtual tokens per task's prompt (LLMCL's PP: 20)", low=1)
    pp_eval: str = option("own", "own: task j scored with the prompts of tasks 1..j (the paper: task known at test); "
                                 "all: with every prompt learned so far (LLMCL's evaluation)", choices=("own", "all"))

    def __post_init__(self):
        super().__post_init__()
        self.table, self.vocab, self.max_length, self.index, self.collate = None, 0, 0, 0, None

    def setup(self, model, tasks: int, max_length: int) -> None:
        embedding = model.get_base_model().get_input_embeddings()
        self.vocab, self.max_length = embedding.num_embeddings, max_length
        self.table = ProgressiveTable(tasks, self.pp_length, embedding_rows(embedding, self.pp_length))
        install(model, self.table)

    def stack(self, upto: int) -> list[int]:
        """Virtual ids of the prompts of tasks ``upto``−1 … 0, newest first."""
        m = self.pp_length
        return [self.vocab + t * m + i for t in reversed(range(upto)) for i in range(m)]

    def begin_task(self, ctx: TaskContext) -> None:
        self.index, self.collate, self.table.current = ctx.index, ctx.collate, ctx.index
        self.restore_training(ctx.model)

    def training_step(self, model, batch: Batch):
        return answer_loss(model, self.collate(prepend(batch.examples, self.stack(self.index + 1), self.max_length)))

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        """Freeze this task's prompt; start the next one afresh (before the task-end state is saved)."""
        table, m = self.table, self.pp_length
        table.done[self.index * m : (self.index + 1) * m] = table.reparameterised()
        table.current = None
        embedding = unwrap(ctx.model).get_base_model().get_input_embeddings().base
        table.prompt.copy_(embedding_rows(embedding, m))
        for layer in table.mlp:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def evaluation_plan(self, trained: int, tasks: int) -> list:
        if not trained:
            return [FAST] * tasks  # no prompt yet: the base model
        return [min(j + 1, trained) for j in range(tasks)] if self.pp_eval == "own" else [trained] * tasks

    def evaluation_scorer(self, model, key) -> Scorer:
        model.set_adapter(FAST)  # frozen, B = 0: the base model
        if key == FAST:
            return Scorer(model)
        return Scorer(model, lambda encoded: prepend(encoded, self.stack(key), self.max_length))

    def restore_training(self, model) -> None:
        for name, p in unwrap(model).named_parameters():
            p.requires_grad_(".modeconn_table.prompt" in name or ".modeconn_table.mlp." in name)

    def save(self, model, folder) -> None:
        m = self.pp_length
        save_prompts(folder, {"prompts": self.table.done[: (self.index + 1) * m]},
                     {"method": self.name, "prompt_length": m, "tasks": self.index + 1, "order": "task 1 first; "
                      "prepended newest first"})
