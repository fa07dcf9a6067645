"""Choice NLLs with each prompt run once: the prompt's KV cache is copied to its choices, which run together after it.

The NLLs are those of the rows path (``path_nll`` on ``choice_rows``): the same tokens (answer + eos) after the same
``bos + prompt``, summed per row. Prompts are left-padded with explicit ``position_ids`` from the mask, so each choice
continues at its own prompt's real end; the last prompt position's logits score each choice's first token.
"""
from __future__ import annotations

import inspect
import weakref

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from .budget import Budget, batches, decode_budget, is_oom, split_on_oom
from .data import Encoded
from .head import causal_lm, scoring_head

_SHAREABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per model: whether its first try worked


class Unshareable(Exception):
    """The model's cache cannot be copied per choice (a hybrid or recurrent cache, a model that refuses the inputs)."""


def _groups(rows: list[Encoded], sizes: list[int]) -> list[tuple[tuple[int, ...], list[tuple[int, ...]], range]]:
    """Per example: its prompt, its choices' answer tokens and its row indices, where all its rows share one prompt
    (``choice_rows`` cuts a long prompt by each choice's length, and cuts that differ cannot share a prompt)."""
    out, start = [], 0
    for size in sizes:
        span = range(start, start + size)
        start += size
        prompts = {rows[i].ids[: rows[i].n_prompt] for i in span}
        if len(prompts) == 1 and rows[span[0]].n_prompt > 0:
            out.append((prompts.pop(), [rows[i].ids[rows[i].n_prompt :] for i in span], span))
    return out


def _plain_causal_lm(model) -> bool:
    config = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", None))
    lm = causal_lm(model)
    return (not getattr(config, "is_prompt_learning", False) and lm.get_output_embeddings() is not None
            and not getattr(lm.config, "is_encoder_decoder", False))


def _cache_argument(lm) -> str:
    parameters = inspect.signature(lm.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise Unshareable("the model's forward takes no cache")


def _shareable_cache(cache, length: int) -> bool:
    """Whether every layer is a plain growing cache, or a sliding one whose window the whole sequence fits (then the
    window hides nothing, in this pass and in the rows path); False: run this batch as rows."""
    if type(cache) is not DynamicCache or not cache.layers:
        raise Unshareable(f"the model returns a {type(cache).__name__}")
    for layer in cache.layers:
        if type(layer) is DynamicSlidingWindowLayer:
            if length >= layer.sliding_window:
                return False
        elif type(layer) is not DynamicLayer:
            raise Unshareable(f"the model's cache has a {type(layer).__name__}")
    return True


def _batch_nll(model, items: list, pad_id: int) -> torch.Tensor | None:
    """``[rows]`` summed NLL of every choice of ``items`` (prompt, answers, row span), or None if the batch's length
    exceeds a sliding window."""
    lm = causal_lm(model)
    device = next(model.parameters()).device
    counts = torch.tensor([len(answers) for _, answers, _ in items])
    width = max(len(prompt) for prompt, _, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (prompt, _, _) in enumerate(items):
        ids[r, width - len(prompt) :], mask[r, width - len(prompt) :] = torch.tensor(prompt), 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    last = torch.full((len(items),), width - 1, dtype=torch.long)
    with scoring_head(model, torch.arange(len(items)), last):
        out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)

    answers = [answer for _, group, _ in items for answer in group]
    fed = max(len(a) for a in answers) - 1  # every answer token but the last (eos) is fed: its logits score the next
    if not _shareable_cache(cache, width + fed):
        return None
    example = torch.repeat_interleave(torch.arange(len(items)), counts).to(device)
    first = torch.tensor([a[0] for a in answers], device=device)
    nll = torch.nn.functional.cross_entropy(out.logits[0].float()[example], first, reduction="none").double()
    if fed == 0:
        return nll
    cache.batch_select_indices(example)  # batch_repeat_interleave, with a count per example
    tokens = torch.full((len(answers), fed), pad_id, dtype=torch.long)
    fed_mask = torch.zeros_like(tokens)
    rows, cols, targets = [], [], []
    for r, answer in enumerate(answers):
        tokens[r, : len(answer) - 1], fed_mask[r, : len(answer) - 1] = torch.tensor(answer[:-1], dtype=torch.long), 1
        rows += [r] * (len(answer) - 1)
        cols += range(len(answer) - 1)
        targets += answer[1:]
    tokens, fed_mask = tokens.to(device), fed_mask.to(device)
    follow = positions[example, -1:] + 1 + torch.arange(fed, device=device)
    with scoring_head(model, torch.tensor(rows), torch.tensor(cols)):
        logits = lm(input_ids=tokens, attention_mask=torch.cat([mask[example], fed_mask], 1), position_ids=follow,
                    use_cache=True, **{_cache_argument(lm): cache}).logits[0]
    rest = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets, device=device), reduction="none")
    return nll.index_add_(0, torch.tensor(rows, device=device), rest.double())


@torch.no_grad()
def shared_choice_nll(model, rows: list[Encoded], sizes: list[int], pad_id: int, *, budget: int | Budget,
                      ) -> torch.Tensor | None:
    """``[rows]`` summed NLL of each of ``choice_rows``' rows (``sizes``: each example's choice count) where its
    example's prompt could be shared, NaN elsewhere; None where the model cannot share prompts at all (detected once
    per model: not a plain causal LM, a cache other than ``DynamicCache`` of full or sliding layers, an error on the
    first try)."""
    lm = causal_lm(model)
    if not _plain_causal_lm(model) or _SHAREABLE.get(lm) is False:
        return None
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    device = next(model.parameters()).device
    out = torch.full((len(rows),), float("nan"), dtype=torch.float64, device=device)
    groups = _groups(rows, sizes)
    cost = lambda g: len(g[1]) * (len(g[0]) + max(map(len, g[1])))  # noqa: E731  the rows path's tokens
    for batch in batches(groups, cost, 1, decode_budget(model, budget.tokens)):  # the copied cache counts, as in decoding
        items = [groups[i] for i in batch]

        def run(items, _):
            nll = _batch_nll(model, items, pad_id)
            return nll if nll is not None else torch.full((sum(len(g[2]) for g in items),), float("nan"), device=device)

        try:
            nll = split_on_oom(run, items, torch.ones(1, 1), budget, join_points=None, join_items=lambda a, b: torch.cat([a, b]))
        except Exception as exc:
            if lm in _SHAREABLE or is_oom(exc):
                raise
            _SHAREABLE[lm] = False
            return None
        _SHAREABLE[lm] = True
        out[torch.tensor([i for g in items for i in g[2]], device=device)] = nll.to(out)
    return out


def choice_nll(model, rows: list[Encoded], examples, pad_id: int, *, budget: int | Budget, rows_nll) -> torch.Tensor:
    """``[1, rows]`` summed NLL of ``choice_rows``' rows for the model as it stands: shared prompts where they can be
    (``shared_choice_nll``), ``rows_nll(rows) -> [1, n]`` (the rows path) for the rest."""
    shared = shared_choice_nll(model, rows, [len(e.choices) for e in examples], pad_id, budget=budget)
    if shared is None:
        return rows_nll(rows)
    left = torch.isnan(shared).nonzero().flatten().tolist()
    if left:
        shared[left] = rows_nll([rows[i] for i in left])[0].to(shared)
    return shared.view(1, -1)
