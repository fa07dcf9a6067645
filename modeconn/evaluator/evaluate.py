"""The batched path evaluator: base model once, K path points stacked into the batch, per-point per-task numbers."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..errors import ConfigError
from ..lora.paths import LoraPath, Span
from .budget import Budget, auto_budget, batches, is_oom, point_chunks, points_per_chunk
from .data import Encoded, Example, encode
from .layer import Unrouted, inject_path
from .scoring import get_scorer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EvalConfig:
    max_batch_tokens: int | None = field(default=None, metadata={
        "help": "padded tokens per forward pass (points × examples × length); None: automatic (see auto_budget)"})
    max_length: int = field(default=256, metadata={"help": "tokens per example; prompts are cut from the left"})
    accuracy: bool = field(default=True, metadata={"help": "also decode greedily and score exact match"})
    progress: bool = field(default=True, metadata={"help": "show tqdm progress bars"})
    dtype: str = field(default="float32", metadata={"help": "float32, or bfloat16 / float16 autocast on the model's device"})
    share_prefix: bool = field(default=True, metadata={"help": "run layers before the first adapted one once for all points"})

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}")


@dataclass
class TaskCurve:
    """Loss (mean NLL per answer token, over the whole set) and accuracy (the task's metric) at each t."""

    loss: list[float]
    accuracy: list[float] | None = None
    examples: int = 0
    metric: str = "exact_match"


@dataclass
class PathEvaluation:
    t: list[float]
    tasks: dict[str, TaskCurve]


def _answer_nll(model, ids, mask, targets, positions) -> torch.Tensor:
    """Summed NLL of the answer tokens per row; the LM head runs only at the scored positions."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel wraps the LM
    hidden = lm.base_model(input_ids=ids, attention_mask=mask, use_cache=False)[0]  # rows: k·b even with a shared prefix
    rows, cols = positions
    logits = lm.get_output_embeddings()(hidden[rows, cols]).float()
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return torch.zeros(hidden.shape[0], dtype=torch.float64, device=ids.device).index_add_(0, rows, nll.double())


def scored_batch(items: list[Encoded], pad_id: int, device):
    """Right-padded ids and mask, and the (row, position) → target of every scored (answer + eos) token."""
    width = max(len(e.ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    rows, cols, targets = [], [], []
    for r, e in enumerate(items):
        ids[r, : len(e.ids)] = torch.tensor(e.ids)
        mask[r, : len(e.ids)] = 1
        for p in range(e.n_prompt - 1, len(e.ids) - 1):  # position p predicts token p + 1
            rows.append(r), cols.append(p), targets.append(e.ids[p + 1])
    pinned = torch.device(device).type == "cuda"
    move = lambda t: (t.pin_memory() if pinned else t).to(device, non_blocking=pinned)  # noqa: E731
    as_tensor = lambda v: move(torch.tensor(v, dtype=torch.long))  # noqa: E731
    return move(ids), move(mask), as_tensor(rows), as_tensor(cols), as_tensor(targets)


def points_nll(model, batch, k: int, repeat=None) -> torch.Tensor:
    """``[k·b]`` summed answer NLL per row when the batch is repeated point-major for k path points.

    With a ``repeat`` from ``shared_prefix`` the batch enters the model once and is repeated at the first adapted layer.
    """
    ids, mask, rows, cols, targets = batch
    b = ids.shape[0]
    offsets = (torch.arange(k, device=ids.device) * b).repeat_interleave(len(rows))
    positions = (rows.repeat(k) + offsets, cols.repeat(k))
    if repeat is not None:
        with repeat.expanded(k, b):
            return _answer_nll(model, ids, mask, targets.repeat(k), positions)
    return _answer_nll(model, ids.repeat(k, 1), mask.repeat(k, 1), targets.repeat(k), positions)


def _chunk_nll(model, items: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int, budget: Budget, repeat) -> torch.Tensor:
    """``[kc]`` summed answer NLL of each point in ``coeffs`` over ``items``; on out-of-memory, split and retry."""
    device = next(model.parameters()).device
    kc, b = coeffs.shape[0], len(items)
    try:
        tensors = scored_batch(items, pad_id, device)
        with injected.points(coeffs, b):
            return points_nll(model, tensors, kc, repeat).view(kc, b).sum(1)
    except RuntimeError as exc:
        if not is_oom(exc) or kc * b == 1:
            raise
    budget.shrink()
    if kc > 1:
        half = kc // 2
        return torch.cat([_chunk_nll(model, items, coeffs[:half], injected, pad_id, budget, repeat),
                          _chunk_nll(model, items, coeffs[half:], injected, pad_id, budget, repeat)])
    half = b // 2
    return (_chunk_nll(model, items[:half], coeffs, injected, pad_id, budget, repeat)
            + _chunk_nll(model, items[half:], coeffs, injected, pad_id, budget, repeat))


def path_losses(model, encoded: list[Encoded], coeffs: torch.Tensor, injected, pad_id: int, budget: int | Budget,
                bar=None, repeat=None) -> torch.Tensor:
    """``[K]`` token-weighted mean answer NLL of each path point (row of ``coeffs``) on ``encoded``."""
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    device = next(model.parameters()).device
    k = coeffs.shape[0]
    totals = torch.zeros(k, dtype=torch.float64, device=device)  # accumulated on the device: no host sync per chunk
    n_tokens = sum(len(e.ids) - e.n_prompt for e in encoded)
    for batch in batches(encoded, lambda e: len(e.ids), 1, budget.tokens):
        items = [encoded[i] for i in batch]
        width = max(len(e.ids) for e in items)
        start = 0
        while start < k:  # the chunk size is recomputed each time: the budget may have shrunk
            stop = min(k, start + points_per_chunk(len(items), width, budget.tokens))
            totals[start:stop] += _chunk_nll(model, items, coeffs[start:stop], injected, pad_id, budget, repeat)
            if bar is not None:
                bar.update((stop - start) * len(items))
            start = stop
    return totals / n_tokens


def path_accuracy(model, tokenizer, examples: list[Example], encoded: list[Encoded], coeffs: torch.Tensor, injected,
                  budget: int, bar=None, metric: str = "exact_match") -> torch.Tensor:
    """``[K]`` mean score (exact match by default) of greedy decoding at each path point (points batched like the loss)."""
    score = get_scorer(metric)
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    k = coeffs.shape[0]
    max_new = max(len(e.ids) - e.n_prompt for e in encoded)
    gen = GenerationConfig(do_sample=False, max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    correct = torch.zeros(k, dtype=torch.float64)
    for batch in batches(encoded, lambda e: e.n_prompt + max_new, 1, budget):
        items = [encoded[i] for i in batch]
        width = max(e.n_prompt for e in items)
        ids = torch.full((len(items), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(items):  # left padding for generation
            ids[r, width - e.n_prompt :] = torch.tensor(e.prompt_ids)
            mask[r, width - e.n_prompt :] = 1
        answers = [examples[i].answer for i in batch]
        for chunk in point_chunks(k, len(items), width + max_new, budget):
            kc, b = len(chunk), len(items)
            with injected.points(coeffs[chunk.start : chunk.stop], b):
                out = model.generate(input_ids=ids.repeat(kc, 1).to(device), attention_mask=mask.repeat(kc, 1).to(device),
                                     generation_config=gen)
            texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            hits = torch.tensor([score(t, answers[j % b]) for j, t in enumerate(texts)], dtype=torch.float64)
            correct[chunk.start : chunk.stop] += hits.view(kc, b).sum(1)
            if bar is not None:
                bar.update(kc * b)
    return correct / len(examples)


@torch.no_grad()
def evaluate_points(model, tokenizer, span: Span, coeffs: torch.Tensor, tasks: dict[str, list[Example]],
                    config: EvalConfig = EvalConfig(), metrics: dict[str, str] | None = None) -> dict[str, TaskCurve]:
    """Score the points ``Σ_i coeffs[k, i] · θ_i`` of ``span`` on every task, all points batched together: loss, and
    greedy decoding scored by each task's metric (``metrics[name]``, exact match by default)."""
    from .prefix import shared_prefix

    metrics = metrics or {}
    model.eval()
    coeffs = torch.as_tensor(coeffs).float()
    out = {}
    budget = Budget(config.max_batch_tokens or auto_budget(model))
    device = next(model.parameters()).device
    work = sum(len(ex) for ex in tasks.values()) * len(coeffs) * (2 if config.accuracy else 1)
    with inject_path(model, span) as injected, tqdm(total=work, desc="points × examples", disable=not config.progress, leave=False) as bar, \
            torch.autocast(device.type, DTYPES[config.dtype], enabled=config.dtype != "float32"):
        for name, examples in tasks.items():
            encoded = encode(tokenizer, examples, config.max_length)
            with (shared_prefix(model, span.modules) if config.share_prefix else nullcontext()) as repeat:
                loss = path_losses(model, encoded, coeffs, injected, tokenizer.pad_token_id, budget, bar, repeat)
            metric = metrics.get(name, "exact_match")
            acc = (path_accuracy(model, tokenizer, examples, encoded, coeffs, injected, budget.tokens, bar, metric)
                   if config.accuracy else None)
            out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric)
    return out


