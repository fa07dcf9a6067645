"""Scores through the model's own logit path, at the scored positions only.

Models post-process their logits after the LM head: Gemma-2 soft-caps them (``tanh(z / c) · c``), Granite divides
by ``logits_scaling``, Cohere multiplies by ``logit_scale``, MiniCPM scales the hidden states before the head. Instead
of re-implementing each, the model's own forward runs with its head replaced, for one pass, by ``ScoredHead``: it
projects only the hidden states at the scored (row, position) pairs, so whatever the model does around its head is
done to exactly those logits, and no ``[rows, length, vocab]`` tensor is ever built.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import CompatibilityError


class ScoredHead(nn.Module):
    """The LM head, applied to ``hidden[rows, cols]`` only; returns ``[1, n_scored, vocab]``."""

    def __init__(self, head: nn.Module, rows: torch.Tensor, cols: torch.Tensor):
        super().__init__()
        self.head, self.rows, self.cols = head, rows, cols

    @property
    def weight(self):  # models that read their head's weight (tied embeddings, dtype checks) still find it
        return self.head.weight

    @property
    def bias(self):  # BERT-style heads re-link their separate bias parameter to the head's when it is swapped
        return getattr(self.head, "bias", None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3:
            raise CompatibilityError(f"the model's LM head receives hidden states of shape {tuple(hidden.shape)}, not [rows, length, "
                                     "hidden] (several prediction streams?); modeconn scores models with one stream only")
        device = hidden.device
        return self.head(hidden[self.rows.to(device), self.cols.to(device)].unsqueeze(0))


def causal_lm(model) -> nn.Module:
    """The causal LM inside a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def scoring_head(model, rows: torch.Tensor, cols: torch.Tensor):
    """Inside the block the model's forward returns logits ``[1, n_scored, vocab]`` at ``(rows, cols)`` only."""
    lm = causal_lm(model)
    head = lm.get_output_embeddings()
    lm.set_output_embeddings(ScoredHead(head, rows, cols))
    try:
        yield
    finally:
        lm.set_output_embeddings(head)


def scored_nll(model, forward, rows: torch.Tensor, cols: torch.Tensor, *, targets: torch.Tensor, n_rows: int,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, object]:
    """``[n_rows]`` summed NLL (``dtype``) of ``targets`` at ``(rows, cols)``, and the output of ``forward()``, a
    forward of ``model`` run with its head applied at those positions only: how the evaluator and every training loss
    score the labelled tokens."""
    with scoring_head(model, rows, cols):
        out = forward()
    logits = out.logits[0]
    nll = torch.nn.functional.cross_entropy(logits.float(), targets.to(logits.device), reduction="none").to(dtype)
    return torch.zeros(n_rows, dtype=dtype, device=nll.device).index_add_(0, rows.to(nll.device), nll), out


def answer_nll(model, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor,
               cols: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``[n_rows]`` summed NLL (float64) of the target tokens at ``(rows, cols)``, computed from the model's logits."""
    nll, _ = scored_nll(model, lambda: causal_lm(model)(input_ids=ids, attention_mask=mask, use_cache=False), rows,
                        cols, targets=targets, n_rows=n_rows, dtype=torch.float64)
    return nll.to(ids.device)