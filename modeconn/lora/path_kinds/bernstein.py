"""Bernstein weights ``C(n,k) t^k (1-t)^(n-k)``, the coefficients of every Bézier kind (and of the straight line)."""
from __future__ import annotations

from math import comb

import torch


def bernstein(t, degree: int) -> torch.Tensor:
    """Coefficients ``C(n,k) t^k (1-t)^(n-k)`` for k = 0..n, shape ``[len(t), n+1]``; degree 1 is linear."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    k = torch.arange(degree + 1, dtype=torch.float64)
    binom = torch.tensor([comb(degree, int(i)) for i in k], dtype=torch.float64)
    return binom * t**k * (1 - t) ** (degree - k)
