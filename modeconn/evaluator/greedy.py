"""Greedy decoding at path points, batched like the loss pass (points laid out point-major), scored per example."""
from __future__ import annotations

import torch

from .budget import Budget, batches, decode_budget, points_per_chunk, split_on_oom
from .data import Encoded, Example
from .scoring import get_scorer


def _decode_chunk(model, tokenizer, items: list[Encoded], coeffs: torch.Tensor, injected, gen, budget: Budget) -> list[str]:
    """Greedy answers of ``items`` at each point of ``coeffs`` (point-major); on out-of-memory, split and retry."""
    device = next(model.parameters()).device

    def run(items, coeffs):
        kc, b, width = len(coeffs), len(items), max(e.n_prompt for e in items)
        ids = torch.full((b, width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(items):  # left padding for generation
            ids[r, width - e.n_prompt :] = torch.tensor(e.prompt_ids)
            mask[r, width - e.n_prompt :] = 1
        with injected.points(coeffs, b):
            out = model.generate(input_ids=ids.repeat(kc, 1).to(device), attention_mask=mask.repeat(kc, 1).to(device),
                                 generation_config=gen)
        return tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)

    # answers are point-major, so both halvings put them back by concatenation
    return split_on_oom(run, items, coeffs, budget, join_points=list.__add__, join_items=list.__add__)


def path_accuracy(model, tokenizer, task: list[tuple[Example, Encoded]], points: tuple, *, budget: int | Budget, bar=None,
                  metric: str = "exact_match") -> torch.Tensor:
    """``[K]`` mean score (exact match by default) of greedy decoding of each ``(example, encoded)`` of ``task`` at each
    path point (``points``: the coefficient rows and the injected layers that route them), points batched like the loss.

    The token budget of a decoding pass counts its KV cache too (``decode_budget``)."""
    return greedy_scores(model, tokenizer, task, points, budget=budget, bar=bar, metric=metric) / len(task)


def greedy_scores(model, tokenizer, task: list[tuple[Example, Encoded]], points: tuple, *, budget: int | Budget,
                  bar=None, metric: str = "exact_match", max_new: int | None = None) -> torch.Tensor:
    """``[K]`` summed score of greedy decoding at each path point, up to ``max_new`` new tokens (None: the longest
    answer + eos of ``task``)."""
    score = get_scorer(metric)
    coeffs, injected = points
    examples, encoded = [e for e, _ in task], [c for _, c in task]
    from transformers import GenerationConfig

    budget = Budget(decode_budget(model, budget.tokens if isinstance(budget, Budget) else budget))
    k = coeffs.shape[0]
    max_new = max_new or max(len(e.ids) - e.n_prompt for e in encoded)
    gen = GenerationConfig(do_sample=False, max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    correct = torch.zeros(k, dtype=torch.float64)
    for batch in batches(encoded, lambda e: e.n_prompt + max_new, 1, budget.tokens):
        items = [encoded[i] for i in batch]
        answers = [examples[i].answer for i in batch]
        sources = [examples[i].prompt for i in batch]
        width = max(e.n_prompt for e in items) + max_new
        start = 0
        while start < k:  # the chunk size is recomputed each time: the budget may have shrunk
            stop = min(k, start + points_per_chunk(len(items), width, budget.tokens))
            texts = _decode_chunk(model, tokenizer, items, coeffs[start:stop], injected=injected, gen=gen, budget=budget)
            hits = torch.tensor([score(t, answers[j % len(items)], sources[j % len(items)]) for j, t in enumerate(texts)], dtype=torch.float64)
            correct[start:stop] += hits.view(stop - start, len(items)).sum(1)
            if bar is not None:
                bar.update((stop - start) * len(items))
            start = stop
    return correct
