"""The training loss at the labelled positions only (``methods/base.py``'s ``answer_loss`` and ``labelled_nll``)
against transformers' own ``model(**inputs).loss`` and a float64 cross-entropy over the full logits, on tiny random
models of several architectures (Gemma-2 with its logit soft-cap, GPT-2 with its Conv1D layers, Falcon, Granite's and
Cohere's logit scales), with a LoRA adapter that peft makes: the loss, its gradients, and the head restored after."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from modeconn.continual.methods.base import answer_loss, labelled_nll
from tiny_configs import tiny_causal_lm

ARCHITECTURES = {"llama": {}, "qwen2": {}, "phi3": {}, "gpt2": {}, "falcon": {},
                 "gemma2": {"final_logit_softcapping": 5.0}, "granite": {"logits_scaling": 4.0},
                 "cohere": {"logit_scale": 0.25}}


def _batch():
    """Right-padded rows of different lengths, the answer at different positions (as ``evaluator.data.collate``)."""
    torch.manual_seed(1)
    ids = torch.randint(5, 4000, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:], mask[2, 4:] = 0, 0
    ids[mask == 0] = 3
    labels = torch.full_like(ids, -100)
    labels[0, 5:9], labels[1, 4:6], labels[2, 2:4] = ids[0, 5:9], ids[1, 4:6], ids[2, 2:4]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _peft(kind: str):
    model = tiny_causal_lm(kind, seed=0, **ARCHITECTURES[kind]).double()
    torch.manual_seed(2)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("kind", list(ARCHITECTURES))
def test_answer_loss_and_its_gradients_equal_the_models_own_loss(kind):
    model, inputs = _peft(kind), _batch()
    model.train()  # GPT-2's and Falcon's dropout on: the same seed draws the same masks in both passes
    torch.manual_seed(3)
    reference = model(**inputs).loss
    reference.backward()
    expected = _grads(model)
    torch.manual_seed(3)
    loss = answer_loss(model, inputs)
    loss.backward()
    got = _grads(model)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert got.keys() == expected.keys() and len(got) > 0
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-10)
    lm = model.get_base_model()
    assert type(lm.get_output_embeddings()).__name__ != "ScoredHead"  # the model's own head is back


def test_labelled_nll_per_row_matches_a_float64_hand_computation_from_the_full_logits():
    model, inputs = _peft("gemma2"), _batch()
    with torch.no_grad():
        nll, count, out = labelled_nll(model, inputs, output_hidden_states=True)
        full = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    logp = torch.log_softmax(full.double(), -1)
    labels = inputs["labels"]
    for row in range(3):
        ref = -sum(logp[row, pos - 1, labels[row, pos]] for pos in range(1, 9) if labels[row, pos] != -100)
        assert nll[row].item() == pytest.approx(ref.item(), rel=1e-6)  # float32 logits, as transformers
    assert count.tolist() == [4, 2, 2]
    assert out.logits.shape[:2] == (1, 8)  # only the 8 labelled positions were projected
    assert len(out.hidden_states) == 3  # the forward options reach the model