def evaluate_path(model, tokenizer, path: LoraPath, ts: list[float], tasks: dict[str, list[Example]],
                  config: EvalConfig = EvalConfig(), metrics: dict[str, str] | None = None) -> PathEvaluation:
    """Score every t of ``path`` on every task (see ``evaluate_points``)."""
    return PathEvaluation(list(ts), evaluate_points(model, tokenizer, path, path.coefficients(ts), tasks, config, metrics))


@torch.no_grad()
def evaluate_model(model, tokenizer, tasks: dict[str, list[Example]], config: EvalConfig = EvalConfig(),
                   metrics: dict[str, str] | None = None) -> dict[str, TaskCurve]:
    """Score a model as it stands (e.g. a PeftModel with its active adapter): one point, the same loss and accuracy."""
    was_training = model.training
    model.eval()
    single, as_it_stands = torch.ones(1, 1), Unrouted()
    out = {}
    for name, examples in tasks.items():
        encoded = encode(tokenizer, examples, config.max_length)
        budget = config.max_batch_tokens or auto_budget(model)
        loss = path_losses(model, encoded, single, as_it_stands, tokenizer.pad_token_id, budget)
        metric = (metrics or {}).get(name, "exact_match")
        acc = (path_accuracy(model, tokenizer, examples, encoded, single, as_it_stands, budget, metric=metric)
               if config.accuracy else None)
        out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric)
    model.train(was_training)
    return out
