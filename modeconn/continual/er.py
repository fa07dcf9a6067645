"""Experience replay: a reservoir buffer of past examples; every step mixes a replay batch into the current batch."""
from __future__ import annotations

from .methods import Batch, TaskContext
from .replay import ReservoirBuffer


class ExperienceReplay:
    name = "er"

    def __init__(self, buffer_size: int = 500, seed: int = 0):
        self.buffer = ReservoirBuffer(buffer_size, seed)
        self.collate = None
        self.batch_size = 1

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate, self.batch_size = ctx.collate, ctx.batch_size

    def training_step(self, model, batch: Batch):
        replay = self.buffer.sample(self.batch_size)
        inputs = self.collate(batch.examples + replay) if replay else batch.inputs
        self.buffer.add(batch.examples)
        return model(**inputs).loss

    def after_step(self, model) -> None:
        pass

    def end_task(self, ctx: TaskContext) -> None:
        pass

    def state(self) -> tuple[dict, dict]:
        return {}, {"buffer": self.buffer.state_dict()}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.buffer.load_state_dict(meta["buffer"])
