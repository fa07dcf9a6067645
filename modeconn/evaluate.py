"""The batched path evaluator: base model once, K path points stacked into the batch, per-point per-task numbers."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .data import Encoded, Example, encode
from .scoring import get_scorer
from .layer import inject_path
from .paths import Path, Span


@dataclass(frozen=True)
class EvalConfig:
    max_batch_tokens: int = field(default=16384, metadata={"help": "padded tokens per forward pass (points × examples × length)"})
    max_length: int = field(default=256, metadata={"help": "tokens per example; prompts are cut from the left"})
    accuracy: bool = field(default=True, metadata={"help": "also decode greedily and score exact match"})
    progress: bool = field(default=True, metadata={"help": "show tqdm progress bars"})


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


def _batches(encoded: list[Encoded], lengths, k: int, budget: int):
    """Length-sorted example batches whose ``k × count × longest`` stays within the token budget (≥ 1 example)."""
    order = sorted(range(len(encoded)), key=lambda i: lengths(encoded[i]))
    batch: list[int] = []
    for i in order:
        if batch and k * (len(batch) + 1) * lengths(encoded[i]) > budget:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _point_chunks(n_points: int, rows_per_point: int, width: int, budget: int):
    per_chunk = max(1, budget // max(1, rows_per_point * width))
    for start in range(0, n_points, per_chunk):
        yield range(start, min(n_points, start + per_chunk))


def _answer_nll(model, ids, mask, targets, positions) -> torch.Tensor:
    """Summed NLL of the answer tokens per row; the LM head runs only at the scored positions."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel wraps the LM
    hidden = lm.base_model(input_ids=ids, attention_mask=mask)[0]
    rows, cols = positions
    logits = lm.get_output_embeddings()(hidden[rows, cols]).float()
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return torch.zeros(ids.shape[0], dtype=torch.float64, device=ids.device).index_add_(0, rows, nll.double())


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
    as_tensor = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    return ids.to(device), mask.to(device), as_tensor(rows), as_tensor(cols), as_tensor(targets)


def points_nll(model, batch, k: int) -> torch.Tensor:
    """``[k·b]`` summed answer NLL per row when the batch is repeated point-major for k path points."""
    ids, mask, rows, cols, targets = batch
    b = ids.shape[0]
    offsets = (torch.arange(k, device=ids.device) * b).repeat_interleave(len(rows))
    return _answer_nll(model, ids.repeat(k, 1), mask.repeat(k, 1), targets.repeat(k),
                       (rows.repeat(k) + offsets, cols.repeat(k)))


def path_losses(model, encoded: list[Encoded], coeffs: torch.Tensor, holder, pad_id: int, budget: int, bar=None) -> torch.Tensor:
    """``[K]`` token-weighted mean answer NLL of each path point (row of ``coeffs``) on ``encoded``."""
    device = next(model.parameters()).device
    k = coeffs.shape[0]
    totals = torch.zeros(k, dtype=torch.float64, device=device)
    n_tokens = sum(len(e.ids) - e.n_prompt for e in encoded)
    for batch in _batches(encoded, lambda e: len(e.ids), 1, budget):
        items = [encoded[i] for i in batch]
        tensors = scored_batch(items, pad_id, device)
        width = tensors[0].shape[1]
        for chunk in _point_chunks(k, len(items), width, budget):
            kc, b = len(chunk), len(items)
            holder.value = coeffs[chunk.start : chunk.stop].to(device).repeat_interleave(b, 0)
            totals[chunk.start : chunk.stop] += points_nll(model, tensors, kc).view(kc, b).sum(1)
            if bar is not None:
                bar.update(kc * b)
    return totals / n_tokens


def path_accuracy(model, tokenizer, examples: list[Example], encoded: list[Encoded], coeffs: torch.Tensor, holder,
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
    for batch in _batches(encoded, lambda e: e.n_prompt + max_new, 1, budget):
        items = [encoded[i] for i in batch]
        width = max(e.n_prompt for e in items)
        ids = torch.full((len(items), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(items):  # left padding for generation
            ids[r, width - e.n_prompt :] = torch.tensor(e.prompt_ids)
            mask[r, width - e.n_prompt :] = 1
        answers = [examples[i].answer for i in batch]
        for chunk in _point_chunks(k, len(items), width + max_new, budget):
            kc, b = len(chunk), len(items)
            holder.value = coeffs[chunk.start : chunk.stop].to(device).repeat_interleave(b, 0)
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
    metrics = metrics or {}
    model.eval()
    coeffs = torch.as_tensor(coeffs).float()
    out = {}
    work = sum(len(ex) for ex in tasks.values()) * len(coeffs) * (2 if config.accuracy else 1)
    with inject_path(model, span) as holder, tqdm(total=work, desc="points × examples", disable=not config.progress, leave=False) as bar:
        for name, examples in tasks.items():
            encoded = encode(tokenizer, examples, config.max_length)
            loss = path_losses(model, encoded, coeffs, holder, tokenizer.pad_token_id, config.max_batch_tokens, bar)
            metric = metrics.get(name, "exact_match")
            acc = (path_accuracy(model, tokenizer, examples, encoded, coeffs, holder, config.max_batch_tokens, bar, metric)
                   if config.accuracy else None)
            out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric)
    return out


def evaluate_path(model, tokenizer, path: Path, ts: list[float], tasks: dict[str, list[Example]],
                  config: EvalConfig = EvalConfig(), metrics: dict[str, str] | None = None) -> PathEvaluation:
    """Score every t of ``path`` on every task (see ``evaluate_points``)."""
    return PathEvaluation(list(ts), evaluate_points(model, tokenizer, path, path.coefficients(ts), tasks, config, metrics))


@torch.no_grad()
def evaluate_model(model, tokenizer, tasks: dict[str, list[Example]], config: EvalConfig = EvalConfig(),
                   metrics: dict[str, str] | None = None) -> dict[str, TaskCurve]:
    """Score a model as it stands (e.g. a PeftModel with its active adapter): one point, the same loss and accuracy."""
    from .layer import RowCoefficients

    was_training = model.training
    model.eval()
    single, holder = torch.ones(1, 1), RowCoefficients()
    out = {}
    for name, examples in tasks.items():
        encoded = encode(tokenizer, examples, config.max_length)
        loss = path_losses(model, encoded, single, holder, tokenizer.pad_token_id, config.max_batch_tokens)
        metric = (metrics or {}).get(name, "exact_match")
        acc = (path_accuracy(model, tokenizer, examples, encoded, single, holder, config.max_batch_tokens, metric=metric)
               if config.accuracy else None)
        out[name] = TaskCurve(loss.tolist(), acc.tolist() if acc is not None else None, len(examples), metric)
    model.train(was_training)
    return out
