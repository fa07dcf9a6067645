"""O-LoRA (Wang et al., 2023, "Orthogonal Subspace Learning for Language Model Continual Learning", EMNLP Findings):
each task learns a new LoRA while the earlier tasks' LoRAs stay frozen and active; the new A is pushed orthogonal to
the earlier A's:

    loss = CE + λ1 · Σ_{i<t} Σ_{j,k} (A_i A_tᵀ)[j,k]²  + λ2 · Σ_{p in the new LoRA} ‖p‖₂

The earlier tasks' LoRAs live side by side in one frozen adapter of rank r·T (the authors' code concatenates them the
same way, ``lora_A = cat(lora_A, loranew_A)``), so the model is base + Σ_i B_i A_i at every point, and each task's
checkpoint is that adapter: a plain peft LoRA (rank r·T, α·T, blocks of unseen tasks zero) the analysis side reads.

Choices where the paper is open: the orthogonality term is the paper's sum of squares (its code sums absolute values:
``--olora-orth abs``); λ1 = 0.5 and λ2 = 0 as the code's defaults (TRACE's O_LoRA.py likewise); the L2 term is the
code's sum of Frobenius norms (not squared)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..adapter_io import FAST, add_frozen_adapter, lora_layers, paired_weights, reset_adapter, save_peft_adapter
from .base import MethodBase, answer_loss, train_only
from .option import option, run_seed
from .protocol import Batch, TaskContext

PAST = "olora_past"


@dataclass
class OLoRA(MethodBase):
    name: ClassVar[str] = "olora"
    olora_lambda1: float = option(0.5, "O-LoRA's λ1: weight of the orthogonality term between the new A and the "
                                       "earlier tasks' A's", low=0)
    olora_lambda2: float = option(0.0, "O-LoRA's λ2: weight of the L2 term on the new LoRA (0 in the authors' code)",
                                  low=0)
    olora_orth: str = option("squared", "squared: Σ (A_i A_tᵀ)² as the paper writes it; abs: Σ |A_i A_tᵀ| as its code",
                             choices=("squared", "abs"))
    seed: int = run_seed()

    def __post_init__(self):
        super().__post_init__()
        self.index, self.rank, self.layers, self.parts = 0, 0, [], {}

    def begin_task(self, ctx: TaskContext) -> None:
        if PAST not in getattr(ctx.model, "module", ctx.model).peft_config:
            add_frozen_adapter(ctx.model, PAST, rank_factor=ctx.tasks)
            with torch.no_grad():  # the past is empty: no task block yet
                for past in paired_weights(ctx.model, PAST, FAST)[0]:
                    past.zero_()
        self.index = ctx.index
        self.layers = lora_layers(ctx.model, FAST, PAST)
        self.rank = self.layers[0].r[FAST]
        self.restore_training(ctx.model)

    def training_step(self, model, batch: Batch):
        ce = answer_loss(model, batch.inputs)
        orth = ce.new_zeros(())
        if self.index:
            rows = self.index * self.rank
            for layer in self.layers:
                overlap = layer.lora_A[PAST].weight[:rows] @ layer.lora_A[FAST].weight.T
                orth = orth + (overlap.square().sum() if self.olora_orth == "squared" else overlap.abs().sum())
        l2 = ce.new_zeros(())
        if self.olora_lambda2:
            l2 = sum(torch.linalg.vector_norm(p) for layer in self.layers
                     for p in (layer.lora_A[FAST].weight, layer.lora_B[FAST].weight))
        self.parts = {"ce_current": ce.item(), "orthogonality": orth.item(), "l2": float(l2)}
        return ce + self.olora_lambda1 * orth + self.olora_lambda2 * l2

    def step_parts(self) -> dict[str, float]:
        return self.parts

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        """The task's LoRA becomes block ``index`` of the frozen adapter; the trained one starts afresh."""
        block = slice(self.index * self.rank, (self.index + 1) * self.rank)
        for layer in self.layers:
            layer.lora_A[PAST].weight[block] = layer.lora_A[FAST].weight
            layer.lora_B[PAST].weight[:, block] = layer.lora_B[FAST].weight
        reset_adapter(ctx.model, FAST, seed=self.seed * 1009 + ctx.index)

    def evaluation_plan(self, trained: int, tasks: int) -> list:
        return [PAST if trained else FAST] * tasks  # after a task's end the new LoRA is part of PAST (and FAST is zero)

    def restore_training(self, model) -> None:
        train_only(model, FAST, active=(PAST,))

    def save(self, model, folder) -> None:
        save_peft_adapter(model, PAST, folder)
