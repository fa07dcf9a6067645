"""Polygonal chain A → bend → B (dnn-mode-connectivity's ``PolyChain``): t ∈ [0, ½] walks the first segment, [½, 1] the second."""
import torch

from . import PathKind


def polychain(t) -> torch.Tensor:
    """Weights of (θ_a, θ_bend, θ_b), ``max(0, 1 − |2t − k|)`` for k = 0, 1, 2 as dnn-mode-connectivity writes them."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    return torch.clamp(1 - (2 * t - torch.arange(3, dtype=torch.float64)).abs(), min=0)


KIND = PathKind("polychain", "polygonal chain A → C → B (one bend point C, reached at t = 0.5)", polychain, (0.5,))
