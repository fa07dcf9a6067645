"""Path kinds by name: each module here declares one ``KIND`` (its points' coefficients, and which are free to fit).

A module dropped in this folder is a new kind for ``barrier --path``, ``curve --path``, ``sweep --curve``, the plots
and the report; ``register`` adds one from elsewhere (a notebook, a test).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...errors import ConfigError


@dataclass(frozen=True)
class PathKind:
    """A path φ(t) = Σ_i c_i(t) θ_i over anchors ``(θ_a, free points…, θ_b)``: ``coefficients(t)`` is ``[len(t), free + 2]``.

    ``start`` places each free point on the straight line before fitting (its t there), so a fit starts from the line.
    """

    name: str
    help: str
    coefficients: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, ...] = field(default=())

    @property
    def free(self) -> int:
        """How many points between the two ends are fitted."""
        return len(self.start)

    @property
    def anchors(self) -> int:
        return self.free + 2


_KINDS: dict[str, PathKind] = {}


def register(kind: PathKind) -> PathKind:
    """Make ``kind`` known by its name (a later one of the same name replaces it)."""
    _KINDS[kind.name] = kind
    return kind


def _discover() -> None:
    for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        kind = getattr(importlib.import_module(f"{__name__}.{found.name}"), "KIND", None)
        if kind is not None:  # a helper module (bernstein) declares none
            register(kind)


def names() -> list[str]:
    """Every kind's name, the straight line first, then by number of free points and name."""
    return sorted(_KINDS, key=lambda n: (_KINDS[n].free, n != "bezier", n))


def path_kind(name: str) -> PathKind:
    """The kind called ``name``; a ConfigError naming the known ones otherwise."""
    if name not in _KINDS:
        raise ConfigError(f"unknown path '{name}'; choose one of {', '.join(names())}")
    return _KINDS[name]


def curved() -> list[str]:
    """The kinds with free points (what a curve fit makes)."""
    return [n for n in names() if _KINDS[n].free]


_discover()
