"""The slow learner of the dual-learner methods (I-LoRA, SuRe): a frozen adapter that follows the trained one by
interpolation after every optimizer step,

    slow ← λ·slow + (1−λ)·fast,   λ = min(1 − 1/(step+1), λ_max)

(the warm-up makes the first steps copy fast almost entirely instead of dragging the base model along)."""
from __future__ import annotations

import torch

from ..adapter_io import FAST, add_frozen_adapter, paired_weights
from ..metrics import ContinualMetrics

SLOW = "slow"


class SlowLearner:
    def __init__(self, lam_max: float):
        self.lam_max, self.step = lam_max, 0
        self.pairs: tuple[list, list] = ([], [])  # (slow weights, fast weights), found once per model

    def attach(self, model) -> None:
        """Add the slow adapter (B = 0: it starts at the base model) if the model has none; pair its weights."""
        add_frozen_adapter(model, SLOW)
        self.pairs = paired_weights(model, SLOW, FAST)

    def lam(self) -> float:
        return min(1 - 1 / (self.step + 1), self.lam_max)

    @torch.no_grad()
    def follow(self) -> None:
        """One interpolation step toward the fast adapter."""
        if self.pairs[0]:  # one fused call: the same numbers as a lerp_ per weight, without the per-tensor overhead
            torch._foreach_lerp_(self.pairs[0], self.pairs[1], 1 - self.lam())

    @torch.no_grad()
    def copy_fast(self) -> None:
        if self.pairs[0]:
            torch._foreach_copy_(self.pairs[0], self.pairs[1])


class DualLearners:
    """Mixin of the methods with a fast and a slow learner (I-LoRA, SuRe): the learner not evaluated is scored too
    after each task, on the same tasks, and its matrix goes to ``metrics.json``'s ``method_record`` — both learners of
    one training run, paired exactly. Expects ``evaluated_adapter``, a ``slow`` SlowLearner and ``other_rows`` and
    ``other_rank_rows`` lists; adds the slow learner's step and those rows to the resumable state of the class after
    it (ReplayState)."""

    def state(self) -> tuple[dict, dict]:
        tensors, meta = super().state()
        return tensors, {**meta, "step": self.slow.step, "other_rows": self.other_rows,
                         "other_rank_rows": self.other_rank_rows}

    def load_state(self, tensors: dict, meta: dict) -> None:
        super().load_state(tensors, meta)
        self.slow.step = meta["step"]
        self.other_rows = [list(row) for row in meta["other_rows"]]
        self.other_rank_rows = [list(row) for row in meta.get("other_rank_rows", [])]  # absent before it was kept

    @property
    def other_learner(self) -> str:
        return FAST if self.evaluated_adapter == SLOW else SLOW

    def note_other_scores(self, accuracy: list[float], rank: list[float] | None = None) -> None:
        self.other_rows.append(list(accuracy))
        if rank is not None:
            self.other_rank_rows.append(list(rank))

    def record(self) -> dict:
        if not self.other_rows:
            return {}
        scores = ContinualMetrics(tasks=[], accuracy=self.other_rows)
        learner = "fast" if self.other_learner == FAST else "slow"
        ranks = {"rank_accuracy": self.other_rank_rows} if len(self.other_rank_rows) == len(self.other_rows) else {}
        return {"other_learner": {"learner": learner, "accuracy": self.other_rows, "AP": scores.ap, "BWT": scores.bwt,
                                  **ranks}}
