"""Continual methods as small strategies over the shared loop: ``begin_task``, ``training_step``, ``end_task``."""
from __future__ import annotations

from typing import Protocol

import torch

from ..errors import ConfigError


class Method(Protocol):
    name: str

    def begin_task(self, model, task: str, index: int) -> None: ...

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the loss to minimise for one batch of the current task."""
        ...

    def end_task(self, model, task: str, index: int) -> None: ...


class Sequential:
    """Plain sequential LoRA: one adapter, fine-tuned on each task in turn (the forgetting baseline)."""

    name = "seq"

    def begin_task(self, model, task: str, index: int) -> None:
        pass

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def end_task(self, model, task: str, index: int) -> None:
        pass


METHODS: dict[str, type] = {"seq": Sequential}


def get_method(name: str, **options) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; choose one of {sorted(METHODS)}")
    return METHODS[name](**options)
