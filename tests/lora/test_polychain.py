"""The polygonal chain: its ends at t = 0 and 1, its bend at t = ½, each half a straight segment, in both spaces."""
import pytest
import torch

from modeconn.lora.adapters import LoraWeights
from modeconn.lora.paths import kind_path


def random_lora(seed: int, modules=("layer.0.q", "layer.1.v")) -> LoraWeights:
    g = torch.Generator().manual_seed(seed)
    return LoraWeights({m: (torch.randn(3, 7, generator=g), torch.randn(5, 3, generator=g)) for m in modules},
                       {m: 2.0 for m in modules}, "base")


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_the_chain_passes_through_its_ends_and_its_bend(space):
    a, bend, b = random_lora(0), random_lora(1), random_lora(2)
    path = kind_path("polychain", a, [bend], b, space=space)
    for m in a.modules:
        for t, point in ((0.0, a), (0.5, bend), (1.0, b)):
            assert torch.allclose(path.at(t).delta(m), point.delta(m), atol=1e-5)


def test_each_half_is_a_straight_segment_by_hand():
    a, bend, b = random_lora(0), random_lora(1), random_lora(2)
    path = kind_path("polychain", a, [bend], b, space="delta")
    m = a.modules[0]
    assert torch.allclose(path.at(0.2).delta(m), 0.6 * a.delta(m) + 0.4 * bend.delta(m), atol=1e-5)
    assert torch.allclose(path.at(0.9).delta(m), 0.2 * bend.delta(m) + 0.8 * b.delta(m), atol=1e-5)
    c = path.coefficients(torch.linspace(0, 1, 11))
    assert torch.allclose(c.sum(1), torch.ones(11, dtype=torch.float64)) and (c >= 0).all()


def test_the_chain_needs_exactly_one_bend():
    from modeconn.errors import ConfigError

    with pytest.raises(ConfigError, match="polychain path joins two adapters through 1 more"):
        kind_path("polychain", random_lora(0), [], random_lora(1))
