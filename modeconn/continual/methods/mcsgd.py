"""MC-SGD (Mirzadeh et al., "Linear Mode Connectivity in Multitask and Continual Learning", ICLR 2021,
arXiv:2010.04495): keep each task's solution on low-loss lines to the previous solution and to the task's own minimum.

Task 1 trains plainly. At task t ≥ 2, stage 1 is the loop's plain training from the previous MC solution w̄_{t−1} to
the continual minimum ŵ_t; stage 2 (``end_task``) starts w on the line between them and minimises

    mean_k L_memory((1−α_k)·w̄_{t−1} + α_k·w)  +  mean_k L_t((1−α_k)·ŵ_t + α_k·w)       α_k = 0, 1/(n−1), …, 1

with all 2n points of a step in ONE forward pass of the evaluator's path layer (``evaluator/layer.py``): the span
(w̄_{t−1}, ŵ_t, w) with w its trainable anchor, each point a row block with coefficients (1−α, 0, α) or (0, 1−α, α).
w then becomes the adapter that is evaluated, saved and trained on by the next task. Points are combined in LoRA factor
space by default (A and B each interpolated: the parameters SGD moves, the paper's weight space); ``mcsgd_space="delta"``
interpolates the merged updates ΔW instead (the same layer, rank 3r per module).

The code: the repository the paper names, imirzadeh/MC-SGD, holds only a README (the code was on CodaLab); the first
author's CL-Gym (imirzadeh/CL-Gym at 2e8f08a, ``cl_gym/algorithms/mcsgd.py``) and SequeL (nik-dim/sequel at ac06a2c,
``sequel/algos/pytorch/mcsgd.py``) implement it. What modeconn takes from them:
  points per segment   11 = t ∈ {0, 0.1, …, 1}, both ends included: CL-Gym ``mcsgd_line_samples=10`` intervals and
                       ``np.arange(0, 1.01, 1/10)`` (mcsgd.py:20, :24); SequeL the same (:33, :70).
  init of w            w̄_{t−1} + 0.25·(ŵ_t − w̄_{t−1}): CL-Gym ``mcsgd_alpha=0.25`` (:21, :60); SequeL uses 0.1 (:32, :100).
  memory               the past segment is scored on the memory of tasks 1…t−1 (CL-Gym ``load_memory_joint(task-1)``,
                       :62; SequeL adds task t to its memory first, :132, :97); the current segment on a subset of task
                       t's training data (``load_subset(task)``, :64; SequeL one as large as the per-task memory, :94-96).
  optimizer, lr        SGD with momentum (CL-Gym :54-57, lr and momentum required parameters); SequeL's defaults
                       lr 0.05, momentum 0.8 (:29-30) are modeconn's.
  next task's start    w̄_t, the MC solution: CL-Gym keeps the backbone at it (:80-81). (SequeL reverts the backbone to
                       ŵ_t after stage 2, :144-145, so its next task starts from the continual minimum: not followed.)
  first task           no stage 2 (CL-Gym :79; SequeL :133).

Deviations, each named:
  steps                minibatch SGD for ``mcsgd_epochs`` passes over the memory, not CL-Gym's single full-batch step
                       (:66-72, the loss summed over the whole memory and subset at every point; SequeL declares
                       ``lmc_epochs=1``, :34, and also takes one step, :104-109): one full batch at 22 points does not
                       fit beside an LLM, and one step moves w barely off its start.
  loss averaging       the mean over points and over the two segments, not CL-Gym's sum of the per-point gradients
                       (:35-38) and of the two segments (:71; its /2 commented out at :70), so the lr does not scale with
                       the number of points; each point's loss is the token-weighted mean answer NLL, as the loop's loss
                       (CL-Gym divides batch-mean losses once more by the number of examples, :46-51).

Choices the paper leaves open:
  - the space of the lines for a LoRA model: factor space (A and B interpolated separately) by default, ΔW space as
    ``mcsgd_space="delta"``; w's initial point is taken in factor space either way (a rank-r anchor). SGD moves w's A
    and its scale-folded s·B (s = α/r, the path layer's form), so B steps lr/s² where SGD on peft's B would step lr.
  - the memory is the shared budget M (``--buffer-size``/``--buffer-fraction``, as er): a reservoir over the training
    split, each task's training examples offered once after its stage 2, so the past segment never sees task t.
  - the current task's subset: min(M, the task's examples) drawn without replacement from its training examples
    (as large as the whole memory, so both segments see as many examples).
  - a step pairs a batch of the memory (a shuffled pass per epoch) with as many current examples (cycling through a
    shuffle of the subset); its batch is ``mcsgd_batch_size`` (default: the run's ``--batch-size``).
  - the segment losses recorded before and after stage 2 (``method_record.segments``) are each point's loss on the whole
    memory (past segment) and the whole subset (current segment), with the same points as the training objective.
  - one process only (``distributed = False``): each DDP process would fit w on its own slice of the memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...errors import NonFiniteError
from ...evaluator.batch import scored_batch
from ...evaluator.data import Encoded
from ...evaluator.evaluate import points_nll
from ...evaluator.layer import inject_path
from ...lora.adapters import LoraWeights
from ...lora.paths import Span, uniform_ts
from ..adapter_io import FAST
from .base import MethodBase, unwrap
from .option import option, run_seed
from .protocol import TaskContext
from .replay import MemoryBudget, ReservoirBuffer
from .lora_points import adapter_weights, set_adapter_weights


def segment_coefficients(alphas: list[float]) -> torch.Tensor:
    """``[2n, 3]`` coefficients over (w̄_{t−1}, ŵ_t, w): the past segment's n points, then the current segment's."""
    a = torch.tensor(alphas, dtype=torch.float32)
    zero = torch.zeros_like(a)
    return torch.cat([torch.stack([1 - a, zero, a], 1), torch.stack([zero, 1 - a, a], 1)])


def blocks_nll(model, injected, coefficients: torch.Tensor, blocks: list[list[Encoded]], *, pad_id: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer NLL and scored tokens of each block, block k at point ``coefficients[k]``: one forward pass."""
    items = [e for block in blocks for e in block]
    device = next(model.parameters()).device
    with injected.points(coefficients, len(blocks[0])):
        nll = points_nll(model, scored_batch(items, pad_id, device), 1)
    tokens = torch.tensor([len(e.ids) - e.n_prompt for e in items], dtype=nll.dtype, device=nll.device)
    return nll.view(len(blocks), -1).sum(1), tokens.view(len(blocks), -1).sum(1)


