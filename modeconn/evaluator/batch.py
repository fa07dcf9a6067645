"""The padded batch a loss pass scores: right-padded ids and mask, and the positions whose next token is scored."""
from __future__ import annotations

import torch

from .data import Encoded


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
