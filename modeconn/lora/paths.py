"""Paths between LoRA points: ``φ(t) = Σ_i c_i(t) · θ_i``, the coefficients c_i(t) given by the path's kind (path_kinds/).

Two spaces. *factor*: A(t) = Σ c_i A_i and B(t) = Σ c_i B_i (ΔW is quadratic in t and depends on how each ΔW
was factorised). *delta*: ΔW(t) = Σ c_i ΔW_i exactly, itself a LoRA of rank Σ r_i: ``[c_1 B_1 | c_2 B_2 | …]·[A_1; A_2; …]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks
from ..errors import ConfigError
from .adapters import LoraWeights, check_compatible
from .path_kinds import path_kind
from .path_kinds.bernstein import bernstein  # noqa: F401  (its home before path kinds had a folder)

SPACES = ("factor", "delta")


@dataclass(frozen=True)
class Span:
    """Anchors θ_i in one space; a point of the span is an affine combination ``Σ c_i θ_i`` (Σ c_i = 1).

    Paths, planes and random-direction landscapes are spans with a rule for their coefficients; the evaluator
    takes a span and a ``[points, anchors]`` coefficient matrix.
    """

    anchors: tuple[LoraWeights, ...]
    space: str = "factor"

    def __post_init__(self):
        if self.space not in SPACES:
            raise ConfigError(f"unknown space '{self.space}'; choose one of {SPACES}")

    @property
    def modules(self) -> list[str]:
        return self.anchors[0].modules

    def combine(self, c: list[float], name: str = "point") -> LoraWeights:
        """``Σ c_i θ_i`` as a LoraWeights (scales folded in; rank Σ r_i in delta space)."""
        folded = [a.folded() for a in self.anchors]
        factors = {}
        for m in self.modules:
            if self.space == "factor":
                a = sum(ci * f[m][0] for ci, f in zip(c, folded))
                b = sum(ci * f[m][1] for ci, f in zip(c, folded))
            else:
                a = torch.cat([f[m][0] for f in folded], dim=0)
                b = torch.cat([ci * f[m][1] for ci, f in zip(c, folded)], dim=1)
            factors[m] = (a, b)
        first = self.anchors[0]
        return LoraWeights(factors, {m: 1.0 for m in factors}, first.base_model, name, config=first.config)


@dataclass(frozen=True)
class LoraPath(Span):
    """A path through LoRA space of a registered kind; the anchors are ``(θ_0, free points…, θ_1)`` in path order."""

    kind: str = "linear"

    def __post_init__(self):
        super().__post_init__()
        found = path_kind(self.kind)
        if len(self.anchors) != found.anchors:
            raise ConfigError(f"a {self.kind} path joins two adapters through {found.free} more, not {len(self.anchors) - 2}")

    def coefficients(self, t) -> torch.Tensor:
        """``[len(t), n_anchors]`` weights of each anchor at each t (they sum to 1)."""
        return path_kind(self.kind).coefficients(t)

    def at(self, t: float) -> LoraWeights:
        """The point φ(t) as a LoraWeights (scales folded in; rank Σ r_i in delta space)."""
        return self.combine(self.coefficients([t])[0].tolist(), f"{self.kind}[{self.space}](t={t:g})")


def linear_path(a: LoraWeights, b: LoraWeights, space: str = "factor", base_given: bool = False) -> LoraPath:
    check_compatible([a, b], space, base_given)
    return LoraPath((a, b), space, "linear")


def bezier_path(a: LoraWeights, control: LoraWeights, b: LoraWeights, space: str = "factor", base_given: bool = False) -> LoraPath:
    """Quadratic Bézier ``(1-t)²θ_a + 2t(1-t)θ_c + t²θ_b``."""
    check_compatible([a, control, b], space, base_given)
    return LoraPath((a, control, b), space, "bezier")


def kind_path(kind: str, a: LoraWeights, free: list[LoraWeights], b: LoraWeights, space: str = "factor",
              base_given: bool = False) -> LoraPath:
    """The ``kind`` path from ``a`` to ``b`` through its free points (control or bend points, in path order)."""
    anchors = [a, *free, b]
    check_compatible(anchors, space, base_given)
    return LoraPath(tuple(anchors), space, kind)


def uniform_ts(points: int) -> list[float]:
    """``points`` evenly spaced t in [0, 1], both endpoints included."""
    points = checks.count("points", points, 2)
    checks.points_fit("points", points)
    return [i / (points - 1) for i in range(points)]

