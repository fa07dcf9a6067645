"""Experience replay: a reservoir buffer of past examples; every step mixes a replay batch into the current batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import MethodBase, answer_loss
from .option import run_seed
from .protocol import Batch, TaskContext
from .replay import ReplayState, ReservoirBuffer


@dataclass
class ExperienceReplay(ReplayState, MethodBase):
    """Each step trains on the current batch plus as many examples drawn from the buffer (LLMCL's ER, method/ER.py);
    each training example is offered to the buffer once, in its task's first epoch. The first task fills the buffer
    without replaying from it, as LLMCL (method/ER.py:121-123), unless ``replay_first_task``."""

    name: ClassVar[str] = "er"
    seed: int = run_seed()
    buffer: ReservoirBuffer = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.buffer = ReservoirBuffer(self.buffer_size, self.seed)
        self.collate, self.index = None, 0

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate, self.index = ctx.collate, ctx.index
        self.size_buffer(ctx.stream_examples)

    def training_step(self, model, batch: Batch):
        # as many replayed examples as current ones: under DDP a process's slice of the batch, not the whole batch
        replay = self.buffer.sample(len(batch.examples)) if self.replays(self.index) else []
        inputs = self.collate(batch.examples + replay) if replay else batch.inputs
        if batch.epoch == 0:
            self.buffer.add(batch.examples)
        return answer_loss(model, inputs)
