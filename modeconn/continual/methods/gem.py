"""GEM (Lopez-Paz & Ranzato, 2017, "Gradient Episodic Memory for Continual Learning"): one constraint per finished
task, g̃·g_k ≥ 0 for the gradient g_k of that task's episodic memory; when the current gradient g breaks one, it is
replaced by the closest vector that keeps them all:  min ½‖g̃ − g‖²  s.t.  G g̃ ≥ 0.

Solved in its dual, a QP in k variables (one per past task): v* = argmin_{v≥γ} ½ vᵀ(GGᵀ)v + (Gg)ᵀv, g̃ = g + Gᵀv*,
where γ ≥ 0 is GEM's memory strength ``margin``, a lower bound on the dual variables exactly as the reference code
poses it (facebookresearch/GradientEpisodicMemory, model/gem.py:87-88: ``quadprog.solve_qp(P, q, G, h)`` with
G = I, h = γ), which pushes g̃ further inside the cone of the past tasks' gradients; γ = 0 is the plain projection.
With v = γ + u, u ≥ 0 and GGᵀ = LLᵀ (Cholesky, a tiny ridge for parallel task gradients; the reference adds 1e-3)
the dual is the non-negative least-squares problem min_{u≥0} ‖Lᵀu + L⁻¹(Gg + γ GGᵀ1)‖², which scipy's ``nnls``
(Lawson–Hanson active set) solves exactly: no QP package to add, and the matrix is k × k whatever the model's size."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .gradients import ProjectingMethod, memory_gradient
from .option import option


def gem_project(g: torch.Tensor, G: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """The closest vector to ``g`` with ``G @ result ≥ 0`` (``G``: one past task's gradient per row); with ``margin``
    γ > 0, the reference's dual solution under v ≥ γ instead."""
    from scipy.optimize import nnls
    from scipy.linalg import cho_factor, solve_triangular

    if bool((G @ g >= 0).all()):
        return g
    Gd, gd = G.double().cpu().numpy(), g.double().cpu().numpy()
    Q = Gd @ Gd.T
    Q += np.eye(len(Q)) * 1e-10 * max(np.trace(Q), 1e-30)
    L = cho_factor(Q, lower=True)[0]
    L = np.tril(L)
    p = Gd @ gd + margin * Q.sum(1)  # the linear term in u = v − γ
    u, _ = nnls(L.T, -solve_triangular(L, p, lower=True))
    return g + torch.from_numpy(Gd.T @ (u + margin)).to(g)


@dataclass
class GEM(ProjectingMethod):
    name: ClassVar[str] = "gem"
    gem_margin: float = option(0.0, "GEM's memory strength γ: the dual variables' lower bound, v ≥ γ, as GEM's code "
                                "(0.5 there)", low=0)

    def project(self, model, params, g):
        G = torch.stack([memory_gradient(model, params, task, self.collate, batch_size=self.batch_size)
                         for task in self.memory.tasks if task])
        return gem_project(g, G, self.gem_margin)
