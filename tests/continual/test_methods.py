"""Continual methods: the reservoir buffer, I-LoRA's interpolation and consistency loss, EWC, and the metrics."""
import pytest
import torch

from helpers import DDPStandIn

from modeconn.continual import get_method
from modeconn.continual.methods.ilora import ILoRA, consistency_loss
from modeconn.continual.methods.protocol import TaskContext
from modeconn.continual.metrics import ContinualMetrics
from modeconn.continual.methods.replay import ReservoirBuffer
from modeconn.errors import ConfigError


def test_reservoir_never_exceeds_its_size_and_keeps_every_item_equally_likely():
    counts = torch.zeros(100)
    for seed in range(400):
        buffer = ReservoirBuffer(10, seed)
        for start in range(0, 100, 7):
            buffer.add(range(start, min(100, start + 7)))
            assert len(buffer) <= 10
        counts[list(buffer.items)] += 1
    freq = counts / 400
    assert freq.mean() == pytest.approx(0.1)
    assert freq.min() > 0.03 and freq.max() < 0.2  # first and last items alike (expected 0.1 each)
    assert abs(freq[:50].mean() - freq[50:].mean()) < 0.02


def test_reservoir_state_round_trips_through_json():
    import json

    from modeconn.evaluator.data import Encoded

    a = ReservoirBuffer(5, 1)
    a.add(Encoded((1, i, i + 1), 2) for i in range(20))
    b = ReservoirBuffer(5, 99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.items == a.items and b.seen == 20
    assert a.sample(3) == b.sample(3)


def test_metrics_hand_worked():
    m = ContinualMetrics(["a", "b", "c"], initial_accuracy=[0.1, 0.2, 0.3])
    m.add_row([0.8, 0.1, 0.2], [0, 0, 0])
    m.add_row([0.5, 0.9, 0.4], [0, 0, 0])
    m.add_row([0.4, 0.6, 0.7], [0, 0, 0])
    assert m.ap == pytest.approx((0.4 + 0.6 + 0.7) / 3)
    assert m.bwt == pytest.approx(((0.4 - 0.8) + (0.6 - 0.9)) / 2)
    assert m.fwt == pytest.approx(((0.1 - 0.2) + (0.4 - 0.3)) / 2)
    assert "AP 0.567" in m.table()


def test_consistency_loss_max_target_is_one_sided_and_mse_is_not():
    slow = [torch.zeros(2, 3, 4)]
    above = [torch.ones(2, 3, 4, requires_grad=True)]
    mask = torch.ones(2, 3)
    assert consistency_loss(above, slow, mask, "max").item() == 0.0
    assert consistency_loss(above, slow, mask, "mse").item() == pytest.approx(1.0)
    below = [-torch.ones(2, 3, 4)]
    assert consistency_loss(below, slow, mask, "max").item() == pytest.approx(1.0)


def test_consistency_loss_ignores_padding():
    slow, fast = [torch.zeros(1, 2, 4)], [torch.tensor([[[-1.0] * 4, [-100.0] * 4]])]
    assert consistency_loss(fast, slow, torch.tensor([[1, 0]]), "max").item() == pytest.approx(1.0)


@pytest.fixture()
def peft_llama():
    from peft import LoraConfig, get_peft_model

    from helpers import tiny_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return model


def _lora(model, adapter):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{adapter}." in n and "lora_" in n}


def _ctx(model):
    return TaskContext(model, "t", 0, [], lambda e: {}, 4)


def test_ilora_interpolation_reaches_the_slow_adapter(peft_llama):
    """The reference code's defect: its interpolation rewrote the fast adapter with itself. Here slow really moves."""
    method = ILoRA(ilora_ema=0.25)
    method.begin_task(_ctx(peft_llama))
    assert all(not p.requires_grad for n, p in peft_llama.named_parameters() if ".slow." in n)
    assert any(p.requires_grad for n, p in peft_llama.named_parameters() if ".default." in n)
    fast, slow0 = _lora(peft_llama, "default"), _lora(peft_llama, "slow")
    method.slow.step = 7  # λ = min(1 − 1/8, 0.25) = 0.25
    method.after_step(peft_llama)
    slow1 = _lora(peft_llama, "slow")
    for name, value in slow1.items():
        twin = name.replace(".slow.", ".default.")
        assert torch.allclose(value, 0.25 * slow0[name] + 0.75 * fast[twin], atol=1e-6)
    assert all(torch.equal(v, fast[n]) for n, v in _lora(peft_llama, "default").items())


def test_ilora_lambda_schedule():
    method = ILoRA(ilora_ema=0.99)
    lams = []
    for step in range(4):
        method.slow.step = step
        lams.append(method.slow.lam())
    assert lams == pytest.approx([0.0, 0.5, 2 / 3, 0.75])
    method.slow.step = 10_000
    assert method.slow.lam() == 0.99


def test_ilora_reference_variant_keeps_slow_at_the_base_model_and_evaluates_fast(peft_llama):
    method = ILoRA(ilora_variant="reference")
    method.begin_task(_ctx(peft_llama))
    for step in range(3):
        method.after_step(peft_llama)
    assert all(torch.count_nonzero(v) == 0 for n, v in _lora(peft_llama, "slow").items() if "lora_B" in n)
    assert method.evaluated_adapter == "default"
    assert ILoRA().evaluated_adapter == "slow" and ILoRA(ilora_eval="fast").evaluated_adapter == "default"


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it(peft_llama):
    from modeconn.evaluator.data import collate, encode
    from modeconn.evaluator.data import Example
    from modeconn.evaluator.models import load_base

    _, tokenizer = load_base("tiny-llama")
    examples = encode(tokenizer, [Example("a b c", "x"), Example("d e", "y")])
    method = get_method("ewc", ewc_lambda=10.0)
    ctx = TaskContext(peft_llama, "t", 0, examples, lambda e: collate(e, tokenizer.pad_token_id), 2)
    method.end_task(ctx)
    assert method.penalty(peft_llama).item() == pytest.approx(0.0)
    with torch.no_grad():
        for n, p in peft_llama.named_parameters():
            if p.requires_grad:
                p.add_(0.1)
    expected = 0.5 * 10.0 * sum((f * 0.01).sum() for f in method.fisher.values())
    assert method.penalty(peft_llama).item() == pytest.approx(expected.item(), rel=1e-4)


def test_method_options_are_checked():
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ConfigError, match="variant"):
        get_method("ilora", ilora_variant="other")
    with pytest.raises(ConfigError, match="method 'er'"):
        get_method("er", ilora_gamma=1.0)


