"""A-GEM (Chaudhry et al., 2019, "Efficient Lifelong Learning with A-GEM"): keep a small episodic memory of the
finished tasks; before each update compute a reference gradient g_ref on a batch drawn from it, and when the current
gradient g conflicts with it (g·g_ref < 0) project g onto the half-space of g_ref:  g ← g − (g·g_ref / g_ref·g_ref) g_ref.
On the LoRA parameters only. LLMCL's counterpart is method/AGEM.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .gradients import ProjectingMethod, memory_gradient


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """g, or its projection onto {x: x·g_ref ≥ 0} when it points against g_ref."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - dot / torch.dot(g_ref, g_ref).clamp_min(torch.finfo(g.dtype).tiny) * g_ref


@dataclass
class AGEM(ProjectingMethod):
    name: ClassVar[str] = "agem"

    def project(self, model, params, g):
        g_ref = memory_gradient(model, params, self.memory.sample(self.batch_size), self.collate,
                                batch_size=self.batch_size)
        return agem_project(g, g_ref)
