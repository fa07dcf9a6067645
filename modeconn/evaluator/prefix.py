"""Compute the un-adapted prefix of the model once for all path points.

When LoRA touches only later layers (say from decoder layer L on), every path point gives the same hidden states
up to layer L. The batch then runs with one copy of each example, and forward pre-hooks on layers L, L+1, …
repeat the batch-major inputs of each layer K times (point-major), so only the adapted part runs K times.
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
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == self.rows:
            return value.repeat(self.k, *([1] * (value.dim() - 1)))
        if isinstance(value, tuple):
            return tuple(self._expand(v) for v in value)
        return value

    def hook(self, module, args, kwargs):
        if self.k == 1:
            return None
        return tuple(self._expand(a) for a in args), {key: self._expand(v) for key, v in kwargs.items()}


@contextmanager
def shared_prefix(model: nn.Module, modules: list[str]):
    """Yields a Repeat (or None when the first adapted layer is the first layer: nothing to share)."""
    found = first_adapted_layer(model, modules)
    if found is None or found[1] == 0:
        yield None
        return
    layers, start = found
    repeat = Repeat()
    handles = [layer.register_forward_pre_hook(repeat.hook, with_kwargs=True) for layer in list(layers)[start:]]
    try:
        yield repeat
    finally:
        for handle in handles:
            handle.remove()
