"""Choice NLLs with each prompt run once: the prompt's KV cache is copied to its choices, which run together after it.

The NLLs are those of the rows path (``path_nll`` on ``choice_rows``): the same tokens (answer + eos) after the same
``bos + prompt``, summed per row. Prompts are left-padded with explicit ``position_ids`` from the mask, so each choice
continues at its own prompt's real end; the last prompt position's logits score each choice's first token. The same
logits also tell, per row, how many answer tokens are not their argmax (``misses``): the gold choice's row is then the
teacher-forced loss pass of ``forced.py`` (its NLL the loss, zero misses meaning greedy decoding emits the answer);
and, asked for ``decode`` tokens, a copy of each prompt's cache continues greedily from the same last-position logits
(the argmax, pad after eos, as ``generate`` with ``do_sample=False``). So the evaluation of a rankable task runs each
prompt once for its loss, rank accuracy and greedy answers: for a model as it stands (training's evaluation) and at K
path points at once, the batch laid out point-major as in the loss pass (``layer.py``), point k's choices reading
point k's prompt cache.
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
from .layer import Unrouted

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


def _greedy(model, cache, first: torch.Tensor, *, mask: torch.Tensor, positions: torch.Tensor, decode: tuple[int, int],
            pad_id: int, run_points) -> torch.Tensor:
    """``[rows, max_new]`` greedy tokens after the prompts held in ``cache``, ``first`` the argmax at their last
    position: each step feeds the last token and takes the argmax, a finished row (eos emitted) gets pad, as
    ``generate(do_sample=False)`` does; stops when every row has finished, the rest pad. ``run_points()``: the path
    points' routing for a forward of these rows."""
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
        with run_points(), scoring_head(model, *scored):
            logits = lm(input_ids=token[:, None], attention_mask=mask, position_ids=positions[:, -1:] + step,
                        use_cache=True, **{_cache_argument(lm): cache}).logits[0]
        token = torch.where(done, torch.full_like(token, pad_id), logits.argmax(-1))
        out[:, step] = token
        done = done | (token == eos)
    return out


def _batch_scores(model, items: list, pad_id: int, *, decode: tuple[int, int] | None, points: tuple,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """``[K, rows]`` summed NLL and ``[K, rows]`` argmax misses of every choice of ``items`` (prompt, answers, row
    span, example) at each of the K path points of ``points`` (coefficients, and the injected path that routes them:
    the batch is point-major, K blocks of the same rows), and with ``decode`` (max new tokens, eos) the items'
    ``[K, items, max_new]`` greedy tokens; None if the batch's length exceeds a sliding window."""
    lm = causal_lm(model)
    device = next(model.parameters()).device
    coeffs, injected = points
    k, n = len(coeffs), len(items)
    counts = torch.tensor([len(item[1]) for item in items])
    width = max(len(item[0]) for item in items)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, item in enumerate(items):
        ids[r, width - len(item[0]) :], mask[r, width - len(item[0]) :] = torch.tensor(item[0]), 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    ids, mask, positions = ids.repeat(k, 1).to(device), mask.repeat(k, 1).to(device), positions.repeat(k, 1).to(device)
    prompts = lambda: injected.points(coeffs, n)  # noqa: E731  a block of K·n prompt rows
    with prompts(), scoring_head(model, torch.arange(k * n), torch.full((k * n,), width - 1, dtype=torch.long)):
        out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)

    answers = [answer for item in items for answer in item[1]]
    fed = max(len(a) for a in answers) - 1  # every answer token but the last (eos) is fed: its logits score the next
    if not _shareable_cache(cache, width + max(fed, decode[0] - 1 if decode else 0)):
        return None
    argmax = out.logits[0].argmax(-1)  # [K·n]
    # the choices below extend the prompts' cache in place: greedy decoding continues a copy of it
    greedy = (_greedy(model, copy.deepcopy(cache), argmax, mask=mask, positions=positions, decode=decode, pad_id=pad_id,
                      run_points=prompts).view(k, n, -1) if decode else None)
    m = len(answers)
    # each choice row's prompt row, point-major: point j's rows read point j's prompts
    example = (torch.arange(k)[:, None] * n + torch.repeat_interleave(torch.arange(n), counts)[None, :]).flatten().to(device)
    first = torch.tensor([a[0] for a in answers], device=device).repeat(k)
    nll = torch.nn.functional.cross_entropy(out.logits[0].float()[example], first, reduction="none").double()
    misses = (argmax[example] != first).long()
    if fed == 0:
        return nll.view(k, m), misses.view(k, m), greedy
    cache.batch_select_indices(example)  # batch_repeat_interleave, with a count per example
    tokens = torch.full((m, fed), pad_id, dtype=torch.long)
    fed_mask = torch.zeros_like(tokens)
    rows, cols, targets = [], [], []
    for r, answer in enumerate(answers):
        tokens[r, : len(answer) - 1], fed_mask[r, : len(answer) - 1] = torch.tensor(answer[:-1], dtype=torch.long), 1
        rows += [r] * (len(answer) - 1)
        cols += range(len(answer) - 1)
        targets += answer[1:]
    tokens, fed_mask = tokens.repeat(k, 1).to(device), fed_mask.repeat(k, 1).to(device)
    rows = torch.tensor(rows)
    rows = (rows.repeat(k) + torch.arange(k).repeat_interleave(len(rows)) * m).to(device)
    cols = torch.tensor(cols).repeat(k)
    follow = positions[example, -1:] + 1 + torch.arange(fed, device=device)
    with injected.points(coeffs, m), scoring_head(model, rows, cols):
        logits = lm(input_ids=tokens, attention_mask=torch.cat([mask[example], fed_mask], 1), position_ids=follow,
                    use_cache=True, **{_cache_argument(lm): cache}).logits[0]
    targets = torch.tensor(targets, device=device).repeat(k)
    rest = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    nll.index_add_(0, rows, rest.double())
    misses.index_add_(0, rows, (logits.argmax(-1) != targets).long())
    return nll.view(k, m), misses.view(k, m), greedy


