"""Task arithmetic, TIES and MagMax in ΔW space against hand computations, and against peft's add_weighted_adapter
where the two compute the same thing (and where they do not, what peft computes instead)."""
import pytest
import torch

from modeconn.errors import ConfigError
from modeconn.lora.adapters import LoraWeights
from modeconn.lora.merge import (
    magmax,
    magmax_delta,
    svd_lora,
    task_arithmetic,
    ties,
    ties_delta,
)


def rows(**modules) -> LoraWeights:
    """A task vector whose module m has ΔW = the 1×n row given (A = the row, B = [[1]])."""
    factors = {m: (torch.tensor([v], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
               for m, v in modules.items()}
    return LoraWeights(factors, dict.fromkeys(factors, 1.0))


def random_lora(seed: int, rank: int, scaling: float) -> LoraWeights:
    g = torch.Generator().manual_seed(seed)
    shapes = {"m1": (5, 4), "m2": (3, 6)}
    factors = {m: (torch.randn(rank, i, generator=g, dtype=torch.float64),
                   torch.randn(o, rank, generator=g, dtype=torch.float64)) for m, (o, i) in shapes.items()}
    return LoraWeights(factors, dict.fromkeys(factors, scaling))


def test_task_arithmetic_is_the_exact_stacked_lora():
    one, two = random_lora(0, 2, 0.5), random_lora(1, 3, 2.0)
    merged = task_arithmetic([one, two], scale=0.7)
    for m in ("m1", "m2"):
        assert merged.rank(m) == 5
        expected = 0.7 * (0.5 * one.factors[m][1] @ one.factors[m][0] + 2.0 * two.factors[m][1] @ two.factors[m][0])
        torch.testing.assert_close(merged.delta(m), expected, rtol=0, atol=1e-12)


def test_ties_trims_each_task_vector_as_a_whole_elects_signs_and_takes_the_disjoint_mean():
    # τ1 keeps its two largest entries over both modules (4 and 3): trimmed m1 [4, 0], m2 [0, 3]
    # τ2 keeps 5 and 3: trimmed m1 [3, -5], m2 [0, 0]; per module τ1 would have kept -1 and 0.5 as well
    tau1, tau2 = rows(m1=[4.0, -1.0], m2=[0.5, 3.0]), rows(m1=[3.0, -5.0], m2=[1.0, -0.2])
    merged = ties_delta([tau1, tau2], density=0.5)
    # signs of the sums [7, -5], [0, 3]; means of the agreeing trimmed values; no value left at m2[0]
    torch.testing.assert_close(merged["m1"], torch.tensor([[3.5, -5.0]], dtype=torch.float64))
    torch.testing.assert_close(merged["m2"], torch.tensor([[0.0, 3.0]], dtype=torch.float64))
    scaled = ties([tau1, tau2], density=0.5, scale=2.0)
    torch.testing.assert_close(scaled.weights.delta("m1"), torch.tensor([[7.0, -10.0]], dtype=torch.float64))
    assert scaled.truncation_error == 0.0


def test_ties_gives_a_zero_sum_the_majority_sign_as_the_reference():
    # density 1 keeps everything; sums [0, -2, -2, -2]: the majority is negative, so entry 0 keeps τ2's -2
    # (peft's calculate_majority_sign_mask takes +1 where the sum is 0, and would keep τ1's 2)
    merged = ties_delta([rows(m=[2.0, -3.0, 1.0, -1.0]), rows(m=[-2.0, 1.0, -3.0, -1.0])], density=1.0)
    torch.testing.assert_close(merged["m"], torch.tensor([[-2.0, -3.0, -3.0, -1.0]], dtype=torch.float64))


def test_magmax_keeps_the_largest_magnitude_a_later_task_winning_a_tie():
    merged = magmax_delta([rows(m=[3.0, -1.0, 2.0]), rows(m=[-4.0, 0.5, -2.0])])
    torch.testing.assert_close(merged["m"], torch.tensor([[-4.0, -1.0, -2.0]], dtype=torch.float64))
    out = magmax([rows(m=[3.0, -1.0, 2.0]), rows(m=[-4.0, 0.5, -2.0])], scale=0.5)
    torch.testing.assert_close(out.weights.delta("m"), torch.tensor([[-2.0, -0.5, -1.0]], dtype=torch.float64))


def test_svd_write_back_is_exact_at_full_rank_and_records_the_truncation_error():
    g = torch.Generator().manual_seed(0)
    dense = {"m1": torch.randn(5, 4, generator=g, dtype=torch.float64),
             "m2": torch.randn(3, 6, generator=g, dtype=torch.float64)}
    exact = svd_lora(dense)
    assert exact.truncation_error == pytest.approx(0.0, abs=1e-12)
    for m, w in dense.items():
        assert exact.weights.rank(m) == min(w.shape)
        torch.testing.assert_close(exact.weights.delta(m), w, rtol=0, atol=1e-12)
    cut = svd_lora(dense, rank=2)
    lost = sum((cut.weights.delta(m) - w).square().sum() for m, w in dense.items())
    total = sum(w.square().sum() for w in dense.values())
    assert cut.truncation_error > 0.1 and cut.truncation_error == pytest.approx(float((lost / total).sqrt()), rel=1e-10)


def test_bad_merge_input_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="non-empty list"):
        task_arithmetic([])
    with pytest.raises(ConfigError, match="density"):
        ties_delta([rows(m=[1.0])], density=0)


def _peft(ranks: dict[str, int], layers: list[int]):
    """A float64 tiny Llama with LoRA adapters (random A and B) on the q_proj of ``layers``, one per name."""
    from helpers import tiny_model
    from peft import LoraConfig, get_peft_model

    model = None
    for i, (name, r) in enumerate(ranks.items()):
        torch.manual_seed(i)
        config = LoraConfig(r=r, lora_alpha=2 * r + i, target_modules=["q_proj"], layers_to_transform=layers,
                            init_lora_weights=False)
        if model is None:
            model = get_peft_model(tiny_model("llama").double(), config, adapter_name=name)
        else:
            model.add_adapter(name, config)
    return model.double()


def _layers(model, name) -> dict:
    from modeconn.continual.adapter_io import lora_layers
    from modeconn.continual.methods.lora_points import BASE, PREFIX

    layers = set(map(id, lora_layers(model, name)))
    return {n[len(PREFIX):] + BASE: m for n, m in model.named_modules() if id(m) in layers}


def _weights(model, name) -> LoraWeights:
    """One adapter of the model as float64 LoraWeights (seq_path.adapter_weights would give float32 copies)."""
    layers = _layers(model, name)
    return LoraWeights({k: (m.lora_A[name].weight.detach(), m.lora_B[name].weight.detach()) for k, m in layers.items()},
                       {k: m.scaling[name] for k, m in layers.items()})


def _peft_delta(model, name) -> dict:
    return {k: m.get_delta_weight(name) for k, m in _layers(model, name).items()}


@pytest.mark.parametrize("kind", ["cat", "svd"])
def test_peft_cat_and_full_rank_svd_equal_task_arithmetic(kind):
    model = _peft({"one": 2, "two": 3}, layers=[0, 1])
    extra = {"svd_rank": 64} if kind == "svd" else {}
    model.add_weighted_adapter(["one", "two"], [0.6, 0.6], "merged", combination_type=kind, **extra)
    ours = task_arithmetic([_weights(model, "one"), _weights(model, "two")], scale=0.6)
    theirs = _peft_delta(model, "merged")
    assert set(theirs) == set(ours.factors) and len(theirs) == 2
    for m, delta in theirs.items():  # peft writes its SVD factors into a float32 adapter: float32 rounding
        torch.testing.assert_close(delta, ours.delta(m), rtol=0, atol=1e-10 if kind == "cat" else 1e-7)


def test_peft_ties_svd_equals_ties_on_one_module():
    """peft trims per module, the reference per task vector: on one adapted module they are the same trim."""
    model = _peft({"one": 2, "two": 2, "three": 2}, layers=[0])
    model.add_weighted_adapter(["one", "two", "three"], [1.3] * 3, "merged", combination_type="ties_svd", density=0.2,
                               svd_rank=64)
    ours = ties([_weights(model, n) for n in ("one", "two", "three")], density=0.2, scale=1.3)
    (m, delta), = _peft_delta(model, "merged").items()
    torch.testing.assert_close(delta, ours.weights.delta(m), rtol=0, atol=1e-7)  # peft's float32 SVD factors
    assert (delta - ties([_weights(model, n) for n in ("one", "two", "three")], 1.0, 1.3).weights.delta(m)).norm() > 0.1
    assert ours.truncation_error == pytest.approx(0.0, abs=1e-12)


def test_peft_linear_scales_a_and_b_by_the_root_of_the_weight_and_is_no_task_arithmetic():
    """peft's "linear": A = Σ √(w s_i) A_i, B = Σ √(w s_i) B_i, so ΔW = B·A has cross terms B_i A_j."""
    model = _peft({"one": 2, "two": 2}, layers=[0])
    model.add_weighted_adapter(["one", "two"], [0.6, 0.6], "merged", combination_type="linear")
    a, b = _weights(model, "one"), _weights(model, "two")
    (m, delta), = _peft_delta(model, "merged").items()
    roots = [(0.6 * w.scaling[m]) ** 0.5 for w in (a, b)]
    big_a = sum(r * w.factors[m][0] for r, w in zip(roots, (a, b)))
    big_b = sum(r * w.factors[m][1] for r, w in zip(roots, (a, b)))
    torch.testing.assert_close(delta, big_b @ big_a, rtol=0, atol=1e-7)  # peft holds the √w in float32
    assert (delta - task_arithmetic([a, b], scale=0.6).delta(m)).norm() > 0.1 * delta.norm()
