"""The batched path evaluator: base model once, K path points stacked into the batch, per-point per-task numbers."""
from __future__ import annotations

import heapq
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .. import checks
from ..errors import ConfigError
from ..lora.paths import LoraPath, Span
from .budget import Budget, auto_budget, batches, points_per_chunk, split_on_oom
from .choices import choice_scores, gold_scores, shared_choice_scores
from .data import Encoded, Example, encode_counted, resolve_max_length
from .fields import DTYPE_CHOICES, dtype_field, max_batch_tokens_field, max_length_field
from .batch import scored_batch
from .forced import forced_pass, greedy_limit, model_accuracy, points_accuracy
from .greedy import path_accuracy
from .head import answer_nll, causal_lm
from .layer import Unrouted, inject_path
from .memory import release_freed
from .rank import choice_rows, rankable, ranked_accuracy

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EvalConfig:
    max_batch_tokens: int | None = max_batch_tokens_field()
    max_length: int | None = max_length_field()
    accuracy: bool = field(default=True, metadata={
        "help": "also decode greedily and score exact match (and, where examples carry choices, rank-classify them)"})
    progress: bool = field(default=True, metadata={"help": "show tqdm progress bars"})
    dtype: str = dtype_field()
    share_prefix: bool = field(default=True, metadata={"help": "run layers before the first adapted one once for all points"})

    def __post_init__(self):
        checks.choice("dtype", self.dtype, DTYPE_CHOICES)
        checks.optional_count("max_batch_tokens", self.max_batch_tokens)
        checks.optional_count("max_length", self.max_length, 2)


@dataclass
class TaskCurve:
    """Loss (mean NLL per answer token, over the whole set) and accuracy (the task's metric) at each t; where every
    example carries its choices, also rank-classification accuracy (the lowest-NLL choice, ``rank.py``)."""

    loss: list[float]
    accuracy: list[float] | None = None
    examples: int = 0
    metric: str = "exact_match"
    cut_prompts: int = 0  # prompts cut from the left to fit max_length
    rank_accuracy: list[float] | None = None


@dataclass
class PathEvaluation:
    t: list[float]
    tasks: dict[str, TaskCurve]


def points_nll(model, batch, k: int, repeat=None) -> torch.Tensor:
    """``[k·b]`` summed answer NLL per row when the batch is repeated point-major for k path points.

    With a ``repeat`` from ``shared_prefix`` the batch enters the model once and is repeated at the first adapted layer.
    """
    ids, mask, rows, cols, targets = batch
    b = ids.shape[0]
    offsets = (torch.arange(k, device=ids.device) * b).repeat_interleave(len(rows))
    scored = {"rows": rows.repeat(k) + offsets, "cols": cols.repeat(k), "n_rows": k * b}
    if repeat is not None:  # rows: k·b from the first adapted layer on
        with repeat.expanded(k, b):
            return answer_nll(model, ids, mask, targets.repeat(k), **scored)
    return answer_nll(model, ids.repeat(k, 1), mask.repeat(k, 1), targets.repeat(k), **scored)


def prefix_probe(model, encoded: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int):
    """A function of a ``Repeat`` (None: no shared prefix) giving the answer NLL of the two shortest examples at the
    first and last point: what ``shared_prefix`` compares before trusting its hooks on this model."""
    items = heapq.nsmallest(2, encoded, key=lambda e: len(e.ids)) * (2 if len(encoded) == 1 else 1)
    points, device = coeffs[[0, -1]], next(model.parameters()).device

    def run(repeat):
        with injected.points(points, len(items)):
            return points_nll(model, scored_batch(items, pad_id, device), 2, repeat)

    return run


def _chunk_nll(model, items: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int, budget: Budget, repeat) -> torch.Tensor:
    """``[kc, b]`` summed answer NLL of each item at each point in ``coeffs``; on out-of-memory, split and retry."""
    device = next(model.parameters()).device

    def run(items, coeffs):
        with injected.points(coeffs, len(items)):
            return points_nll(model, scored_batch(items, pad_id, device), len(coeffs), repeat).view(len(coeffs), -1)

    return split_on_oom(run, items, coeffs, budget, join_points=lambda a, b: torch.cat([a, b]),
                        join_items=lambda a, b: torch.cat([a, b], 1))


def path_nll(model, encoded: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int, budget: int | Budget,
             bar=None, repeat=None) -> torch.Tensor:
    """``[K, N]`` summed answer NLL of each of the N ``encoded`` at each path point (row of ``coeffs``), examples
    batched by length within the token budget and the points chunked to fit it."""
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    device = next(model.parameters()).device
    k = coeffs.shape[0]
    out = torch.zeros(k, len(encoded), dtype=torch.float64, device=device)  # filled on the device: no host sync per chunk
    for batch in batches(encoded, lambda e: len(e.ids), 1, budget.tokens):
        items = [encoded[i] for i in batch]
        columns = torch.tensor(batch, device=device)
        width = max(len(e.ids) for e in items)
        start = 0
        while start < k:  # the chunk size is recomputed each time: the budget may have shrunk
            stop = min(k, start + points_per_chunk(len(items), width, budget.tokens))
            out[start:stop, columns] = _chunk_nll(model, items, coeffs[start:stop], injected, pad_id=pad_id, budget=budget,
                                                  repeat=repeat)
            if bar is not None:
                bar.update((stop - start) * len(items))
            start = stop
    return out


