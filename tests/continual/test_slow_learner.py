"""The slow learner's fused update gives, bit for bit, a lerp_ per weight (what it replaced)."""
from __future__ import annotations

import torch

from modeconn.continual.methods.slow_learner import SlowLearner


def test_fused_interpolation_equals_one_lerp_per_weight():
    torch.manual_seed(0)
    fast = [torch.randn(8, 64), torch.randn(64, 8), torch.randn(3, 5)]
    slow = [torch.randn_like(w) for w in fast]
    expected = [s.clone() for s in slow]
    learner = SlowLearner(0.9)
    learner.pairs = (slow, fast)
    for step in range(5):
        learner.step = step
        weight = 1 - learner.lam()
        for s, f in zip(expected, fast):
            s.lerp_(f, weight)
        learner.follow()
        assert all(torch.equal(s, e) for s, e in zip(slow, expected))
    learner.copy_fast()
    assert all(torch.equal(s, f) for s, f in zip(slow, fast))
