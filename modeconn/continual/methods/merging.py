"""Merging as continual methods (``merge``, ``ties``, ``magmax``): train each task's LoRA, and after each task merge
the task vectors τ_1…τ_t in ΔW space (``lora/merge.py``) into a frozen adapter, ``merged``, which is evaluated on
every task and saved as the task's checkpoint (a plain peft adapter folder).

Task vectors: ``merge_source independent`` trains a fresh LoRA per task from the base, as ``one`` (τ_i = its ΔW);
``sequential`` trains each task from the last trained (not merged) adapter, as MagMax does, and τ_i is the ΔW after
task i, relative to the base (θ_i − θ_0: danielm1405/magmax ``merge_splitted.py:161-164``). Defaults as the papers:
task arithmetic and TIES merge independently fine-tuned models, MagMax sequentially fine-tuned ones.

The scale λ is chosen on the shared memory (``MemoryBudget``, the same M as ``er``; a reservoir over the training
split, each task's examples offered when it ends, as ``seq-path``): the candidates λ·merge(τ_1…τ_t) are points of
one span in ΔW space, scored in one batched pass of the evaluator; the best mean accuracy over the tasks seen wins,
ties to the lower mean loss. ``metrics.json``'s ``method_record`` keeps λ per task, the accuracies behind it and,
for TIES and MagMax, the relative Frobenius error of writing the merge back at ``merge_rank``.

Choices the papers leave open (or make on validation data modeconn does not read):

- λ: task arithmetic searches {0, 0.05, …, 1} on validation data (Ilharco et al., 2023), TIES λ ∈ [0.8, 1.8]
  (Yadav et al., 2023); MagMax reports λ = 0.5 (``merge_splitted.py:70``; the search it leaves commented out,
  :67, is (0, 1]). Here each is searched over ``merge_scales`` on the memory, after every task, including the first.
- TIES's density k is fixed (``ties_density``, 0.2 as the paper and magmax's copy, ``merge_splitted.py:95``), not
  searched: a second searched option would spend more of the selection budget than the other methods get.
- The merge is of ΔW = s·B·A per adapted module (the LoRA's effect on the weights), not of A and B.
- TIES and MagMax give a dense ΔW: it is written back by SVD, exact at rank min(d_out, d_in) (``merge_rank`` unset)
  or truncated, its error recorded. The per-task adapter is fresh from peft's initialisation (``one``'s seeds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...errors import ConfigError
from ...evaluator.evaluate import EvalConfig, evaluate_points
from ...lora import merge
from ...lora.adapters import LoraWeights
from ...lora.paths import Span
from ..adapter_io import FAST, add_frozen_adapter, lora_layers, reset_adapter
from .base import MethodBase, unwrap
from .lora_points import BASE, PREFIX, adapter_weights
from .option import option, run_seed
from .protocol import TaskContext
from .replay import MemoryBudget
from .text_memory import ExampleReservoir, remember

MERGED = "merged"
SOURCES = ("independent", "sequential")
TENTHS = ",".join(f"{k / 10:g}" for k in range(1, 11))
SCALES_HELP = ("candidate scales λ of the merged task vector, comma-separated; the one with the best mean accuracy on "
               "the memory is kept after each task")
SOURCE_HELP = ("task vectors from a fresh LoRA per task (independent) or from sequential fine-tuning, each relative "
               "to the base (sequential)")


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,1"`` → ``(0.5, 1.0)``: finite, positive, distinct."""
    try:
        scales = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        raise ConfigError(f"merge_scales must be comma-separated numbers such as 0.5,1.0, got {text!r}") from None
    if not all(math.isfinite(s) and s > 0 for s in scales) or len(set(scales)) != len(scales):
        raise ConfigError(f"merge_scales must be distinct finite numbers above 0, got {text!r}")
    return scales