def path_losses(model, encoded: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int, budget: int | Budget,
                bar=None, repeat=None) -> torch.Tensor:
    """``[K]`` token-weighted mean answer NLL of each path point (row of ``coeffs``) on ``encoded``."""
    n_tokens = sum(len(e.ids) - e.n_prompt for e in encoded)
    return path_nll(model, encoded, coeffs, injected, pad_id=pad_id, budget=budget, bar=bar, repeat=repeat).sum(1) / n_tokens


def _check_door(model, tokenizer, tasks, config, span=None) -> None:
    """The Python API's arguments, by type, before any of them reaches torch (a wrong one fails here in one line)."""
    checks.instance("model", model, torch.nn.Module, "a model (modeconn.load_base(name)[0])")
    if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
        raise ConfigError(f"tokenizer must be the base's tokenizer (modeconn.load_base(name)[1]), got "
                                 f"{type(tokenizer).__name__}")
    if span is not None:
        checks.instance("path", span, Span, "a LoraPath or Span (modeconn.linear_path(a, b))")
    if not isinstance(tasks, dict) or not all(isinstance(n, str) and isinstance(v, (list, tuple)) and all(
            isinstance(e, Example) for e in v) for n, v in tasks.items()):
        raise ConfigError("tasks must map task names to lists of Example (modeconn.load_task_data([...])), got "
                                 f"{checks.short(tasks)}")
    checks.instance("config", config, EvalConfig, "an EvalConfig")


@torch.no_grad()
def evaluate_points(model, tokenizer, span: Span, coeffs: torch.Tensor, tasks: dict[str, list[Example]],
                    config: EvalConfig = EvalConfig(), metrics: dict[str, str] | None = None,
                    encoded: dict | None = None) -> dict[str, TaskCurve]:
    """Score the points ``Σ_i coeffs[k, i] · θ_i`` of ``span`` on every task, all points batched together: loss, and
    greedy decoding scored by each task's metric (``metrics[name]``, exact match by default), and rank classification
    where every example of a task has its choices. ``encoded``: each task's ``encode_counted`` at the config's
    max_length, where the caller has it already (a Study encodes each task once)."""
    from .prefix import shared_prefix

    _check_door(model, tokenizer, tasks, config, span=span)
    metrics = metrics or {}
    model.eval()
    coeffs = torch.as_tensor(coeffs).float()
    out = {}
    budget = Budget(config.max_batch_tokens or auto_budget(model))
    max_length = resolve_max_length(model, config.max_length)
    prepared = encoded if encoded is not None else {  # refuse first
        name: encode_counted(tokenizer, examples, max_length) for name, examples in tasks.items()}
    ranked = {name: choice_rows(tokenizer, examples, max_length) for name, examples in tasks.items()
              if config.accuracy and rankable(examples)}
    work = len(coeffs) * (sum(len(ex) for ex in tasks.values()) * (2 if config.accuracy else 1)
                          + sum(len(rows) for rows in ranked.values()))
    with inject_path(model, span) as injected, tqdm(total=work, desc="points × examples", disable=not config.progress, leave=False) as bar:
        for name, examples in tasks.items():
            encoded, cut = prepared[name]
            metric = metrics.get(name, "exact_match")
            loss = rank = acc = None
            if name in ranked:  # each prompt once per point: the choices' NLLs, the gold rows' loss, greedy answers
                loss, rank, acc = _one_pass(model, tokenizer, examples, encoded, rows=ranked[name],
                                            points=(coeffs, injected), budget=budget, metric=metric, bar=bar)
            if loss is None or (name in ranked and rank is None):
                probe = prefix_probe(model, encoded, coeffs, injected, pad_id=tokenizer.pad_token_id)
                with (shared_prefix(model, span.modules, probe) if config.share_prefix else nullcontext()) as repeat:
                    loss = path_losses(model, encoded, coeffs, injected, pad_id=tokenizer.pad_token_id, budget=budget,
                                       bar=bar, repeat=repeat)
                    if name in ranked and rank is None:
                        rank = ranked_accuracy(path_nll(model, ranked[name], coeffs, injected, budget=budget, bar=bar,
                                                        pad_id=tokenizer.pad_token_id, repeat=repeat), examples)
            if config.accuracy and acc is None:
                acc = path_accuracy(model, tokenizer, list(zip(examples, encoded)), (coeffs, injected), budget=budget.tokens,
                                    bar=bar, metric=metric)
            out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric, cut_prompts=cut,
                                  rank_accuracy=rank.tolist() if rank is not None else None)
            release_freed()  # each task's passes free their own shapes: the heap keeps none of it for the next
    return out


