"""Compute the un-adapted prefix of the model once for all path points.

When LoRA touches only later layers (say from decoder layer L on), every path point gives the same hidden states
up to layer L. The batch then runs with one copy of each example, and forward pre-hooks on layers L, L+1, …
repeat the batch-major inputs of each layer K times (point-major), so only the adapted part runs K times.

Layers may take batch-derived inputs the hooks cannot see as such, or the model may reshape the layers' output to the
batch it was given (GPT-BigCode does): ``shared_prefix`` first checks, on two short examples, that the hooks give the
numbers the model gives without them, and runs every layer K times where they do not.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from torch import nn

_LAYER = re.compile(r"^(.*?)\.(\d+)\.")


def first_adapted_layer(model: nn.Module, modules: list[str]) -> tuple[nn.ModuleList, int] | None:
    """The decoder-layer list and the index of the first layer any adapted module sits in (None if not one list)."""
    found = {(m.group(1), int(m.group(2))) for m in map(_LAYER.match, modules) if m}
    containers = {name for name, _ in found}
    if len(found) == 0 or len(containers) != 1 or len([m for m in modules if _LAYER.match(m)]) != len(modules):
        return None
    try:
        layers = model.get_submodule(containers.pop())
    except AttributeError:
        return None
    if not isinstance(layers, nn.ModuleList):
        return None
    return layers, min(index for _, index in found)


class Repeat:
    """Repeats the ``rows`` of the current batch ``k`` times (point-major) from the first adapted layer on, inside
    ``with repeat.expanded(k, rows):``; outside it the hooks pass everything through."""

    def __init__(self):
        self.k, self.rows = 1, 0

    @contextmanager
    def expanded(self, k: int, rows: int):
        self.k, self.rows = k, rows
        try:
            yield
        finally:
            self.k, self.rows = 1, 0

    def _expand(self, value):
        # batch-outer multiples too: Bloom's ALiBi is [rows · heads, 1, length]
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] % self.rows == 0:
            return value.repeat(self.k, *([1] * (value.dim() - 1)))
        if isinstance(value, tuple):
            return tuple(self._expand(v) for v in value)
        return value

    def hook(self, module, args, kwargs):
        if self.k == 1:
            return None
        return tuple(self._expand(a) for a in args), {key: self._expand(v) for key, v in kwargs.items()}


def _agrees(probe, repeat: Repeat) -> bool:
    try:
        shared = probe(repeat)
    except (RuntimeError, ValueError, IndexError, TypeError):
        return False
    return torch.allclose(shared, probe(None), rtol=1e-3, atol=1e-4)


@contextmanager
def shared_prefix(model: nn.Module, modules: list[str], probe=None):
    """Yields a Repeat (or None when the first adapted layer is the first layer: nothing to share, or when ``probe``, a
    function of a Repeat (None: no sharing) returning numbers, gives other numbers or fails with the hooks)."""
    found = first_adapted_layer(model, modules)
    if found is None or found[1] == 0:
        yield None
        return
    layers, start = found
    repeat = Repeat()
    handles = [layer.register_forward_pre_hook(repeat.hook, with_kwargs=True) for layer in list(layers)[start:]]
    try:
        yield repeat if probe is None or _agrees(probe, repeat) else None
    finally:
        for handle in handles:
            handle.remove()