@dataclass
class MergingState(MemoryBudget, MethodBase):
    """What the three merges share: the task vectors kept, the memory, the choice of λ and the merged adapter."""

    evaluated_adapter: ClassVar[str] = MERGED
    distributed: ClassVar[bool] = False
    one_process_reason: ClassVar[str] = "λ is picked on the memory, which DDP would split between processes"
    merge_source: str = option("independent", SOURCE_HELP, choices=SOURCES)
    merge_scales: str = option(TENTHS, SCALES_HELP)
    seed: int = run_seed()
    buffer: ExampleReservoir = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.scales = parse_scales(self.merge_scales)
        self.buffer = ExampleReservoir(self.buffer_size, self.seed)
        self.vectors: list[LoraWeights] = []
        self.chosen: dict[str, float] = {}
        self.scores: dict[str, list[float]] = {}
        self.errors: dict[str, float] = {}

    def merged(self, vectors: list[LoraWeights]) -> tuple[LoraWeights, float]:
        """The merge of ``vectors`` at λ = 1 as a LoRA, and its truncation error."""
        raise NotImplementedError

    def merged_rank(self, ctx: TaskContext) -> int:
        """The rank the ``merged`` adapter needs for the whole run."""
        raise NotImplementedError

    def begin_task(self, ctx: TaskContext) -> None:
        rank = unwrap(ctx.model).peft_config[FAST].r
        add_frozen_adapter(ctx.model, MERGED, rank_factor=-(-self.merged_rank(ctx) // rank))
        self.size_buffer(ctx.stream_examples)

    @torch.no_grad()
    def end_task(self, ctx: TaskContext) -> None:
        seen = remember(self.buffer, ctx)
        self.vectors.append(adapter_weights(ctx.model))
        if self.merge_source == "independent":  # before the task-end state is saved: a resumed run starts fresh
            reset_adapter(ctx.model, FAST, seed=self.seed * 1009 + ctx.index)
        point, error = self.merged(self.vectors)
        self.errors[ctx.task] = error
        scale = self.scales[0]
        if len(self.scales) > 1 and seen:
            peft = unwrap(ctx.model)
            with peft.disable_adapter():  # the span's layers add each candidate's LoRA to the bare base layers
                curves = evaluate_points(peft.get_base_model(), ctx.tokenizer, Span((point,), "delta"),
                                         torch.tensor([[s] for s in self.scales]), tasks=seen,
                                         metrics=dict(ctx.metrics),
                                         config=EvalConfig(max_length=ctx.max_length, progress=False))
            k = range(len(self.scales))
            accuracy = [sum(c.accuracy[i] for c in curves.values()) / len(curves) for i in k]
            loss = [sum(c.loss[i] for c in curves.values()) / len(curves) for i in k]
            scale = self.scales[max(k, key=lambda i: (accuracy[i], -loss[i]))]
            self.scores[ctx.task] = accuracy
        self.chosen[ctx.task] = scale
        write_padded(ctx.model, point, scale)

    def record(self) -> dict:
        return {"merge_source": self.merge_source, "scale": self.chosen, "mean_memory_accuracy_by_scale": self.scores,
                "scales": list(self.scales), "truncation_error": self.errors}

    def state(self) -> tuple[dict, dict]:
        tensors = {f"vector.{i}.{m}.{j}": f for i, v in enumerate(self.vectors) for m, pair in v.factors.items()
                   for j, f in enumerate(pair)}
        return tensors, {"chosen": self.chosen, "scores": self.scores, "errors": self.errors,
                         "buffer": self.buffer.state_dict(), "scaling": [v.scaling for v in self.vectors]}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.chosen, self.scores, self.errors = meta["chosen"], meta["scores"], meta["errors"]
        self.buffer.load_state_dict(meta["buffer"])
        self.vectors = [LoraWeights({m: (tensors[f"vector.{i}.{m}.0"], tensors[f"vector.{i}.{m}.1"]) for m in scaling},
                                    scaling, source=FAST) for i, scaling in enumerate(meta["scaling"])]


@torch.no_grad()
def write_padded(model, point: LoraWeights, scale: float) -> None:
    """Write ``scale``·``point`` into the ``merged`` adapter, zero-padding its rank to the adapter's (exact)."""
    peft = unwrap(model)
    layers = set(map(id, lora_layers(peft, MERGED)))
    for name, module in peft.named_modules():
        key = name[len(PREFIX):] + BASE
        if id(module) in layers and key in point.factors:
            a, b = point.factors[key]
            lora_a, lora_b = module.lora_A[MERGED].weight, module.lora_B[MERGED].weight
            lora_a.zero_()
            lora_b.zero_()
            lora_a[: a.shape[0]] = a
            lora_b[:, : b.shape[1]] = b * (scale * point.scaling[key] / module.scaling[MERGED])


@dataclass
class TaskArithmetic(MergingState):
    """``merge``: task arithmetic, λ·Σ τ_i, exactly a stacked LoRA of rank Σ r_i (Ilharco et al., ICLR 2023)."""

    name: ClassVar[str] = "merge"

    def merged(self, vectors: list[LoraWeights]) -> tuple[LoraWeights, float]:
        return merge.task_arithmetic(vectors), 0.0

    def merged_rank(self, ctx: TaskContext) -> int:
        return unwrap(ctx.model).peft_config[FAST].r * ctx.tasks


@dataclass
class DenseMergeState(MergingState):
    """The merges that give a dense ΔW per module, written back by SVD at ``merge_rank``."""

    merge_rank: int | None = option(None, "rank of the merged LoRA written back from TIES's or MagMax's dense ΔW by "
                                          "SVD (unset: min(d_out, d_in), exact; else truncated, the relative "
                                          "Frobenius error recorded)", low=1)

    def merged_rank(self, ctx: TaskContext) -> int:
        full = max(min(layer.in_features, layer.out_features) for layer in lora_layers(ctx.model, FAST))
        return full if self.merge_rank is None else min(self.merge_rank, full)


@dataclass
class Ties(DenseMergeState):
    """``ties``: TIES-merging, trim to the top ``ties_density`` of each task vector, elect signs, disjoint mean
    (Yadav et al., NeurIPS 2023; ``lora/merge.py ties_delta`` cites the reference)."""

    name: ClassVar[str] = "ties"
    merge_scales: str = option("0.8,1,1.2,1.4,1.6,1.8", SCALES_HELP)
    ties_density: float = option(0.2, "fraction k of each task vector's entries kept by TIES's trim, above 0 (the "
                                      "paper: 0.2)", low=0, high=1)

    def __post_init__(self):
        super().__post_init__()
        if self.ties_density == 0:
            raise ConfigError("ties_density must be above 0 (the fraction of each task vector kept), e.g. 0.2")

    def merged(self, vectors: list[LoraWeights]) -> tuple[LoraWeights, float]:
        out = merge.ties(vectors, self.ties_density, rank=self.merge_rank)
        return out.weights, out.truncation_error


@dataclass
class MagMax(DenseMergeState):
    """``magmax``: sequential fine-tuning, then per entry the task vector value of largest magnitude (Marczak et al.,
    ECCV 2024; ``lora/merge.py magmax_delta`` cites the reference)."""

    name: ClassVar[str] = "magmax"
    merge_source: str = option("sequential", SOURCE_HELP, choices=SOURCES)

    def merged(self, vectors: list[LoraWeights]) -> tuple[LoraWeights, float]:
        out = merge.magmax(vectors, rank=self.merge_rank)
        return out.weights, out.truncation_error
