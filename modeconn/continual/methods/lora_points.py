"""A PeftModel's trained adapter as a point in LoRA space (``LoraWeights``) and back: how the methods that move along
paths (seq-path, mc-sgd) and the merges read the adapter they trained and write the point they chose."""
from __future__ import annotations

import torch

from ...lora.adapters import LoraWeights
from ..adapter_io import FAST, lora_layers
from .base import unwrap

PREFIX = "base_model.model."
# keys name the frozen linear inside each peft LoRA layer: the path evaluator swaps that for a path layer, and with
# peft's adapters disabled the LoRA layer's forward is exactly its base layer's
BASE = ".base_layer"


def adapter_weights(model, adapter: str = FAST) -> LoraWeights:
    """One adapter of a PeftModel as LoraWeights (copies), keyed by the base model's names of its frozen linears."""
    peft = unwrap(model)
    layers = lora_layers(peft, adapter)
    factors, scaling = {}, {}
    for name, module in peft.named_modules():
        if any(module is layer for layer in layers) and name.startswith(PREFIX):
            key = name[len(PREFIX):] + BASE
            factors[key] = (module.lora_A[adapter].weight.detach().float().clone(),
                            module.lora_B[adapter].weight.detach().float().clone())
            scaling[key] = float(module.scaling[adapter])
    return LoraWeights(factors, scaling, source=adapter)


@torch.no_grad()
def set_adapter_weights(model, point: LoraWeights, adapter: str = FAST) -> None:
    """Write ``point`` (any scales) into ``adapter``, whose own scale stays: B is rescaled to give the same ΔW."""
    peft = unwrap(model)
    for name, module in peft.named_modules():
        key = name[len(PREFIX):] + BASE
        if name.startswith(PREFIX) and key in point.factors:
            a, b = point.factors[key]
            module.lora_A[adapter].weight.copy_(a)
            module.lora_B[adapter].weight.copy_(b * (point.scaling[key] / module.scaling[adapter]))
