"""Path-picked merging (``seq-path``), the I-LoRA paper's finding turned into a baseline: sequential LoRA that, after
each task, moves to the point of the path from the previous task's adapter to the new one (a straight line, or a
fitted quadratic Bézier curve, in LoRA factor space) with the best mean eval-split accuracy over the tasks seen so far,
and trains the next task from there.

The candidates t = 0, 1/(n−1), …, 1 are scored in one batched pass of the path evaluator (every point of the path is a
block of rows of the same forward pass); ties go to the lower mean loss. The Bézier control point is fitted on the
same eval-split examples the pick uses (the method has no other data of the earlier tasks). The first task has no
previous adapter and keeps its minimum (t = 1). The chosen t per task goes to ``metrics.json`` (``method_record``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..evaluator.data import load_split
from ..evaluator.evaluate import EvalConfig, evaluate_path
from ..lora.adapters import LoraWeights
from ..lora.paths import bezier_path, linear_path, uniform_ts
from .adapter_io import FAST, lora_layers
from .methods import Method, TaskContext, option, run_seed, unwrap

PREFIX = "base_model.model."
# keys name the frozen linear inside each peft LoRA layer: the path evaluator swaps that for a path layer, and with
# peft's adapters disabled the LoRA layer's forward is exactly its base layer's
BASE = ".base_layer"


def adapter_weights(model, adapter: str = FAST) -> LoraWeights:
    """One adapter of a PeftModel as LoraWeights (copies), keyed by the base model's names of its frozen linears."""
    peft = unwrap(model)
    layers = lora_layers(peft, adapter)
    factors, scaling = {}, {}
    for name, module in peft.named_modules():
        if any(module is layer for layer in layers) and name.startswith(PREFIX):
            key = name[len(PREFIX):] + BASE
            factors[key] = (module.lora_A[adapter].weight.detach().float().clone(),
                            module.lora_B[adapter].weight.detach().float().clone())
            scaling[key] = float(module.scaling[adapter])
    return LoraWeights(factors, scaling, source=adapter)


@torch.no_grad()
def set_adapter_weights(model, point: LoraWeights, adapter: str = FAST) -> None:
    """Write ``point`` (any scales) into ``adapter``, whose own scale stays: B is rescaled to give the same ΔW."""
    peft = unwrap(model)
    for name, module in peft.named_modules():
        key = name[len(PREFIX):] + BASE
        if name.startswith(PREFIX) and key in point.factors:
            a, b = point.factors[key]
            module.lora_A[adapter].weight.copy_(a)
            module.lora_B[adapter].weight.copy_(b * (point.scaling[key] / module.scaling[adapter]))


@dataclass
class PathPicked(Method):
    name: ClassVar[str] = "seq-path"
    path: str = option("linear", "the path searched between the previous adapter and the new one: linear, or bezier "
                                 "(a fitted quadratic Bézier curve)", flag="path", choices=("linear", "bezier"))
    path_points: int = option(11, "candidate t values, evenly spaced on [0, 1]", low=2)
    path_limit: int = option(32, "eval-split examples per seen task scored at every candidate (and fitted on)", low=1)
    curve_steps: int = option(100, "optimizer steps of the Bézier fit (--path bezier)", low=1)
    seed: int = run_seed()

    def __post_init__(self):
        super().__post_init__()
        self.start: LoraWeights | None = None
        self.chosen: dict[str, float] = {}
        self.scores: dict[str, list[float]] = {}

    def begin_task(self, ctx: TaskContext) -> None:
        self.start = adapter_weights(ctx.model)  # a resumed run replaces it from the saved state

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        if ctx.index == 0:
            self.chosen[ctx.task] = 1.0
            return
        new = adapter_weights(ctx.model)
        seen = {name: load_split(folder, "eval", self.path_limit) for name, folder in ctx.task_dirs[: ctx.index + 1]}
        peft = unwrap(ctx.model)
        lm = peft.get_base_model()
        with peft.disable_adapter():  # the path layers add each point's LoRA to the bare base layers
            path = self._path(lm, ctx, new, seen)
            ts = uniform_ts(self.path_points)
            evaluation = evaluate_path(lm, ctx.tokenizer, path, ts, seen,
                                       EvalConfig(max_length=ctx.max_length, progress=False), dict(ctx.metrics))
        accuracy = [sum(c.accuracy[k] for c in evaluation.tasks.values()) / len(seen) for k in range(len(ts))]
        loss = [sum(c.loss[k] for c in evaluation.tasks.values()) / len(seen) for k in range(len(ts))]
        best = max(range(len(ts)), key=lambda k: (accuracy[k], -loss[k]))
        set_adapter_weights(ctx.model, path.at(ts[best]))
        self.chosen[ctx.task] = ts[best]
        self.scores[ctx.task] = accuracy

    def _path(self, lm, ctx: TaskContext, new: LoraWeights, seen: dict):
        if self.path == "linear":
            return linear_path(self.start, new)
        from ..analysis.bezier import CurveConfig, fit_bezier

        with torch.enable_grad():
            fit = fit_bezier(lm, ctx.tokenizer, self.start, new, [e for examples in seen.values() for e in examples],
                             "factor", CurveConfig(steps=self.curve_steps, seed=self.seed, max_length=ctx.max_length),
                             progress=False)
        return bezier_path(self.start, fit.control, new)

    def record(self) -> dict:
        return {"path": self.path, "chosen_t": self.chosen, "mean_eval_accuracy_by_t": self.scores}

    def state(self) -> tuple[dict, dict]:
        tensors = {f"start.{m}.{i}": f for m, pair in (self.start.factors.items() if self.start else ()) for i, f in
                   enumerate(pair)}
        return tensors, {"chosen": self.chosen, "scores": self.scores,
                         "scaling": self.start.scaling if self.start else {}}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.chosen, self.scores = meta["chosen"], meta["scores"]
        if meta["scaling"]:
            factors = {m: (tensors[f"start.{m}.0"], tensors[f"start.{m}.1"]) for m in meta["scaling"]}
            self.start = LoraWeights(factors, meta["scaling"], source=FAST)
