"""The resumable state of a training run: tensors in safetensors, everything else in JSON (nothing is pickled).

Written to ``<out>/.state/`` every few steps and when a run stops early; removed when the run completes.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import StateError
from .methods.base import trained_weight

STATE_DIR = ".state"


@dataclass
class RunState:
    fingerprint: dict  # what must match for --resume: base, tasks, method + options, config, processes
    task_index: int = 0
    epoch: int = 0
    position: int = 0  # next window start within the epoch's order
    order: list[int] | None = None  # the current epoch's example order
    global_step: int = 0  # optimizer steps of the whole stream
    task_step: int = 0  # optimizer steps of the current task
    metrics: dict = field(default_factory=dict)
    method_meta: list = field(default_factory=list)  # each process's method state (its replay buffer), in rank order
    scaler: dict = field(default_factory=dict)  # the fp16 loss scaler's state


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, values in state["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value.contiguous()
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(out: Path, run: RunState, model, optimizer, *, generator: torch.Generator, method_tensors: dict,
               rng_states: list[torch.Tensor]) -> None:
    """Write the whole state into a new folder, then swap it in, so a kill never leaves half a state.
    ``rng_states``: each process's torch RNG state (dropout), in rank order."""
    from safetensors.torch import save_file

    from ..files import atomic_folder

    tensors = {f"lora.{n}": p.detach().contiguous() for n, p in model.named_parameters() if trained_weight(n)}
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors.update({f"method.{k}": v.contiguous() for k, v in method_tensors.items()})
    tensors["rng.generator"] = generator.get_state()
    tensors.update({f"rng.torch.{rank}": state for rank, state in enumerate(rng_states)})
    with atomic_folder(out / STATE_DIR) as tmp:
        save_file(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps({**run.__dict__, "optimizer": opt_meta}))


def read_state(out: Path) -> tuple[RunState, dict, dict[str, torch.Tensor]] | None:
    """The saved state, or None when there is none; a truncated or edited one is refused with one clear line, and so
    is a folder whose log has steps but no state (killed before its first state was in place, or ``.state`` deleted):
    resuming there would start over into the same log."""
    folder = out / STATE_DIR
    if not folder.exists():
        log = out / "train_log.jsonl"
        if log.is_file() and not log.is_symlink() and log.read_text(errors="replace").strip():
            raise StateError(f"{out} has logged training steps but no saved state to resume from (stopped before its "
                             "first state was saved, or its .state was deleted); run without --resume to start over "
                             "(the log starts again), or choose another output folder")
        return None
    from safetensors.torch import load_file

    from .old_names import new_fingerprint

    try:
        raw = json.loads((folder / "state.json").read_text())
        opt_meta = raw.pop("optimizer")
        state = RunState(**raw)
        tensors = load_file(folder / "state.safetensors")
        if not isinstance(state.fingerprint, dict) or "rng.generator" not in tensors or "rng.torch.0" not in tensors:
            raise ValueError("entries are missing")
        state.fingerprint = new_fingerprint(state.fingerprint)  # a state saved before options were renamed
    except Exception as exc:  # json, safetensors and the dataclass raise many types for a damaged state
        raise StateError(f"the saved state in {folder} is damaged ({type(exc).__name__}: {str(exc)[:120]}); "
                         f"delete {folder} and run without --resume to start over, or choose another output folder") from None
    return state, opt_meta, tensors


def restore(model, optimizer, generator: torch.Generator, opt_meta: dict, *, tensors: dict[str, torch.Tensor],
            rank: int = 0) -> dict:
    """Load LoRA weights, optimizer and RNG states (``rank``'s own torch RNG); return the method's own tensors."""
    params = dict(model.named_parameters())
    try:
        with torch.no_grad():
            for key, value in tensors.items():
                if key.startswith("lora."):
                    params[key[5:]].copy_(value)
        if optimizer is not None:  # at a task boundary the next task starts a fresh optimizer
            _load_optimizer(optimizer, tensors, opt_meta)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise StateError(f"the saved state does not fit this run's model ({type(exc).__name__}: {str(exc)[:120]}); "
                         "delete its .state folder and run without --resume to start over") from None
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors[f"rng.torch.{rank}"])
    return {k[7:]: v for k, v in tensors.items() if k.startswith("method.")}


def clear_state(out: Path) -> None:
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
