"""SuRe (Hazard et al., 2025, arXiv:2511.22367, "Surprise-Driven Prioritised Replay for Continual LLM Learning"):
replay from a buffer that keeps the most surprising examples (highest mean answer-token NLL when they arrive), and a
dual learner: a fast LoRA trained by SGD and a slow LoRA following it by an exponential moving average, as I-LoRA has
but without its consistency loss.

Choices where the paper is open (each an option or said here):
  * surprise is the mean NLL of the answer tokens under the fast learner in the forward pass that trains on the
    example, i.e. before any update on it (the paper's "online" variant);
  * the buffer's slots are split equally among the tasks seen so far, each task keeping its most surprising examples
    (a single global top-k would let one task's hard examples crowd out the others);
  * each step replays as many examples as it trains on and averages the two losses, as ``er`` does here (the authors'
    code replays half a batch and weights current : replay as 2 : 1);
  * the EMA warms up as I-LoRA's (λ = min(1 − 1/(step+1), λ_max)) so the slow learner does not start at the base model;
  * the first task fills the buffer without replaying from it, as ``er`` (``--replay-first-task`` replays there too).
Both learners are saved per task (``fast/``, ``slow/``); ``--sure-eval`` picks the one scored and saved as the task's.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from .buffer_state import dump_example, dump_rng, load_example, load_rng
from .base import FAST, MethodBase, row_nll
from .option import option, run_seed
from .protocol import Batch, TaskContext
from .replay import ReplayState
from .slow_learner import SLOW, DualLearners, SlowLearner


class SurpriseBuffer:
    """Per task, its most surprising examples; ``size`` slots split equally among the tasks seen so far."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seen = size, 0
        self.tasks: list[list[tuple[float, object]]] = []  # per task: (surprise, example), most surprising first
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tasks)

    def reach_task(self, index: int) -> None:
        """Make room for task ``index`` (the slots of the earlier tasks shrink to an equal share)."""
        while len(self.tasks) <= index:
            self.tasks.append([])
            self._trim()

    def add(self, items, surprises) -> None:
        self.seen += len(items)
        current = self.tasks[-1]
        current.extend(zip((float(s) for s in surprises), items))
        current.sort(key=lambda pair: -pair[0])  # stable: among equal surprises the earlier example stays
        self._trim()

    def _trim(self) -> None:
        share, extra = divmod(self.size, len(self.tasks))
        for i, task in enumerate(self.tasks):
            del task[share + (i < extra):]

    def sample(self, k: int) -> list:
        pool = [example for task in self.tasks for _, example in task]
        return self._rng.sample(pool, min(k, len(pool)))

    def state_dict(self) -> dict:
        return {"size": self.size, "seen": self.seen, "rng": dump_rng(self._rng),
                "tasks": [[[s, *dump_example(e)] for s, e in task] for task in self.tasks]}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.seen = state["size"], state["seen"]
        self.tasks = [[(s, load_example([ids, n])) for s, ids, n in task] for task in state["tasks"]]
        load_rng(self._rng, state["rng"])

@dataclass
class SuRe(DualLearners, ReplayState, MethodBase):
    name: ClassVar[str] = "sure"
    saved_adapters: ClassVar = MappingProxyType({"fast": FAST, "slow": SLOW})
    sure_ema: float = option(0.99, "λ_max of the slow learner's EMA, slow ← λ·slow + (1−λ)·fast (the authors' code: 0.99)",
                             low=0, high=1, high_open=True)
    sure_eval: str = option("slow", "learner scored and saved as each task's checkpoint", choices=("fast", "slow"))
    seed: int = run_seed()
    buffer: SurpriseBuffer = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.buffer = SurpriseBuffer(self.buffer_size, self.seed)
        self.slow = SlowLearner(self.sure_ema)
        self.other_rows: list[list[float]] = []
        self.other_rank_rows: list[list[float]] = []  # empty unless every task has choices
        self.index, self.collate, self.parts = 0, None, {}

    @property
    def evaluated_adapter(self) -> str:
        return SLOW if self.sure_eval == "slow" else FAST

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate = ctx.collate
        self.size_buffer(ctx.stream_examples)
        self.index = ctx.index
        self.slow.attach(ctx.model)

    def training_step(self, model, batch: Batch):
        n = len(batch.examples)
        self.buffer.reach_task(self.index)  # here, not in begin_task: a resumed run loads its buffer after that
        replay = self.buffer.sample(n) if self.replays(self.index) else []
        inputs = self.collate(batch.examples + replay) if replay else batch.inputs
        nll, count = row_nll(model, inputs)
        current = nll[:n].sum() / count[:n].sum()
        if batch.epoch == 0:  # each example is offered once per task, scored before any update on it
            self.buffer.add(batch.examples, (nll[:n] / count[:n].clamp_min(1)).detach().tolist())
        if not replay:
            self.parts = {"ce_current": current.item()}
            return current
        past = nll[n:].sum() / count[n:].sum()
        self.parts = {"ce_current": current.item(), "ce_replay": past.item()}
        return 0.5 * (current + past)

    def step_parts(self) -> dict[str, float]:
        return self.parts

    def after_step(self, model) -> None:
        self.slow.follow()
        self.slow.step += 1
