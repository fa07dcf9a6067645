"""Paths: endpoints exact, ΔW-space points equal the directly interpolated merged weights, factor space is bilinear."""
import pytest
import torch

from modeconn.lora.adapters import LoraWeights
from modeconn.errors import CompatibilityError, ConfigError
from modeconn.lora.paths import LoraPath, bernstein, bezier_path, linear_path, uniform_ts


def random_lora(seed: int, rank: int = 3, scale: float = 2.0, modules=("layer.0.q", "layer.1.v")) -> LoraWeights:
    g = torch.Generator().manual_seed(seed)
    factors = {m: (torch.randn(rank, 7, generator=g), torch.randn(5, rank, generator=g)) for m in modules}
    return LoraWeights(factors, {m: scale for m in modules}, "base")


def test_bernstein_matches_hand_values_and_sums_to_one():
    c = bernstein(torch.tensor([0.0, 0.25, 1.0]), 2)
    expected = torch.tensor([[1, 0, 0], [0.5625, 0.375, 0.0625], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(c, expected)
    assert torch.allclose(bernstein(torch.linspace(0, 1, 9), 3).sum(1), torch.ones(9, dtype=torch.float64))


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_endpoints_reproduce_the_adapters_exactly(space):
    a, b = random_lora(0), random_lora(1)
    path = linear_path(a, b, space)
    for t, ref in ((0.0, a), (1.0, b)):
        point = path.at(t)
        for m in a.modules:
            assert (point.delta(m) - ref.delta(m)).abs().max() < 1e-5


def test_delta_space_point_is_the_interpolated_merged_weight_in_float64():
    a, b = random_lora(0, rank=2, scale=0.5), random_lora(1, rank=4, scale=3.0)  # different ranks are fine in ΔW space
    path = linear_path(a, b, "delta")
    for t in (0.1, 0.37, 0.8):
        point = path.at(t)
        for m in a.modules:
            (a1, b1), (a2, b2) = (x.double() for x in a.factors[m]), (x.double() for x in b.factors[m])
            direct = (1 - t) * 0.5 * (b1 @ a1) + t * 3.0 * (b2 @ a2)
            assert point.rank(m) == 6
            assert (point.delta(m).double() - direct).abs().max() < 1e-5


def test_factor_space_interpolates_factors_so_delta_is_quadratic_in_t():
    a, b = random_lora(0), random_lora(1)
    mid = linear_path(a, b, "factor").at(0.5)
    m = a.modules[0]
    (a1, b1), (a2, b2) = a.factors[m], b.factors[m]
    expected = 2.0 * ((b1 + b2) / 2) @ ((a1 + a2) / 2)
    assert torch.allclose(mid.delta(m), expected, atol=1e-5)
    assert not torch.allclose(mid.delta(m), (a.delta(m) + b.delta(m)) / 2, atol=1e-3)


def test_factor_space_path_depends_on_the_factorisation_but_delta_space_does_not():
    a, b = random_lora(0), random_lora(1)
    g = torch.randn(3, 3, generator=torch.Generator().manual_seed(5)) + 3 * torch.eye(3)
    regauged = LoraWeights({m: (torch.linalg.solve(g, A), B @ g) for m, (A, B) in b.factors.items()}, b.scaling, "base")
    m = a.modules[0]
    assert torch.allclose(regauged.delta(m), b.delta(m), atol=1e-4)
    assert torch.allclose(linear_path(a, b, "delta").at(0.5).delta(m), linear_path(a, regauged, "delta").at(0.5).delta(m), atol=1e-4)
    assert not torch.allclose(linear_path(a, b, "factor").at(0.5).delta(m), linear_path(a, regauged, "factor").at(0.5).delta(m), atol=1e-2)


def test_canonical_form_keeps_delta_and_balances_factors():
    a = random_lora(3)
    c = a.canonical()
    for m in a.modules:
        assert torch.allclose(c.delta(m), a.delta(m), atol=1e-4)
        A, B = c.factors[m]
        assert torch.allclose(A @ A.T, B.T @ B, atol=1e-3)  # both equal S


def test_bezier_endpoints_and_midpoint():
    a, c, b = random_lora(0), random_lora(1), random_lora(2)
    path = bezier_path(a, c, b, "delta")
    m = a.modules[0]
    assert (path.at(0).delta(m) - a.delta(m)).abs().max() < 1e-5
    assert (path.at(1).delta(m) - b.delta(m)).abs().max() < 1e-5
    expected = 0.25 * a.delta(m) + 0.5 * c.delta(m) + 0.25 * b.delta(m)
    assert torch.allclose(path.at(0.5).delta(m), expected, atol=1e-5)


def test_factor_space_refuses_unequal_ranks_and_suggests_delta():
    with pytest.raises(CompatibilityError, match="space='delta'"):
        linear_path(random_lora(0, rank=2), random_lora(1, rank=4), "factor")


def test_mismatched_modules_and_bases_are_refused():
    with pytest.raises(CompatibilityError, match="different modules"):
        linear_path(random_lora(0), random_lora(1, modules=("layer.0.q",)), "delta")
    other = random_lora(1)
    other = LoraWeights(other.factors, other.scaling, "another-base")
    with pytest.raises(CompatibilityError, match="different base models"):
        linear_path(random_lora(0), other, "delta")
    linear_path(random_lora(0), other, "delta", base_given=True)


def test_bad_options():
    with pytest.raises(ConfigError):
        uniform_ts(1)
    with pytest.raises(ConfigError):
        LoraPath((random_lora(0), random_lora(1)), space="weights")
    assert uniform_ts(3) == [0.0, 0.5, 1.0]

