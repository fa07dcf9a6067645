"""Choice NLLs with each prompt run once: the prompt's KV cache is copied to its choices, which run together after it.

The NLLs are those of the rows path (``path_nll`` on ``choice_rows``): the same tokens (answer + eos) after the same
``bos + prompt``, summed per row. Prompts are left-padded with explicit ``position_ids`` from the mask, so each choice
continues at its own prompt's real end; the last prompt position's logits score each choice's first token. The same
logits also tell, per row, how many answer tokens are not their argmax (``misses``): the gold choice's row is then the
teacher-forced loss pass of ``forced.py`` (its NLL the loss, zero misses meaning greedy decoding emits the answer);
and, asked for ``decode`` tokens, a copy of each prompt's cache continues greedily from the same last-position logits
(the argmax, pad after eos, as ``generate`` with ``do_sample=False``). So training's evaluation of a rankable task runs
each prompt once for its loss, rank accuracy and greedy answers.
"""
from __future__ import annotations

import copy
import inspect
import weakref
from typing import NamedTuple

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from .budget import Budget, batches, decode_budget, is_oom, split_on_oom
from .data import Encoded
from .head import causal_lm, scoring_head

_SHAREABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per model: whether its first try worked


class Unshareable(Exception):
    """The model's cache cannot be copied per choice (a hybrid or recurrent cache, a model that refuses the inputs)."""


def _groups(rows: list[Encoded], sizes: list[int]) -> list[tuple[tuple[int, ...], list[tuple[int, ...]], range, int]]:
    """Per example: its prompt, its choices' answer tokens, its row indices and its index, where all its rows share one
    prompt (``choice_rows`` cuts a long prompt by each choice's length, and cuts that differ cannot share a prompt)."""
    out, start = [], 0
    for example, size in enumerate(sizes):
        span = range(start, start + size)
        start += size
        prompts = {rows[i].ids[: rows[i].n_prompt] for i in span}
        if len(prompts) == 1 and rows[span[0]].n_prompt > 0:
            out.append((prompts.pop(), [rows[i].ids[rows[i].n_prompt :] for i in span], span, example))
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


def _greedy(model, cache, first: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, decode: tuple[int, int],
            pad_id: int) -> torch.Tensor:
    """``[items, max_new]`` greedy tokens after the prompts held in ``cache``, ``first`` the argmax at their last
    position: each step feeds the last token and takes the argmax, a finished row (eos emitted) gets pad, as
    ``generate(do_sample=False)`` does; stops when every row has finished, the rest pad."""
    lm = causal_lm(model)
    max_new, eos = decode
    n = len(first)
    out = torch.full((n, max_new), pad_id, dtype=torch.long, device=first.device)
    token, done = first, first == eos
    out[:, 0] = first
    scored = (torch.arange(n), torch.zeros(n, dtype=torch.long))
    for step in range(1, max_new):
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        with scoring_head(model, *scored):
            logits = lm(input_ids=token[:, None], attention_mask=mask, position_ids=positions[:, -1:] + step,
                        use_cache=True, **{_cache_argument(lm): cache}).logits[0]
        token = torch.where(done, torch.full_like(token, pad_id), logits.argmax(-1))
        out[:, step] = token
        done = done | (token == eos)
    return out


