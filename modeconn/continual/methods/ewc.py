"""Elastic weight consolidation (Kirkpatrick et al., 2017) on the LoRA parameters, online form: the Fisher diagonals of
the finished tasks are summed, and the penalty ½λ Σ F·(θ − θ*)² anchors each parameter at its value after the last task.

The Fisher diagonal is the empirical Fisher: the mean over a task's training examples of each example's own squared
loss gradient, F = (1/N) Σ_n (∂ℓ_n/∂θ)², computed with dropout off. (The squared gradient of a batch mean is not it:
that is about the per-example Fisher divided by the batch size.) Each example gets its own backward pass, one at a
time, for up to ``fisher_samples`` of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .base import MethodBase, answer_loss, unwrap
from .option import option
from .protocol import Batch, TaskContext


def per_example_fisher(model, examples, collate) -> dict[str, torch.Tensor]:
    """(1/N) Σ_n (∂ℓ_n/∂θ)² over ``examples`` for every trainable parameter, with dropout off."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()  # dropout off: the Fisher of the model that is anchored, not of a dropped-out one
    try:
        for example in examples:
            model.zero_grad(set_to_none=True)
            answer_loss(model, collate([example])).backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {n: f / max(1, len(examples)) for n, f in fisher.items()}


@dataclass
class EWC(MethodBase):
    name: ClassVar[str] = "ewc"
    ewc_lambda: float = option(100.0, "weight λ of the penalty ½λ·Σ F·(θ − θ*)²", low=0)
    fisher_samples: int = option(256, "training examples per task the Fisher is estimated from (the first ones)", low=1)
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
        loss = answer_loss(model, batch.inputs)
        return loss + self.penalty(model) if self.fisher else loss

    def end_task(self, ctx: TaskContext) -> None:
        model = unwrap(ctx.model)
        fisher = per_example_fisher(model, ctx.train[: self.fisher_samples], ctx.collate)
        params = self._params(model)
        for n in params:
            self.fisher[n] = self.fisher.get(n, 0) + fisher[n]
            self.anchor[n] = params[n].detach().clone()

    def state(self) -> tuple[dict, dict]:
        tensors = {f"fisher.{n}": f for n, f in self.fisher.items()}
        tensors.update({f"anchor.{n}": a for n, a in self.anchor.items()})
        return tensors, {}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.fisher = {k[7:]: v for k, v in tensors.items() if k.startswith("fisher.")}
        self.anchor = {k[7:]: v for k, v in tensors.items() if k.startswith("anchor.")}
