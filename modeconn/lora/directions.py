"""Filter-normalised random directions around one LoRA minimum (Li et al., 2018), per LoRA factor.

Each direction has the shape of the adapter's (folded) factors; every row of each factor — a rank component of A,
an output neuron of B — is rescaled to the norm of the same row of the weights. Rows that are zero stay zero.
The landscape point ``θ + α·δ + β·η`` is the affine combination ``(1−α−β)·θ + α·(θ+δ) + β·(θ+η)`` of three
anchors, so the batched evaluator scores it without building any weights per point.
"""
from __future__ import annotations

import torch

from .adapters import LoraWeights
from .paths import Span


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rescale each row of ``direction`` to the norm of the same row of ``weight``."""
    norms = direction.norm(dim=1, keepdim=True)
    return direction / norms.clamp_min(torch.finfo(direction.dtype).tiny) * weight.norm(dim=1, keepdim=True)


def random_direction(weights: LoraWeights, generator: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A Gaussian direction per module (for A and B), filter-normalised against the folded factors."""
    out = {}
    for m, (a, b) in weights.folded().items():
        da = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        db = torch.randn(b.shape, generator=generator, dtype=b.dtype)
        out[m] = (filter_normalize(da, a), filter_normalize(db, b))
    return out


def shifted(weights: LoraWeights, direction: dict[str, tuple[torch.Tensor, torch.Tensor]], name: str) -> LoraWeights:
    folded = weights.folded()
    factors = {m: (a + direction[m][0], b + direction[m][1]) for m, (a, b) in folded.items()}
    return LoraWeights(factors, {m: 1.0 for m in factors}, weights.base_model, name, config=weights.config)


def random_span(weights: LoraWeights, dimensions: int, seed: int) -> Span:
    """Anchors ``(θ, θ+δ[, θ+η])`` in factor space with independent filter-normalised directions."""
    generator = torch.Generator().manual_seed(seed)
    anchors = [weights] + [shifted(weights, random_direction(weights, generator), f"{weights.source}+direction{i + 1}")
                           for i in range(dimensions)]
    return Span(tuple(anchors), "factor")


def landscape_coefficients(x: list[float], y: list[float] | None) -> torch.Tensor:
    """``[N, 2 or 3]`` coefficients of the grid points (y-major), ``(1−α−β, α, β)``."""
    alpha = torch.tensor(x, dtype=torch.float64)
    if y is None:
        return torch.stack([1 - alpha, alpha], 1)
    beta = torch.tensor(y, dtype=torch.float64)
    bb, aa = torch.meshgrid(beta, alpha, indexing="ij")
    aa, bb = aa.flatten(), bb.flatten()
    return torch.stack([1 - aa - bb, aa, bb], 1)