def _batch_scores(model, items: list, pad_id: int, decode: tuple[int, int] | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """``[rows]`` summed NLL and ``[rows]`` argmax misses of every choice of ``items`` (prompt, answers, row span,
    example), and with ``decode`` (max new tokens, eos) each item's ``[max_new]`` greedy tokens; None if the batch's
    length exceeds a sliding window."""
    lm = causal_lm(model)
    device = next(model.parameters()).device
    counts = torch.tensor([len(item[1]) for item in items])
    width = max(len(item[0]) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, item in enumerate(items):
        ids[r, width - len(item[0]) :], mask[r, width - len(item[0]) :] = torch.tensor(item[0]), 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    last = torch.full((len(items),), width - 1, dtype=torch.long)
    with scoring_head(model, torch.arange(len(items)), last):
        out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)

    answers = [answer for item in items for answer in item[1]]
    fed = max(len(a) for a in answers) - 1  # every answer token but the last (eos) is fed: its logits score the next
    if not _shareable_cache(cache, width + max(fed, decode[0] - 1 if decode else 0)):
        return None
    argmax = out.logits[0].argmax(-1)
    # the choices below extend the prompts' cache in place: greedy decoding continues a copy of it
    greedy = _greedy(model, copy.deepcopy(cache), argmax, mask, positions, decode, pad_id) if decode else None
    example = torch.repeat_interleave(torch.arange(len(items)), counts).to(device)
    first = torch.tensor([a[0] for a in answers], device=device)
    nll = torch.nn.functional.cross_entropy(out.logits[0].float()[example], first, reduction="none").double()
    misses = (argmax[example] != first).long()
    if fed == 0:
        return nll, misses, greedy
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
    targets = torch.tensor(targets, device=device)
    rest = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    rows = torch.tensor(rows, device=device)
    return (nll.index_add_(0, rows, rest.double()), misses.index_add_(0, rows, (logits.argmax(-1) != targets).long()),
            greedy)


class SharedScores(NamedTuple):
    """What one pass over shared prompts gives: per row its summed NLL (NaN where its prompt could not be shared) and
    its argmax misses (-1 there); per example its greedy tokens (None unless asked for; -1 rows where not shared)."""
    nll: torch.Tensor
    misses: torch.Tensor
    greedy: torch.Tensor | None


@torch.no_grad()
def shared_choice_scores(model, rows: list[Encoded], sizes: list[int], pad_id: int, *, budget: int | Budget,
                         decode: tuple[int, int] | None = None) -> SharedScores | None:
    """``SharedScores`` of ``choice_rows``' rows (``sizes``: each example's choice count): summed NLL, how many answer
    tokens (eos included) are not the argmax of the logits scoring them, and with ``decode`` (max new tokens, eos)
    each example's greedy tokens; None where the model cannot share prompts at all (detected once per model: not a
    plain causal LM, a cache other than ``DynamicCache`` of full or sliding layers, an error on the first try)."""
    lm = causal_lm(model)
    if not _plain_causal_lm(model) or _SHAREABLE.get(lm) is False:
        return None
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    device = next(model.parameters()).device
    out = torch.full((len(rows),), float("nan"), dtype=torch.float64, device=device)
    misses = torch.full((len(rows),), -1, dtype=torch.long, device=device)
    greedy = torch.full((len(sizes), decode[0]), -1, dtype=torch.long, device=device) if decode else None
    groups = _groups(rows, sizes)
    new = decode[0] if decode else 0
    cost = lambda g: len(g[1]) * (len(g[0]) + max(map(len, g[1]))) + len(g[0]) + new  # noqa: E731  rows + the decoding copy
    for batch in batches(groups, cost, 1, decode_budget(model, budget.tokens)):  # the copied cache counts, as in decoding
        items = [groups[i] for i in batch]

        def run(items, _):
            scores = _batch_scores(model, items, pad_id, decode)
            if scores is not None:
                return scores
            n = sum(len(g[2]) for g in items)
            unshared = torch.full((len(items), new), -1, dtype=torch.long, device=device) if decode else None
            return (torch.full((n,), float("nan"), device=device), torch.full((n,), -1, dtype=torch.long, device=device),
                    unshared)

        def join(a, b):
            return (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]),
                    torch.cat([a[2], b[2]]) if a[2] is not None else None)

        try:
            nll, wrong, tokens = split_on_oom(run, items, torch.ones(1, 1), budget, join_points=None, join_items=join)
        except Exception as exc:
            if lm in _SHAREABLE or is_oom(exc):
                raise
            _SHAREABLE[lm] = False
            return None
        _SHAREABLE[lm] = True
        where = torch.tensor([i for g in items for i in g[2]], device=device)
        out[where], misses[where] = nll.to(out), wrong.to(misses)
        if decode:
            greedy[torch.tensor([g[3] for g in items], device=device)] = tokens.to(greedy)
    return SharedScores(out, misses, greedy)


def shared_choice_nll(model, rows: list[Encoded], sizes: list[int], pad_id: int, *, budget: int | Budget,
                      ) -> torch.Tensor | None:
    """The NLLs of ``shared_choice_scores``: NaN where a prompt could not be shared, None where no prompt can be."""
    scores = shared_choice_scores(model, rows, sizes, pad_id, budget=budget)
    return None if scores is None else scores.nll


def choice_scores(model, rows: list[Encoded], examples, pad_id: int, *, budget: int | Budget, rows_nll,
                  decode: tuple[int, int] | None = None) -> SharedScores:
    """``SharedScores`` of ``choice_rows``' rows for the model as it stands, with every NLL filled (``[1, rows]``): the
    shared prompts' where they could be shared, ``rows_nll(rows) -> [1, n]`` (the rows path) for the rest; ``misses``
    and ``greedy`` None where no prompt could be shared."""
    scores = shared_choice_scores(model, rows, [len(e.choices) for e in examples], pad_id, budget=budget, decode=decode)
    if scores is None:
        return SharedScores(rows_nll(rows), None, None)
    left = torch.isnan(scores.nll).nonzero().flatten().tolist()
    if left:
        scores.nll[left] = rows_nll([rows[i] for i in left])[0].to(scores.nll)
    return scores._replace(nll=scores.nll.view(1, -1))


def choice_nll(model, rows: list[Encoded], examples, pad_id: int, *, budget: int | Budget, rows_nll) -> torch.Tensor:
    """``[1, rows]`` summed NLL of ``choice_rows``' rows for the model as it stands (``choice_scores``' NLLs)."""
    return choice_scores(model, rows, examples, pad_id, budget=budget, rows_nll=rows_nll).nll


def gold_scores(nll: torch.Tensor, misses: torch.Tensor | None, rows: list[Encoded], examples, plain: bool,
                ) -> tuple[torch.Tensor, list[bool]] | None:
    """What ``forced.forced_pass`` gives, read from the gold choice's rows: ``[1]`` token-weighted mean answer NLL and,
    per example, whether greedy decoding emits its answer + eos (no miss, and ``plain`` greedy decoding); None unless
    every gold row was shared (a row run on its own has no misses counted). ``choice_rows`` encodes the gold row as
    ``encode_counted`` encodes the example, so these are the same tokens as the forced pass's."""
    if misses is None:
        return None
    starts = torch.tensor([0] + [len(e.choices) for e in examples]).cumsum(0)[:-1]
    gold = starts + torch.tensor([e.choices.index(e.answer) for e in examples])
    wrong = misses.cpu()[gold]
    if bool((wrong < 0).any()):
        return None
    tokens = sum(len(rows[i].ids) - rows[i].n_prompt for i in gold.tolist())
    loss = nll[0, gold.to(nll.device)].sum().view(1) / tokens
    return loss, [plain and int(w) == 0 for w in wrong]
