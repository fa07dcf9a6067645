"""Gradient projections against independent references: A-GEM's half-space projection, and GEM's QP against a
brute-force search over the active constraints of a 3-constraint toy."""
import itertools

import pytest
import torch

from modeconn.continual.methods.agem import agem_project
from modeconn.continual.methods.gem import gem_project


def test_agem_projection_removes_only_the_conflicting_component():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        g, g_ref = torch.randn(40, generator=gen, dtype=torch.float64), torch.randn(40, generator=gen, dtype=torch.float64)
        out = agem_project(g, g_ref)
        assert torch.dot(out, g_ref) >= -1e-6
        if torch.dot(g, g_ref) >= 0:
            assert torch.equal(out, g)
        else:  # what is left of g is orthogonal to g_ref, and g moved along g_ref only
            assert torch.dot(out, g_ref).abs() < 1e-9
            residual = out - g
            assert torch.allclose(residual / residual.norm(), -g_ref / g_ref.norm() * torch.sign(torch.dot(residual, -g_ref)),
                                  atol=1e-9)


def brute_force(g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """The closest point to g of {z: Gz ≥ 0}: the best feasible projection onto {G_S z = 0} over every subset S."""
    best = None
    for size in range(len(G) + 1):
        for subset in itertools.combinations(range(len(G)), size):
            if subset:
                Gs = G[list(subset)]
                z = g - Gs.T @ torch.linalg.solve(Gs @ Gs.T, Gs @ g)
            else:
                z = g
            if bool((G @ z >= -1e-9).all()) and (best is None or (z - g).norm() < (best - g).norm()):
                best = z
    return best


@pytest.mark.parametrize("seed", range(20))
def test_gem_projection_satisfies_every_constraint_and_is_the_closest(seed):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64) - 0.8 * G.sum(0)  # mostly against the constraints
    out = gem_project(g, G)
    assert bool((G @ out >= -1e-6).all())
    torch.testing.assert_close(out, brute_force(g, G), rtol=0, atol=1e-6)


def test_gem_leaves_an_agreeing_gradient_alone():
    G = torch.eye(3, 5, dtype=torch.float64)
    g = torch.tensor([1.0, 2.0, 0.5, -3.0, 4.0], dtype=torch.float64)
    assert torch.equal(gem_project(g, G), g)
