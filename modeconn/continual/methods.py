"""The protocol every continual method follows, the context the loop hands it, and the plain sequential baseline.

A method is one small class with visible hooks: ``begin_task``, ``training_step`` (returns the loss),
``after_step`` (after the optimizer step) and ``end_task``; ``registry.py`` lists them by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..data import Encoded


@dataclass
class Batch:
    examples: list[Encoded]
    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, labels, on the model's device


@dataclass
class TaskContext:
    model: torch.nn.Module
    task: str
    index: int
    train: list[Encoded]
    collate: Callable[[list[Encoded]], dict[str, torch.Tensor]]  # examples -> tensors on the device
    batch_size: int


class Method(Protocol):
    name: str

    def begin_task(self, ctx: TaskContext) -> None: ...

    def training_step(self, model, batch: Batch) -> torch.Tensor:
        """The loss to minimise for one batch of the current task."""
        ...

    def after_step(self, model) -> None: ...

    def end_task(self, ctx: TaskContext) -> None: ...

    def state(self) -> tuple[dict, dict]:
        """``(tensors, JSON-ready values)`` needed to resume mid-run."""
        ...

    def load_state(self, tensors: dict, meta: dict) -> None: ...


class Sequential:
    """Plain sequential LoRA: one adapter, fine-tuned on each task in turn (the forgetting baseline)."""

    name = "seq"

    def begin_task(self, ctx: TaskContext) -> None:
        pass

    def training_step(self, model, batch: Batch) -> torch.Tensor:
        return model(**batch.inputs).loss

    def after_step(self, model) -> None:
        pass

    def end_task(self, ctx: TaskContext) -> None:
        pass

    def state(self) -> tuple[dict, dict]:
        return {}, {}

    def load_state(self, tensors: dict, meta: dict) -> None:
        pass


def train_only(model, adapter: str = "default") -> None:
    """Activate ``adapter`` of a PeftModel and make its LoRA weights the only trainable ones.

    peft's ``set_adapter`` re-enables gradients of whichever adapter it activates, so every switch ends here.
    """
    model.set_adapter(adapter)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name and f".{adapter}." in name)


def unwrap(model):
    """The PeftModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def mean_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row summed NLL of the labelled next tokens and their count (labels -100 are ignored).

    Only the labelled positions are gathered and upcast: prompts and padding make up most of a row.
    """
    shift_labels = labels[:, 1:]
    keep = shift_labels != -100
    rows = keep.nonzero()[:, 0]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), shift_labels[keep], reduction="none")
    return torch.zeros(len(labels), dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll), keep.sum(1)
