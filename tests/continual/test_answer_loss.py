"""The training loss at the labelled positions only (``methods/base.py``'s ``labelled_nll``, ``row_nll`` and
``answer_loss``) against transformers' own ``model(**inputs).loss`` and a float64 cross-entropy over the full logits,
on tiny random models of several architectures (Gemma-2 with its logit soft-cap, GPT-2 with its Conv1D layers and
dropout, Falcon, Granite's and Cohere's logit scales), with a LoRA adapter that peft makes: the loss, its gradients,
the rows split by length, and the head restored after."""
from __future__ import annotations

import itertools
import random

import pytest
import torch
from peft import LoraConfig, get_peft_model

from modeconn.continual.methods import base
from modeconn.continual.methods.base import answer_loss, labelled_nll, row_nll
from helpers import DDPStandIn
from tiny_configs import tiny_causal_lm

ARCHITECTURES = {"llama": {}, "qwen2": {}, "phi3": {}, "gpt2": {}, "falcon": {},
                 "gemma2": {"final_logit_softcapping": 5.0}, "granite": {"logits_scaling": 4.0},
                 "cohere": {"logit_scale": 0.25}}
LENGTHS = (9, 6, 4, 8, 3)  # right-padded rows, the answer at different positions (as evaluator.data.collate)
ANSWERS = ((5, 9), (4, 6), (2, 4), (6, 8), (1, 3))


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 4000, (len(LENGTHS), max(LENGTHS)))
    mask = (torch.arange(ids.shape[1]) < torch.tensor(LENGTHS)[:, None]).long()
    ids[mask == 0] = 3
    labels = torch.full_like(ids, -100)
    for row, (start, end) in enumerate(ANSWERS):
        labels[row, start:end] = ids[row, start:end]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _peft(kind: str):
    model = tiny_causal_lm(kind, seed=0, **ARCHITECTURES[kind]).double()
    torch.manual_seed(2)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def _same_grads(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys() and len(got) > 0
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_the_loss_at_the_answer_positions_and_its_gradients_equal_the_models_own(kind, monkeypatch):
    """One forward in training mode (GPT-2's and Falcon's dropout on: the same seed draws the same masks in both
    passes), then the rows split by length (``answer_loss``, a forward's cost set low enough to split) with dropout
    off."""
    monkeypatch.setattr(base, "FORWARD_COST", {"cpu": 2})
    model, inputs = _peft(kind), _batch()
    for training in (True, False):
        model.train(training)
        torch.manual_seed(3)
        reference = model(**inputs).loss
        reference.backward()
        expected = _grads(model)
        torch.manual_seed(3)
        if training:
            nll, count, _ = labelled_nll(model, inputs)
            loss = nll.sum() / count.sum()
        else:
            loss = answer_loss(model, inputs)
        loss.backward()
        assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
        _same_grads(_grads(model), expected)
    assert type(model.get_base_model().get_output_embeddings()).__name__ != "ScoredHead"  # the model's own head is back


def test_labelled_nll_per_row_matches_a_float64_hand_computation_from_the_full_logits():
    model, inputs = _peft("gemma2"), _batch()
    with torch.no_grad():
        nll, count, out = labelled_nll(model, inputs, output_hidden_states=True)
        full = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    logp = torch.log_softmax(full.double(), -1)
    labels = inputs["labels"]
    for row in range(len(LENGTHS)):
        ref = -sum(logp[row, pos - 1, labels[row, pos]]
                   for pos in range(1, labels.shape[1]) if labels[row, pos] != -100)
        assert nll[row].item() == pytest.approx(ref.item(), rel=1e-6)  # float32 logits, as transformers
    assert count.tolist() == [e - s for s, e in ANSWERS]
    assert out.logits.shape[:2] == (1, sum(e - s for s, e in ANSWERS))  # only the labelled positions were projected
    assert len(out.hidden_states) == 3  # the forward options reach the model


def _brute_force(lengths: list[int], cost: int) -> int:
    """The least Σ rows·longest + cost per group over every split of the sorted rows into consecutive groups."""
    rows = sorted(lengths)
    best = None
    for cuts in itertools.product((False, True), repeat=len(rows) - 1):
        total, start = 0, 0
        for end in [i + 1 for i, cut in enumerate(cuts) if cut] + [len(rows)]:
            total += (end - start) * rows[end - 1] + cost
            start = end
        best = total if best is None else min(best, total)
    return best


def test_length_groups_is_the_cheapest_split_of_the_sorted_rows():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 9))]
        cost = rng.choice([0, 16, 128, 1000])
        groups = base.length_groups(lengths, cost)
        assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
        spans = [[lengths[row] for row in group] for group in groups]
        assert all(max(a) <= min(b) for a, b in zip(spans, spans[1:]))  # consecutive in the sorted order
        assert sum(len(span) * max(span) + cost for span in spans) == _brute_force(lengths, cost)
    assert base.length_groups([9, 6, 4, 8, 3], 1000) == [[4, 2, 1, 3, 0]]  # a forward costs more than the padding


def test_rows_split_by_length_on_a_cpu_and_one_forward_under_ddp_or_left_padding(monkeypatch):
    model, inputs = _peft("llama").eval(), _batch()
    monkeypatch.setattr(base, "FORWARD_COST", {"cpu": 0})  # every row alone
    with torch.no_grad():
        single = labelled_nll(model, inputs)[0]
        split = row_nll(model, inputs)[0]
    torch.testing.assert_close(split, single, rtol=1e-6, atol=0)  # rows in their own order again
    widths = []
    monkeypatch.setattr(base, "labelled_nll", lambda m, part, **kw: widths.append(part["input_ids"].shape[1])
                        or labelled_nll(m, part, **kw))
    with torch.no_grad():
        row_nll(model, inputs)
        assert widths == [3, 4, 6, 8, 9]  # each row cut to its own length
        wrapped = DDPStandIn(model)
        row_nll(wrapped, inputs)
        assert [width for _, width in wrapped.shapes] == [9]  # DDP: one forward per backward
        left = {k: v.flip(1) for k, v in inputs.items()}
        widths.clear()
        row_nll(model, left)
        assert widths == [9]  # not right-padded: not cut
    for costs in ({}, {"cpu": 128}):  # a device without a cost (a GPU); a forward dearer than the padding it saves
        monkeypatch.setattr(base, "FORWARD_COST", costs)
        widths.clear()
        with torch.no_grad():
            row_nll(model, inputs)
        assert widths == [9]