class SharedScores(NamedTuple):
    """What one pass over shared prompts gives at K path points: per point and row its summed NLL (NaN where its
    prompt could not be shared) and its argmax misses (-1 there); per point and example its greedy tokens (None unless
    asked for; rows of -1 where not shared)."""
    nll: torch.Tensor
    misses: torch.Tensor | None
    greedy: torch.Tensor | None


@torch.no_grad()
def shared_choice_scores(model, rows: list[Encoded], sizes: list[int], pad_id: int, *, budget: int | Budget,
                         decode: tuple[int, int] | None = None, points: tuple | None = None) -> SharedScores | None:
    """``SharedScores`` (``[K, rows]``, ``[K, rows]``, ``[K, examples, max_new]``) of ``choice_rows``' rows
    (``sizes``: each example's choice count) at the path points ``points`` (coefficients, injected path; default the
    model as it stands): summed NLL, how many answer tokens (eos included) are not the argmax of the logits scoring
    them, and with ``decode`` (max new tokens, eos) each example's greedy tokens; None where the model cannot share
    prompts at all (detected once per model: not a plain causal LM, a cache other than ``DynamicCache`` of full or
    sliding layers, an error on the first try)."""
    lm = causal_lm(model)
    if not _plain_causal_lm(model) or _SHAREABLE.get(lm) is False:
        return None
    coeffs, injected = points or (torch.ones(1, 1), Unrouted())
    k = len(coeffs)
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    device = next(model.parameters()).device
    out = torch.full((k, len(rows)), float("nan"), dtype=torch.float64, device=device)
    misses = torch.full((k, len(rows)), -1, dtype=torch.long, device=device)
    new = decode[0] if decode else 0
    greedy = torch.full((k, len(sizes), new), -1, dtype=torch.long, device=device) if decode else None
    groups = _groups(rows, sizes)
    cost = lambda g: len(g[1]) * (len(g[0]) + max(map(len, g[1]))) + len(g[0]) + new  # noqa: E731  rows + the decoding copy
    for batch in batches(groups, cost, 1, decode_budget(model, budget.tokens)):  # the copied cache counts, as in decoding
        items = [groups[i] for i in batch]
        where = torch.tensor([i for g in items for i in g[2]], device=device)
        examples = torch.tensor([g[3] for g in items], device=device)

        def run(items, coeffs):
            scores = _batch_scores(model, items, pad_id, decode=decode, points=(coeffs, injected))
            if scores is not None:
                return scores
            kc, n = len(coeffs), sum(len(g[2]) for g in items)
            unshared = torch.full((kc, len(items), new), -1, dtype=torch.long, device=device) if decode else None
            return (torch.full((kc, n), float("nan"), device=device), torch.full((kc, n), -1, dtype=torch.long, device=device),
                    unshared)

        def join(axis):
            return lambda a, b: (torch.cat([a[0], b[0]], axis), torch.cat([a[1], b[1]], axis),
                                 torch.cat([a[2], b[2]], axis) if a[2] is not None else None)

        start = 0
        while start < k:  # points chunked to the budget like the loss pass; recomputed, as the budget may shrink
            stop = min(k, start + max(1, decode_budget(model, budget.tokens) // max(1, sum(map(cost, items)))))
            try:
                nll, wrong, tokens = split_on_oom(run, items, coeffs[start:stop], budget, join_points=join(0),
                                                  join_items=join(1))
            except Exception as exc:
                if lm in _SHAREABLE or is_oom(exc):
                    raise
                _SHAREABLE[lm] = False
                return None
            _SHAREABLE[lm] = True
            out[start:stop, where], misses[start:stop, where] = nll.to(out), wrong.to(misses)
            if decode:
                greedy[start:stop, examples] = tokens.to(greedy)
            start = stop
    return SharedScores(out, misses, greedy)


def choice_scores(model, rows: list[Encoded], examples, pad_id: int, *, budget: int | Budget, rows_nll,
                  decode: tuple[int, int] | None = None, points: tuple | None = None) -> SharedScores:
    """``SharedScores`` of ``choice_rows``' rows at ``points`` (default: the model as it stands) with every NLL filled
    (``[K, rows]``): the shared prompts' where they could be shared, ``rows_nll(rows) -> [K, n]`` (the rows path) for
    the rest; ``misses`` and ``greedy`` None where no prompt could be shared."""
    scores = shared_choice_scores(model, rows, [len(e.choices) for e in examples], pad_id, budget=budget, decode=decode,
                                  points=points)
    if scores is None:
        return SharedScores(rows_nll(rows), None, None)
    left = torch.isnan(scores.nll[0]).nonzero().flatten().tolist()
    if left:
        scores.nll[:, left] = rows_nll([rows[i] for i in left]).to(scores.nll)
    return scores


def choice_nll(model, rows: list[Encoded], examples, pad_id: int, *, budget: int | Budget, rows_nll) -> torch.Tensor:
    """``[1, rows]`` summed NLL of ``choice_rows``' rows for the model as it stands (``choice_scores``' NLLs)."""
    return choice_scores(model, rows, examples, pad_id, budget=budget, rows_nll=rows_nll).nll


def gold_scores(nll: torch.Tensor, misses: torch.Tensor | None, rows: list[Encoded], examples, *, plain: bool,
                ) -> tuple[torch.Tensor, list[list[bool]]] | None:
    """What ``forced.forced_pass`` gives, at each of K points, read from the gold choice's rows: ``[K]`` token-weighted
    mean answer NLL and, per point and example, whether greedy decoding emits its answer + eos (no miss, and ``plain``
    greedy decoding); None unless every gold row was shared (a row run on its own has no misses counted).
    ``choice_rows`` encodes the gold row as ``encode_counted`` encodes the example: the forced pass's tokens."""
    if misses is None:
        return None
    starts = torch.tensor([0] + [len(e.choices) for e in examples]).cumsum(0)[:-1]
    gold = starts + torch.tensor([e.choices.index(e.answer) for e in examples])
    wrong = misses.cpu()[:, gold]
    if bool((wrong < 0).any()):
        return None
    tokens = sum(len(rows[i].ids) - rows[i].n_prompt for i in gold.tolist())
    loss = nll[:, gold.to(nll.device)].sum(1) / tokens
    return loss, [[plain and int(w) == 0 for w in point] for point in wrong]