def test_the_run_seed_reaches_only_the_methods_that_draw_random_numbers():
    """Replay buffers sample with the run's seed; the other methods take no seed. ``options`` are the resolved values."""
    assert get_method("er", seed=3).seed == 3
    assert get_method("er", seed=3).options == {"buffer_size": 500, "buffer_fraction": None, "replay_first_task": False}
    ilora = get_method("ilora", seed=3, ilora_ema=0.99)
    assert ilora.seed == 3 and ilora.options["ilora_ema"] == 0.99 and ilora.options["ilora_variant"] == "paper"
    assert get_method("seq", seed=3).options == {}
    assert get_method("ewc", seed=3).options == {"ewc_lambda": 100.0, "fisher_samples": 256}
    samples = []
    for seed in (3, 3, 4):
        buffer = get_method("er", seed=seed).buffer
        buffer.add(list(range(50)))
        samples.append(buffer.sample(8))
    assert samples[0] == samples[1] and samples[0] != samples[2]


def test_ilora_slow_pass_keeps_only_the_fast_adapter_trainable(peft_llama):
    method = ILoRA()
    method.begin_task(_ctx(peft_llama))
    before = {n: p.requires_grad for n, p in peft_llama.named_parameters()}
    ids = torch.randint(3, 50, (2, 5))
    method._slow_hidden(peft_llama, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert {n: p.requires_grad for n, p in peft_llama.named_parameters()} == before
    assert peft_llama.active_adapter == "default"


def test_ilora_slow_hidden_states_equal_peft_forward_of_the_slow_adapter(peft_llama):
    """The slow pass skips the LM head; its hidden states are those of peft's own forward with the slow adapter."""
    method = ILoRA()
    method.begin_task(_ctx(peft_llama))
    with torch.no_grad():
        for name, p in peft_llama.named_parameters():
            if ".slow." in name:
                p.normal_(0, 0.05)  # B = 0 at the start would hide which adapter ran
    ids = torch.randint(3, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    hidden = method._slow_hidden(peft_llama, {"input_ids": ids, "attention_mask": mask})
    peft_llama.set_adapter("slow")
    peft_llama.eval()
    with torch.no_grad():
        reference = peft_llama(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
    peft_llama.set_adapter("default")
    with torch.no_grad():
        other = peft_llama(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
    assert len(hidden) == len(reference) == peft_llama.config.num_hidden_layers
    for h, r in zip(hidden, reference):
        torch.testing.assert_close(h, r, rtol=0, atol=0)
    assert not torch.allclose(hidden[-1], other[-1])  # and not the fast adapter's


def test_ilora_step_in_one_process_equals_its_ddp_form_and_a_hand_computation(peft_llama):
    """One process: the current rows split by length and the replayed rows in a forward of their own; under DDP one
    forward over both. The same loss and gradients, and the loss as the paper writes it, from peft's own losses:
    ½ (CE current + CE replay) + γ · consistency(fast, slow hidden states of the replayed rows)."""
    from modeconn.evaluator.data import Encoded, collate

    from modeconn.continual.methods.protocol import Batch

    pad = lambda examples: collate(examples, 0)  # noqa: E731
    current = [Encoded((1, 5, 6, 7, 8, 9, 2), 4), Encoded((1, 8, 9, 2), 2), Encoded((1, 10, 11, 12, 2), 3)]
    replay = [Encoded((1, 20, 21, 2), 2), Encoded((1, 22, 23, 24, 25, 26, 27, 28, 2), 6), Encoded((1, 30, 31, 2), 2)]
    method = ILoRA(ilora_gamma=2.0)
    method.begin_task(TaskContext(peft_llama, "t", 1, [], pad, 4))
    method.buffer.sample = lambda k: list(replay)
    with torch.no_grad():
        for name, p in peft_llama.named_parameters():
            if ".slow." in name:
                p.normal_(0, 0.05)  # B = 0 at the start would leave the consistency term nearly 0
    peft_llama.train()
    losses, grads = {}, {}
    for form, model in (("one", peft_llama), ("ddp", DDPStandIn(peft_llama))):
        losses[form] = method.training_step(model, Batch(current, pad(current), 1))
        losses[form].backward()
        grads[form] = {n: p.grad.clone() for n, p in peft_llama.named_parameters() if p.requires_grad}
        peft_llama.zero_grad(set_to_none=True)
    assert [rows for rows, _ in model.shapes] == [6]  # the DDP form: one forward of 3 current and 3 replayed rows
    assert losses["one"].item() == pytest.approx(losses["ddp"].item(), rel=1e-5)
    for name, value in grads["one"].items():
        torch.testing.assert_close(value, grads["ddp"][name], rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        inputs = pad(replay)
        fast = peft_llama(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                          output_hidden_states=True).hidden_states[1:]
        slow = method._slow_hidden(peft_llama, {k: inputs[k] for k in ("input_ids", "attention_mask")})
        expected = (0.5 * (peft_llama(**pad(current)).loss + peft_llama(**inputs).loss)
                    + 2.0 * consistency_loss(list(fast), slow, inputs["attention_mask"], method.ilora_consistency))
    assert method.parts["consistency"] > 0
    assert losses["one"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_each_example_is_offered_once_and_the_buffer_is_a_uniform_sample(monkeypatch):
    """Examples offered in a task's first epoch only (later epochs replay, not re-offer): no duplicates, and over
    many seeds every one of 200 examples is kept equally often (chi-square test, p > 0.01)."""
    from scipy.stats import chisquare

    from modeconn.continual.methods.protocol import Batch

    counts = torch.zeros(200)
    for seed in range(300):
        method = get_method("er", seed=seed, buffer_size=10)
        method.collate = lambda examples: {}
        for epoch in range(3):
            for start in range(0, 200, 8):
                method.buffer.sample(8)
                if epoch == 0:
                    method.buffer.add(range(start, start + 8))
        assert method.buffer.seen == 200 and len(set(method.buffer.items)) == 10
        counts[list(method.buffer.items)] += 1
    assert chisquare(counts.numpy()).pvalue > 0.01
    er = get_method("er", seed=0, buffer_size=50)
    er.collate = lambda examples: {"examples": examples}
    monkeypatch.setattr("modeconn.continual.methods.er.answer_loss", lambda model, inputs: torch.zeros(()))
    for epoch in range(3):  # the method itself offers a batch only in epoch 0
        er.training_step(None, Batch([1, 2, 3, 4], {}, epoch))
    assert er.buffer.seen == 4 and sorted(er.buffer.items) == [1, 2, 3, 4]


def test_a_buffer_fraction_sizes_the_buffer_from_the_stream():
    method = get_method("er", seed=0, buffer_fraction=0.025)
    method.begin_task(TaskContext(None, "t", 0, [], lambda e: {}, 4, stream_examples=1600))
    assert method.buffer.size == 40


def test_ewc_fisher_is_the_per_example_empirical_fisher(peft_llama):
    """F = (1/N) Σ_n g_n², each example's own gradient (dropout off), against a hand computation with autograd."""
    from modeconn.continual.methods.ewc import per_example_fisher
    from modeconn.evaluator.data import Encoded, collate

    examples = [Encoded((1, 5, 6, 7, 2), 3), Encoded((1, 9, 2), 2), Encoded((1, 11, 12, 13, 14, 2), 4)]
    peft_llama.train()
    fisher = per_example_fisher(peft_llama, examples, lambda e: collate(e, 3))
    assert peft_llama.training  # the model is left in the mode it came in
    params = {n: p for n, p in peft_llama.named_parameters() if p.requires_grad}
    peft_llama.eval()
    reference = {n: torch.zeros_like(p) for n, p in params.items()}
    for example in examples:
        loss = peft_llama(**collate([example], 3)).loss
        grads = torch.autograd.grad(loss, list(params.values()))
        for (n, _), g in zip(params.items(), grads):
            reference[n] += g**2 / len(examples)
    for n in params:
        torch.testing.assert_close(fisher[n], reference[n], rtol=1e-5, atol=1e-9)
    # the squared gradient of the batch's mean loss (the old estimate) is far smaller than the per-example Fisher
    grads = torch.autograd.grad(peft_llama(**collate(examples, 3)).loss, list(params.values()))
    assert sum(float((g**2).sum()) for g in grads) < 0.9 * sum(float(f.sum()) for f in fisher.values())


def test_ilora_reference_intended_copies_fast_into_slow_at_each_task_end(peft_llama):
    method = ILoRA(ilora_variant="reference-intended")
    method.begin_task(_ctx(peft_llama))
    with torch.no_grad():
        for n, p in peft_llama.named_parameters():
            if ".default." in n:
                p.add_(0.5)
    method.after_step(peft_llama)  # no interpolation during the task
    assert all(torch.count_nonzero(v) == 0 for n, v in _lora(peft_llama, "slow").items() if "lora_B" in n)
    method.end_task(_ctx(peft_llama))
    fast, slow = _lora(peft_llama, "default"), _lora(peft_llama, "slow")
    assert all(torch.equal(v, fast[n.replace(".slow.", ".default.")]) for n, v in slow.items())
    assert method.evaluated_adapter == "default"