def _one_pass(model, tokenizer, examples: list[Example], encoded: list[Encoded], *, rows: list[Encoded], points: tuple,
              budget: Budget, metric: str, bar) -> tuple:
    """``(loss [K], rank accuracy [K], accuracy [K])`` of a rankable task at the path ``points`` from one pass over its
    shared prompts (``choices.py``), each None where that pass cannot give it (then the loss pass, the rows or
    ``generate`` do, as before): the rank from every choice's NLL, the loss and known answers from the gold rows, the
    other answers decoded greedily from each prompt's cache."""
    coeffs, injected = points
    pad = tokenizer.pad_token_id
    decode = greedy_limit(model, tokenizer, encoded)
    plain = decode is not None
    scores = shared_choice_scores(model, rows, [len(e.choices) for e in examples], pad, budget=budget, decode=decode,
                                  points=points)
    if scores is None or bool(torch.isnan(scores.nll).any()):
        return None, None, None
    bar.update(len(coeffs) * len(rows))
    rank = ranked_accuracy(scores.nll, examples)
    gold = gold_scores(scores.nll, scores.misses, rows, examples, plain=plain)
    if gold is None:
        return None, rank, None
    bar.update(len(coeffs) * len(examples))
    if scores.greedy is None or bool((scores.greedy[:, :, 0] < 0).any()):
        return gold[0], rank, None
    bar.update(len(coeffs) * len(examples))
    return gold[0], rank, points_accuracy(tokenizer, examples, encoded, known=gold[1], decoded=scores.greedy.cpu(),
                                          metric=metric)


def evaluate_path(model, tokenizer, path: LoraPath, ts: list[float], tasks: dict[str, list[Example]],
                  config: EvalConfig = EvalConfig(), metrics: dict[str, str] | None = None) -> PathEvaluation:
    """Score every t of ``path`` on every task (see ``evaluate_points``)."""
    _check_door(model, tokenizer, tasks, config, span=path)
    if not isinstance(path, LoraPath):
        raise ConfigError(f"path must be a LoraPath (modeconn.linear_path(a, b)), got {type(path).__name__}")
    ts = [checks.finite("t", t, 0, 1) for t in checks.instance("ts", ts, (list, tuple), "a list of t in [0, 1]")]
    return PathEvaluation(list(ts), evaluate_points(model, tokenizer, path, path.coefficients(ts), tasks=tasks, config=config,
                                                    metrics=metrics))


@torch.no_grad()
def evaluate_model(model, tokenizer, tasks: dict[str, list[Example]], config: EvalConfig = EvalConfig(),
                   metrics: dict[str, str] | None = None, transform=None) -> dict[str, TaskCurve]:
    """Score a model as it stands (e.g. a PeftModel with its active adapter): one point, the same loss and accuracies.
    ``transform`` rewrites the encoded examples (and choice rows) first (prompt methods prepend their virtual tokens).
    A rankable task runs each prompt once (``choices.py``): its gold choice's rows give the loss, the prompt's cache
    continues into the greedy answer, and the choices give the rank accuracy."""
    _check_door(model, tokenizer, tasks, config)
    was_training = model.training
    model.eval()
    single, as_it_stands = torch.ones(1, 1), Unrouted()
    out = {}
    max_length = resolve_max_length(causal_lm(model), config.max_length)
    for name, examples in tasks.items():
        encoded, cut = encode_counted(tokenizer, examples, max_length)
        if transform is not None:
            encoded = transform(encoded)
        budget = config.max_batch_tokens or auto_budget(model)
        metric = (metrics or {}).get(name, "exact_match")
        rank = forced = decoded = None
        if config.accuracy and rankable(examples):
            rows = choice_rows(tokenizer, examples, max_length)
            as_rows = lambda part: path_nll(model, part, single, as_it_stands,  # noqa: E731
                                            pad_id=tokenizer.pad_token_id, budget=budget)
            if transform is not None:  # prompt methods rewrite the rows: rows path
                nll = as_rows(transform(rows))
            else:  # shared prompts: the gold rows stand in for the forced pass below, and the prompts' caches decode
                decode = greedy_limit(model, tokenizer, encoded)
                plain = decode is not None
                nll, misses, decoded = choice_scores(model, rows, examples, tokenizer.pad_token_id, budget=budget,
                                                     rows_nll=as_rows, decode=decode)
                gold = gold_scores(nll, misses, rows, examples, plain=plain)
                forced = (gold[0], gold[1][0]) if gold else None
            rank = ranked_accuracy(nll, examples)
        if config.accuracy:  # one pass gives the loss and the answers greedy decoding would reproduce; the rest decode
            loss, known = forced or forced_pass(model, encoded, tokenizer.pad_token_id, budget)
            acc = model_accuracy(model, tokenizer, examples, encoded, known=known, budget=budget, metric=metric,
                                 decoded=decoded[0] if decoded is not None else None)
        else:
            loss, acc = path_losses(model, encoded, single, as_it_stands, pad_id=tokenizer.pad_token_id, budget=budget), None
        out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric, cut_prompts=cut,
                              rank_accuracy=rank.tolist() if rank is not None else None)
    model.train(was_training)
    return out
