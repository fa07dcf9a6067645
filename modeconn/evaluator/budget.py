"""How much one forward pass may hold: the token budget, its out-of-memory fallback, and the batching it drives.

A pass over K path points and b examples of padded length L costs ``K · b · L`` tokens; batches of examples are
formed by length and points are chunked so that every pass stays within the budget.
"""
from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from .data import Encoded

CPU_BUDGET = 4096  # on a CPU, chunks of this size measured fastest (working set near the caches): benchmarks/results/path_eval.md


def auto_budget(model) -> int:
    """Padded tokens per forward pass: a cache-friendly constant on the CPU; on CUDA, half the free memory divided
    by an estimate of one token's live activations (no gradients: about one layer's worth at a time)."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return CPU_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    per_token, _ = _token_bytes(model)
    return int(min(max(free // 2 // per_token, 1024), 1 << 21))


def _token_bytes(model) -> tuple[int, int]:
    """Bytes of one token's live activations in a forward pass without gradients, and of its KV-cache entry."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1024)
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    size = next(model.parameters()).element_size()
    return (12 * hidden + 3 * inner) * size, 2 * layers * kv_heads * head_dim * size


def backward_budget(model) -> int:
    """Padded tokens per forward-and-backward chunk of a training step (a curve fit's): on a CPU the evaluator's
    constant; on CUDA half the free memory over one token's activations as the backward pass keeps them, every layer's
    at once (a forward without gradients holds about one layer's)."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return CPU_BUDGET
    free, _ = torch.cuda.mem_get_info(device)
    per_token, _ = _token_bytes(model)
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 1)
    return int(min(max(free // 2 // (per_token * layers), 256), 1 << 20))


def decode_budget(model, tokens: int) -> int:
    """The budget of a greedy-decoding pass: on CUDA the same memory must also hold every token's KV cache, so the
    token count shrinks by activations / (activations + cache); on the CPU the cache-sized constant stays."""
    if next(model.parameters()).device.type != "cuda":
        return tokens
    activations, cache = _token_bytes(model)
    return max(1, tokens * activations // (activations + cache))


class Budget:
    """The token budget of one evaluation. On an accelerator out-of-memory error the failing chunk is split in two
    and the budget halved for the rest of the run; the first time, it says so on stderr."""

    def __init__(self, tokens: int):
        self.tokens = tokens
        self.halvings = 0

    def shrink(self) -> None:
        self.tokens = max(1, self.tokens // 2)
        self.halvings += 1
        if self.halvings == 1:
            tqdm.write(f"modeconn: out of accelerator memory; halving the chunk to {self.tokens} tokens and going on "
                       "(a smaller batch-token budget starts there)", file=sys.stderr)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    """torch's typed OOM, or one of the allocator messages accelerate knows (CUDA, HIP, XPU, MPS, CPU)."""
    from accelerate.utils.memory import should_reduce_batch_size

    return isinstance(exc, torch.OutOfMemoryError) or should_reduce_batch_size(exc)


def split_on_oom(run, items: list, coeffs, budget: Budget, join_points, join_items):
    """``run(items, coeffs)``; on an accelerator out-of-memory error the budget is halved and the work retried in two
    halves — of the points first, then (one point left) of the examples — whose results ``join_points`` /
    ``join_items`` put back together. Anything but an OOM, or an OOM on one point and one example, is raised."""
    try:
        return run(items, coeffs)
    except RuntimeError as exc:
        if not is_oom(exc) or len(coeffs) * len(items) == 1:
            raise
    budget.shrink()
    again = lambda i, c: split_on_oom(run, i, c, budget, join_points=join_points, join_items=join_items)  # noqa: E731
    if len(coeffs) > 1:
        half = len(coeffs) // 2
        return join_points(again(items, coeffs[:half]), again(items, coeffs[half:]))
    half = len(items) // 2
    return join_items(again(items[:half], coeffs), again(items[half:], coeffs))


def batches(encoded: list[Encoded], lengths, k: int, budget: int):
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


def points_per_chunk(rows_per_point: int, width: int, budget: int) -> int:
    return max(1, budget // max(1, rows_per_point * width))


