"""Greedy answers read from the teacher-forced loss pass: decode only what the loss pass cannot tell.

Greedy decoding picks the argmax token at each step. If, with the reference answer fed in (the loss pass), the argmax
at every answer position equals the reference token (eos included), greedy decoding from the prompt emits exactly
that answer and stops: its text is the reference's tokens decoded, known without generating. Only the other examples
are decoded, batched as before, with the same ``max_new_tokens``, so every example's text, and each metric's score of
it, is what decoding all of them gives (``tests/evaluator/test_forced.py`` checks it on the embedded tasks). A model
whose generation_config adds a logits processor (a repetition penalty, beams, ...) has every example decoded.
"""
from __future__ import annotations

import torch

from .batch import scored_batch
from .budget import Budget, batches, split_on_oom
from .data import Encoded, Example
from .greedy import greedy_scores
from .head import causal_lm, scored_nll
from .scoring import get_scorer

# generation settings a model's own generation_config can bring into generate(): any of them away from its neutral
# value makes decoding something other than the argmax of the raw logits, and then every example is decoded
NEUTRAL = {"num_beams": 1, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
           "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "suppress_tokens": None,
           "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None, "min_length": 0,
           "min_new_tokens": None, "sequence_bias": None, "exponential_decay_length_penalty": None,
           "renormalize_logits": False, "guidance_scale": None, "watermarking_config": None, "penalty_alpha": None,
           "dola_layers": None, "forced_decoder_ids": None}


def plain_greedy(model) -> bool:
    """Whether greedy decoding of ``model`` is the argmax of its logits (no processor from its generation_config)."""
    config = getattr(causal_lm(model), "generation_config", None)
    return config is None or all(getattr(config, key, None) in (None, value) for key, value in NEUTRAL.items())


def greedy_limit(model, tokenizer, encoded: list[Encoded]) -> tuple[int, int] | None:
    """``(max_new_tokens, eos)`` for decoding ``encoded``'s answers from cached prompts (``choices.py``), or None
    where greedy decoding is not the logits' argmax (``plain_greedy``) and ``generate`` must decode."""
    return (max(len(e.ids) - e.n_prompt for e in encoded), tokenizer.eos_token_id) if plain_greedy(model) else None


def forced_pass(model, encoded: list[Encoded], pad_id: int, budget: int) -> tuple[torch.Tensor, list[bool]]:
    """``[1]`` token-weighted mean answer NLL (the numbers ``path_losses`` gives for the model as it stands) and, per
    example, whether greedy decoding reproduces its answer + eos, from one forward pass per batch."""

    budget = Budget(budget)
    device = next(model.parameters()).device
    plain = plain_greedy(model)
    total = torch.zeros(1, dtype=torch.float64, device=device)
    known = [False] * len(encoded)

    def run(items, _):
        ids, mask, rows, cols, targets = scored_batch(items, pad_id, device)
        per_row, out = scored_nll(model, lambda: causal_lm(model)(input_ids=ids, attention_mask=mask, use_cache=False),
                                  rows, cols, targets=targets, n_rows=len(items), dtype=torch.float64)
        logits = out.logits[0]  # greedy decoding's argmax, at the same logits
        per_row, rows = per_row.to(ids.device), rows.to(ids.device)
        wrong = torch.zeros(len(items), dtype=torch.long, device=ids.device).index_add_(
            0, rows, (logits.argmax(-1) != targets.to(logits.device)).long().to(ids.device))
        return per_row.view(1, -1).sum(1), wrong

    for batch in batches(encoded, lambda e: len(e.ids), 1, budget.tokens):
        summed, wrong = split_on_oom(run, [encoded[i] for i in batch], torch.ones(1, 1), budget, join_points=None,
                                     join_items=lambda a, b: (a[0] + b[0], torch.cat([a[1], b[1]])))
        total[0:1] += summed
        for i, misses in zip(batch, wrong.tolist()):
            known[i] = plain and misses == 0
    return total / sum(len(e.ids) - e.n_prompt for e in encoded), known


def _answers(encoded: list[Encoded], known: list[bool], decoded: torch.Tensor | None, which: list[int]) -> list[list[int]]:
    """The greedy answer tokens of the examples ``which``: the reference's where ``known``, else ``decoded``'s row."""
    return [list(encoded[i].ids[encoded[i].n_prompt :]) if known[i] else decoded[i].tolist() for i in which]


def model_accuracy(model, tokenizer, examples: list[Example], encoded: list[Encoded], known: list[bool], budget: int,
                   metric: str = "exact_match", decoded: torch.Tensor | None = None) -> torch.Tensor:
    """``[1]`` mean score of greedy decoding: the ``known`` examples' answers as they are, the others' greedy tokens
    where ``decoded`` has them (``choices.shared_choice_scores``: a row per example, -1 where it has none), the rest
    decoded."""
    from .layer import Unrouted

    score = get_scorer(metric)
    have = [k or (decoded is not None and int(decoded[i, 0]) >= 0) for i, k in enumerate(known)]
    sure = [i for i, h in enumerate(have) if h]
    texts = tokenizer.batch_decode(_answers(encoded, known, decoded, sure), skip_special_tokens=True)
    correct = torch.tensor([sum(score(t, examples[i].answer, examples[i].prompt) for i, t in zip(sure, texts))],
                           dtype=torch.float64)
    rest = [i for i, h in enumerate(have) if not h]
    if rest:
        max_new = max(len(e.ids) - e.n_prompt for e in encoded)  # all examples': a shorter limit could cut a text
        correct += greedy_scores(model, tokenizer, [(examples[i], encoded[i]) for i in rest], (torch.ones(1, 1), Unrouted()),
                                 budget=budget, metric=metric, max_new=max_new)
    return correct / len(examples)


def points_accuracy(tokenizer, examples: list[Example], encoded: list[Encoded], *, known: list[list[bool]],
                    decoded: torch.Tensor, metric: str = "exact_match") -> torch.Tensor:
    """``[K]`` mean score of greedy decoding at each of K path points, every answer at hand: ``known[k]``'s as the
    reference's tokens, the others from ``decoded [K, N, max_new]`` (``choices.shared_choice_scores``)."""
    score = get_scorer(metric)
    every = list(range(len(examples)))
    out = []
    for point, tokens in zip(known, decoded):
        texts = tokenizer.batch_decode(_answers(encoded, point, tokens, every), skip_special_tokens=True)
        out.append(sum(score(t, e.answer, e.prompt) for t, e in zip(texts, examples)) / len(examples))
    return torch.tensor(out, dtype=torch.float64)
