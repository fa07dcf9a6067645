"""Path-picked merging (``seq-path``), the I-LoRA paper's finding turned into a baseline: sequential LoRA that, after
each task, moves to the point of the path from the previous task's adapter to the new one (a straight line, or a
fitted quadratic Bézier curve, in LoRA factor space) with the best mean accuracy over the tasks seen so far on its
memory, and trains the next task from there.

Its memory is the shared memory budget (``--buffer-size``/``--buffer-fraction``, the same M as the replay methods):
a reservoir over the training split, each task's training examples offered when the task ends, so after task k it
holds a uniform sample of tasks 1…k, as ``er``'s buffer does. The Bézier control point is fitted, and t picked, on
those examples only; no eval-split example is read. The candidates t = 0, 1/(n−1), …, 1 are scored in one batched
pass of the path evaluator; ties go to the lower mean loss. The first task has no previous adapter and keeps its
minimum (t = 1). The chosen t per task goes to ``metrics.json`` (``method_record``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...evaluator.evaluate import EvalConfig, evaluate_path
from ...lora.adapters import LoraWeights
from ...lora.path_kinds import names as path_kinds
from ...lora.paths import kind_path, linear_path, uniform_ts
from ..adapter_io import FAST
from .base import MethodBase, unwrap
from .lora_points import adapter_weights, set_adapter_weights
from .option import option, run_seed
from .protocol import TaskContext
from .replay import MemoryBudget
from .text_memory import ExampleReservoir, remember


@dataclass
class PathPicked(MemoryBudget, MethodBase):
    name: ClassVar[str] = "seq-path"
    path: str = option("linear", "the path searched between the previous adapter and the new one: linear, or a fitted "
                                 "curve (bezier: quadratic Bézier)", choices=tuple(path_kinds()))
    path_points: int = option(11, "candidate t values, evenly spaced on [0, 1]", low=2)
    curve_steps: int = option(100, "optimizer steps of the curve fit (a --path other than linear)", low=1)
    seed: int = run_seed()
    buffer: ExampleReservoir = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.start: LoraWeights | None = None
        self.chosen: dict[str, float] = {}
        self.scores: dict[str, list[float]] = {}
        self.buffer = ExampleReservoir(self.buffer_size, self.seed)

    def begin_task(self, ctx: TaskContext) -> None:
        self.start = adapter_weights(ctx.model)  # a resumed run replaces it from the saved state
        self.size_buffer(ctx.stream_examples)

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        seen = remember(self.buffer, ctx)
        if ctx.index == 0 or not seen:
            self.chosen[ctx.task] = 1.0
            return
        new = adapter_weights(ctx.model)
        peft = unwrap(ctx.model)
        lm = peft.get_base_model()
        with peft.disable_adapter():  # the path layers add each point's LoRA to the bare base layers
            path = self._path(lm, ctx, new, seen)
            ts = uniform_ts(self.path_points)
            evaluation = evaluate_path(lm, ctx.tokenizer, path, ts, tasks=seen, metrics=dict(ctx.metrics),
                                       config=EvalConfig(max_length=ctx.max_length, progress=False))
        accuracy = [sum(c.accuracy[k] for c in evaluation.tasks.values()) / len(seen) for k in range(len(ts))]
        loss = [sum(c.loss[k] for c in evaluation.tasks.values()) / len(seen) for k in range(len(ts))]
        best = max(range(len(ts)), key=lambda k: (accuracy[k], -loss[k]))
        set_adapter_weights(ctx.model, path.at(ts[best]))
        self.chosen[ctx.task] = ts[best]
        self.scores[ctx.task] = accuracy

    def _path(self, lm, ctx: TaskContext, new: LoraWeights, seen: dict):
        if self.path == "linear":
            return linear_path(self.start, new)
        from ...analysis.bezier import CurveConfig, fit_path, start_path

        with torch.enable_grad():
            train = [e for examples in seen.values() for e in examples]
            fit = fit_path(lm, ctx.tokenizer, start_path(self.path, self.start, new, "factor"), train=train, progress=False,
                           config=CurveConfig(steps=self.curve_steps, seed=self.seed, max_length=ctx.max_length,
                                              path=self.path))
        return kind_path(self.path, self.start, fit.controls, new)

    def record(self) -> dict:
        return {"path": self.path, "chosen_t": self.chosen, "mean_memory_accuracy_by_t": self.scores}

    def state(self) -> tuple[dict, dict]:
        tensors = {f"start.{m}.{i}": f for m, pair in (self.start.factors.items() if self.start else ()) for i, f in
                   enumerate(pair)}
        return tensors, {"chosen": self.chosen, "scores": self.scores, "buffer": self.buffer.state_dict(),
                         "scaling": self.start.scaling if self.start else {}}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.chosen, self.scores = meta["chosen"], meta["scores"]
        self.buffer.load_state_dict(meta["buffer"])
        if meta["scaling"]:
            factors = {m: (tensors[f"start.{m}.0"], tensors[f"start.{m}.1"]) for m in meta["scaling"]}
            self.start = LoraWeights(factors, meta["scaling"], source=FAST)
