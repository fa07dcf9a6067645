"""The plane through three points in LoRA space: an orthonormal basis (Gram–Schmidt) and grid coordinates.

Everything is computed from the 3×3 Gram matrix of the anchors in the chosen space, so no flat parameter vector is
ever built. A point with plane coordinates (x, y) is ``θ_1 + x·u + y·v`` = an affine combination of the anchors,
which is exactly what the batched evaluator scores.
  factor space: ⟨θ_i, θ_j⟩ = Σ_modules ⟨A_i, A_j⟩ + ⟨B_i, B_j⟩  (scales folded into B)
  delta  space: ⟨θ_i, θ_j⟩ = Σ_modules ⟨B_i A_i, B_j A_j⟩_F = Σ (B_iᵀB_j) ⊙ (A_i A_jᵀ)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks
from ..errors import ConfigError
from .adapters import LoraWeights

# relative size below which a difference vector counts as zero (two identical points, or three collinear ones)
DEGENERATE = 1e-6


def gram(anchors: list[LoraWeights], space: str) -> torch.Tensor:
    """``[n, n]`` float64 inner products of the anchors as points of ``space``."""
    folded = [{m: (a.double(), b.double()) for m, (a, b) in w.folded().items()} for w in anchors]
    n = len(anchors)
    g = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i, n):
            total = 0.0
            for m in anchors[0].modules:
                (ai, bi), (aj, bj) = folded[i][m], folded[j][m]
                if space == "factor":
                    total += float((ai * aj).sum() + (bi * bj).sum())
                else:
                    total += float(((bi.T @ bj) * (ai @ aj.T)).sum())
            g[i, j] = g[j, i] = total
    return g


@dataclass(frozen=True)
class PlaneBasis:
    """Orthonormal directions u, v as coefficient vectors over the three anchors, and the anchors' coordinates."""

    u: torch.Tensor  # [3] float64, sums to 0
    v: torch.Tensor
    coords: torch.Tensor  # [3, 2]: (0, 0), (|θ2 − θ1|, 0), (⟨θ3 − θ1, u⟩, ⟨θ3 − θ1, v⟩)

    def coefficients(self, xy: torch.Tensor) -> torch.Tensor:
        """``[N, 3]`` affine coefficients of the points with plane coordinates ``xy`` ``[N, 2]``."""
        xy = torch.as_tensor(xy, dtype=torch.float64).reshape(-1, 2)
        e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        return e1 + xy[:, :1] * self.u + xy[:, 1:] * self.v


def plane_basis(g: torch.Tensor, names: tuple[str, str, str] = ("first", "second", "third")) -> PlaneBasis:
    """Gram–Schmidt on θ2 − θ1 and θ3 − θ1 under the inner product ``g``; refuses identical or collinear points."""
    dot = lambda x, y: float(x @ g @ y)  # noqa: E731
    scale = max(float(g.diagonal().max()), 1e-300) ** 0.5
    e = torch.eye(3, dtype=torch.float64)
    d2, d3 = e[1] - e[0], e[2] - e[0]
    n2, n3 = max(dot(d2, d2), 0.0) ** 0.5, max(dot(d3, d3), 0.0) ** 0.5
    for norm, (a, b) in ((n2, (0, 1)), (n3, (0, 2))):
        if norm <= DEGENERATE * scale:
            raise ConfigError(f"the {names[a]} and {names[b]} points are identical; a plane needs three distinct points")
    u = d2 / n2
    w = d3 - dot(d3, u) * u
    nw = max(dot(w, w), 0.0) ** 0.5
    if nw <= DEGENERATE * n3:
        raise ConfigError("the three points are collinear; no single plane passes through them")
    v = w / nw
    coords = torch.tensor([[0.0, 0.0], [n2, 0.0], [dot(d3, u), nw]], dtype=torch.float64)
    return PlaneBasis(u, v, coords)


def place(g: torch.Tensor, basis: PlaneBasis, k: int) -> tuple[float, float, float]:
    """Point ``k``'s orthogonal projection onto the plane of points 0–2, as plane coordinates (x, y), and its distance
    from the plane; ``g`` is the Gram matrix of all the points (the plane's three first)."""
    n = g.shape[0]
    d = torch.zeros(n, dtype=torch.float64)
    d[k], d[0] = 1.0, d[0] - 1.0
    u, v = (torch.nn.functional.pad(w, (0, n - 3)) for w in (basis.u, basis.v))
    x, y = float(d @ g @ u), float(d @ g @ v)
    return x, y, max(float(d @ g @ d) - x * x - y * y, 0.0) ** 0.5


def check_grid(grid: int, dimensions: int = 2) -> None:
    checks.count("grid", grid, 2)
    checks.points_fit("grid", grid**dimensions)


def grid_axes(coords: torch.Tensor, grid: int, margin: float) -> tuple[list[float], list[float]]:
    """Evenly spaced x and y covering the points' bounding box, widened by ``margin`` × its size on every side."""
    check_grid(grid)
    checks.finite("margin", margin, 0)
    lo, hi = coords.min(0).values, coords.max(0).values
    pad = (hi - lo) * margin
    axes = [torch.linspace(float(lo[i] - pad[i]), float(hi[i] + pad[i]), grid, dtype=torch.float64).tolist() for i in range(2)]
    return axes[0], axes[1]