@dataclass
class MCSGD(MemoryBudget, MethodBase):
    name: ClassVar[str] = "mc-sgd"
    distributed: ClassVar[bool] = False
    one_process_reason: ClassVar[str] = "its second stage fits w on the whole memory, which DDP would split between processes"
    mcsgd_points: int = option(11, "points per segment, evenly spaced on [0, 1] with both ends (the reference code: "
                                   "10 intervals, 11 points)", low=2)
    mcsgd_init: float = option(0.25, "w starts at w̄_{t−1} + init·(ŵ_t − w̄_{t−1}) (the reference code: 0.25)", low=0, high=1)
    mcsgd_epochs: int = option(1, "passes of the second stage over the memory", low=1)
    mcsgd_lr: float = option(0.05, "SGD learning rate of the second stage", low=0)
    mcsgd_momentum: float = option(0.8, "SGD momentum of the second stage", low=0, high=1, high_open=True)
    mcsgd_batch_size: int | None = option(None, "memory examples per step of the second stage, each paired with as many "
                                                "current ones and scored at every point (None: the run's batch size)", low=1)
    mcsgd_space: str = option("factor", "the space of the lines: factor (A and B interpolated) or delta (ΔW)",
                              choices=("factor", "delta"))
    seed: int = run_seed()
    buffer: ReservoirBuffer = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.buffer = ReservoirBuffer(self.buffer_size, self.seed)
        self.start: LoraWeights | None = None
        self.segments: dict[str, dict] = {}

    def begin_task(self, ctx: TaskContext) -> None:
        self.start = adapter_weights(ctx.model)  # w̄_{t−1}; a resumed run replaces it from the saved state
        self.size_buffer(ctx.stream_examples)

    def end_task(self, ctx: TaskContext) -> None:
        if ctx.index > 0 and self.buffer.items and ctx.train:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + ctx.index)
            picked = torch.randperm(len(ctx.train), generator=generator)[: len(self.buffer.items)].tolist()
            w, self.segments[ctx.task] = self.connect(ctx, self.buffer.items, [ctx.train[i] for i in picked], generator)
            set_adapter_weights(ctx.model, w)
        self.buffer.add(ctx.train)

    def connect(self, ctx: TaskContext, past: list[Encoded], current: list[Encoded], generator: torch.Generator
                ) -> tuple[LoraWeights, dict]:
        """Stage 2: w trained on both segments; w and each segment's per-point loss before and after."""
        hat = adapter_weights(ctx.model)
        init = Span((self.start, hat)).combine([1 - self.mcsgd_init, self.mcsgd_init], name="mc-sgd start")
        path = Span((self.start, hat, init), self.mcsgd_space)
        alphas = uniform_ts(self.mcsgd_points)
        coefficients = segment_coefficients(alphas)
        n, pad_id = len(alphas), ctx.tokenizer.pad_token_id
        batch = min(self.mcsgd_batch_size or ctx.batch_size, len(past), len(current))
        peft = unwrap(ctx.model)
        lm = peft.get_base_model()
        with peft.disable_adapter(), inject_path(lm, path, trainable=(2,)) as injected:
            before = self.segment_losses(lm, injected, coefficients, past=past, current=current, batch=batch, pad_id=pad_id)
            optimizer = torch.optim.SGD(injected.parameters(), lr=self.mcsgd_lr, momentum=self.mcsgd_momentum)
            steps = 0
            for _ in range(self.mcsgd_epochs):
                memory = torch.randperm(len(past), generator=generator).tolist()
                order = torch.randperm(len(current), generator=generator).tolist()
                for lo in range(0, len(past), batch):
                    p = [past[i] for i in memory[lo : lo + batch]]
                    c = [current[order[(lo + j) % len(current)]] for j in range(len(p))]
                    nll, tokens = blocks_nll(lm, injected, coefficients, [p] * n + [c] * n, pad_id=pad_id)
                    loss = (nll / tokens).mean()
                    if not torch.isfinite(loss):
                        raise NonFiniteError(f"MC-SGD's second stage diverged at task {ctx.task!r}, step {steps + 1} "
                                             f"(loss {loss.item()}); use a smaller --mcsgd-lr")
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    steps += 1
            after = self.segment_losses(lm, injected, coefficients, past=past, current=current, batch=batch, pad_id=pad_id)
            factors = {m: layer.free_factors(0) for m, layer in injected.layers.items()}
        w = LoraWeights(factors, dict.fromkeys(factors, 1.0), hat.base_model, "mc-sgd", config=hat.config)
        record = {"alphas": alphas, "steps": steps, "memory": len(past), "current": len(current),
                  **{f"{seg}_{when}": values[i * n : (i + 1) * n]
                     for when, values in (("before", before), ("after", after)) for i, seg in enumerate(("past", "current"))}}
        return w, record

    @torch.no_grad()
    def segment_losses(self, lm, injected, coefficients: torch.Tensor, *, past: list[Encoded], current: list[Encoded],
                       batch: int, pad_id: int) -> list[float]:
        """Each point's token-weighted answer NLL: the past segment's on the whole memory, the current one's on the
        whole subset (the points of the training objective, in its order)."""
        n = len(coefficients) // 2
        nll, tokens = torch.zeros(2 * n, dtype=torch.float64), torch.zeros(2 * n, dtype=torch.float64)
        for part, examples in ((slice(0, n), past), (slice(n, 2 * n), current)):
            for lo in range(0, len(examples), batch):
                chunk = examples[lo : lo + batch]
                s, t = blocks_nll(lm, injected, coefficients[part], [chunk] * n, pad_id=pad_id)
                nll[part] += s.cpu()
                tokens[part] += t.cpu()
        return (nll / tokens).tolist()

    def record(self) -> dict:
        return {"space": self.mcsgd_space, "segments": self.segments}

    def state(self) -> tuple[dict, dict]:
        tensors = {f"start.{m}.{i}": f for m, pair in (self.start.factors.items() if self.start else ()) for i, f in
                   enumerate(pair)}
        return tensors, {"segments": self.segments, "buffer": self.buffer.state_dict(),
                         "scaling": self.start.scaling if self.start else {}}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.segments = meta["segments"]
        self.buffer.load_state_dict(meta["buffer"])
        if meta["scaling"]:
            factors = {m: (tensors[f"start.{m}.0"], tensors[f"start.{m}.1"]) for m in meta["scaling"]}
            self.start = LoraWeights(factors, meta["scaling"], source=FAST)
