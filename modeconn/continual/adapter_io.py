"""The named adapters of a PeftModel as the methods use them: add a frozen one, pair two adapters' weights, reset or
copy one, and write one as a plain peft adapter folder (what the analysis side loads)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from ..files import atomic_folder

FAST = "default"  # peft's name for the adapter every method trains


def add_frozen_adapter(model, name: str, rank_factor: int = 1) -> None:
    """Add adapter ``name`` shaped like FAST (rank × ``rank_factor``, the same scaling α/r), frozen, FAST still active.
    It starts as peft initialises a LoRA (B = 0: no change to the model)."""
    model = getattr(model, "module", model)
    if name in model.peft_config:
        return
    config = model.peft_config[FAST]
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    model.add_adapter(name, replace(config, r=config.r * rank_factor, lora_alpha=config.lora_alpha * rank_factor,
                                    init_lora_weights=True))
    for param_name, param in model.named_parameters():  # peft may change trainability while adding: put it back
        param.requires_grad_(before.get(param_name, False))


def lora_layers(model, *adapters: str) -> list:
    """The LoRA layers of ``model`` that hold every one of ``adapters``."""
    model = getattr(model, "module", model)
    return [m for m in model.modules()
            if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict) and all(a in m.lora_A for a in adapters)]


def paired_weights(model, first: str, second: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The A and B weights of two adapters, in the same order: ``(first's, second's)``."""
    ones, twos = [], []
    for layer in lora_layers(model, first, second):
        for part in (layer.lora_A, layer.lora_B):
            ones.append(part[first].weight)
            twos.append(part[second].weight)
    return ones, twos


@torch.no_grad()
def reset_adapter(model, name: str, seed: int) -> None:
    """Re-initialise adapter ``name`` in place as peft does (A Kaiming-uniform, B = 0) from ``seed``: every process
    of a DDP run draws the same weights (their own RNGs differ, for dropout), and a resumed run the same as before."""
    layers = lora_layers(model, name)
    device = layers[0].lora_A[name].weight.device if layers else torch.device("cpu")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for layer in layers:
            layer.reset_lora_parameters(name, True)


def save_peft_adapter(model, adapter: str, folder: Path) -> None:
    """Save one named adapter of a PeftModel with peft's own ``save_pretrained``, as a plain adapter folder."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp / "saved", selected_adapters=[adapter], save_embedding_layers=False)
        saved = tmp / "saved" if adapter == FAST else tmp / "saved" / adapter
        config_path = saved / "adapter_config.json"
        config = json.loads(config_path.read_text())
        if isinstance(config.get("target_modules"), list):  # peft writes a set: its order changes from run to run
            config["target_modules"] = sorted(config["target_modules"])
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for item in saved.iterdir():
            if item.is_file():
                item.rename(tmp / item.name)
        shutil.rmtree(tmp / "saved")  # peft's own folder (and its per-adapter subfolder), now empty
