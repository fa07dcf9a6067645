"""Plain sequential LoRA: one adapter, fine-tuned on each task in turn (the forgetting baseline)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import MethodBase


@dataclass
class Sequential(MethodBase):
    """Every hook is the protocol's default: cross-entropy on the current task's batch, nothing kept between tasks."""

    name: ClassVar[str] = "seq"
