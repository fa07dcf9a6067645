"""GEM (Lopez-Paz & Ranzato, 2017, "Gradient Episodic Memory for Continual Learning"): one constraint per finished
task, g̃·g_k ≥ 0 for the gradient g_k of that task's episodic memory; when the current gradient g breaks one, it is
replaced by the closest vector that keeps them all:  min ½‖g̃ − g‖²  s.t.  G g̃ ≥ 0.

Solved in its dual, a QP in k variables (one per past task): v* = argmin_{v≥0} ½ vᵀ(GGᵀ)v + (Gg)ᵀv, g̃ = g + Gᵀv*.
With GGᵀ = LLᵀ (Cholesky, a tiny ridge for parallel task gradients) the dual is the non-negative least-squares problem
min_{v≥0} ‖Lᵀv + L⁻¹Gg‖², which scipy's ``nnls`` (Lawson–Hanson active set) solves exactly: no QP package to add, and
the matrix is k × k whatever the model's size. (GEM's own code used ``quadprog`` on the same dual.) ``margin`` is
GEM's memory strength γ: as in its reference implementation, γ is added to the dual solution v*, which pushes g̃ further
inside the cone of the past tasks' gradients."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .gradients import ProjectingMethod, memory_gradient
from .methods import option


def gem_project(g: torch.Tensor, G: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """The closest vector to ``g`` with ``G @ result ≥ 0`` (``G``: one past task's gradient per row)."""
    from scipy.optimize import nnls
    from scipy.linalg import cho_factor, solve_triangular

    if bool((G @ g >= 0).all()):
        return g
    Gd, gd = G.double().cpu().numpy(), g.double().cpu().numpy()
    Q = Gd @ Gd.T
    Q += np.eye(len(Q)) * 1e-10 * max(np.trace(Q), 1e-30)
    L = cho_factor(Q, lower=True)[0]
    L = np.tril(L)
    p = Gd @ gd
    v, _ = nnls(L.T, -solve_triangular(L, p, lower=True))
    v = v + margin
    return g + torch.from_numpy(Gd.T @ v).to(g)


@dataclass
class GEM(ProjectingMethod):
    name: ClassVar[str] = "gem"
    margin: float = option(0.0, "GEM's memory strength γ, added to the dual solution (0.5 in GEM's code)", flag="gem-margin", low=0)

    def project(self, model, params, g):
        G = torch.stack([memory_gradient(model, params, task, self.collate, self.batch_size) for task in self.memory.tasks])
        return gem_project(g, G, self.margin)
