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
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1024)
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    per_token = (12 * hidden + 3 * inner) * next(model.parameters()).element_size()
    return int(min(max(free // 2 // per_token, 1024), 1 << 21))


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
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


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


def point_chunks(n_points: int, rows_per_point: int, width: int, budget: int):
    per_chunk = points_per_chunk(rows_per_point, width, budget)
    for start in range(0, n_points, per_chunk):
        yield range(start, min(n_points, start + per_chunk))
