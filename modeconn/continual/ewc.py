"""Elastic weight consolidation on the LoRA parameters (online form: Fisher diagonals summed over tasks).

The Fisher diagonal is estimated from squared gradients of the training loss on each batch of the finished task
(the common empirical approximation), weighted by batch size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .methods import Batch, Method, TaskContext, option, unwrap


@dataclass
class EWC(Method):
    name: ClassVar[str] = "ewc"
    ewc_lambda: float = option(100.0, "weight λ of the penalty ½λ·Σ F·(θ − θ*)²", low=0)
    fisher: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    anchor: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    @staticmethod
    def _params(model) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in unwrap(model).named_parameters() if p.requires_grad}

    def penalty(self, model) -> torch.Tensor:
        total = torch.zeros((), device=next(model.parameters()).device)
        for name, p in self._params(model).items():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p - self.anchor[name]) ** 2).sum()
        return 0.5 * self.ewc_lambda * total

    def training_step(self, model, batch: Batch):
        loss = model(**batch.inputs).loss
        return loss + self.penalty(model) if self.fisher else loss

    def end_task(self, ctx: TaskContext) -> None:
        params = self._params(ctx.model)
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        was_training = ctx.model.training
        ctx.model.train()
        for start in range(0, len(ctx.train), ctx.batch_size):
            chunk = ctx.train[start : start + ctx.batch_size]
            ctx.model.zero_grad(set_to_none=True)
            ctx.model(**ctx.collate(chunk)).loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2 * len(chunk)
        ctx.model.zero_grad(set_to_none=True)
        ctx.model.train(was_training)
        for n in params:
            self.fisher[n] = self.fisher.get(n, 0) + fisher[n] / len(ctx.train)
            self.anchor[n] = params[n].detach().clone()

    def state(self) -> tuple[dict, dict]:
        tensors = {f"fisher.{n}": f for n, f in self.fisher.items()}
        tensors.update({f"anchor.{n}": a for n, a in self.anchor.items()})
        return tensors, {}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.fisher = {k[7:]: v for k, v in tensors.items() if k.startswith("fisher.")}
        self.anchor = {k[7:]: v for k, v in tensors.items() if k.startswith("anchor.")}
