"""Gradients as one flat vector, the episodic memory, and the method shell shared by the methods that project the
current gradient against the memory's (A-GEM, GEM)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from .buffer_state import dump_example, dump_rng, load_example, load_rng
from .base import MethodBase, answer_loss, unwrap
from .option import run_seed
from .protocol import TaskContext
from .replay import MemoryBudget


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The parameters' gradients, concatenated (zeros where a parameter has none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def set_flat_grad(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def memory_gradient(model, params: list[torch.nn.Parameter], examples: list, collate, *, batch_size: int) -> torch.Tensor:
    """The gradient of the mean loss over ``examples`` (in batches of ``batch_size``), as a flat vector; the model's
    gradients are left zeroed."""
    for p in params:
        p.grad = None
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        (answer_loss(model, collate(chunk)) * len(chunk) / len(examples)).backward()
    grad = flat_grad(params)
    for p in params:
        p.grad = None
    return grad


class EpisodicMemory:
    """At most ``size`` examples of the finished tasks, split equally among them (GEM needs each task's own): a task
    that ends draws its share at random (seeded), and the earlier tasks keep the first ones of theirs (a prefix of a
    random sample is a random sample), as GEM's and A-GEM's per-task memories but within one total."""

    def __init__(self, size: int, seed: int):
        self.size, self.tasks = size, []
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return sum(len(task) for task in self.tasks)

    def add_task(self, examples: list) -> None:
        self.tasks.append(self._rng.sample(list(examples), min(self.size, len(examples))))
        share, extra = divmod(self.size, len(self.tasks))
        for i, task in enumerate(self.tasks):
            del task[share + (i < extra):]

    def all(self) -> list:
        return [e for task in self.tasks for e in task]

    def sample(self, k: int) -> list:
        pool = self.all()
        return self._rng.sample(pool, min(k, len(pool)))

    def state_dict(self) -> dict:
        return {"size": self.size, "tasks": [[dump_example(e) for e in task] for task in self.tasks],
                "rng": dump_rng(self._rng)}

    def load_state_dict(self, state: dict) -> None:
        self.size = state["size"]
        self.tasks = [[load_example(value) for value in task] for task in state["tasks"]]
        load_rng(self._rng, state["rng"])

@dataclass
class ProjectingMethod(MemoryBudget, MethodBase):
    """Keeps an episodic memory of the finished tasks (the shared memory budget M, split equally among them); before
    each update replaces the current gradient by ``project(g, memory)`` (subclasses say how). Their references train
    with plain SGD (``--optimizer sgd``), under which the projection is what bounds the memory loss's first-order
    change; AdamW rescales the projected gradient per coordinate afterwards."""

    seed: int = run_seed()
    memory: EpisodicMemory = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.memory = EpisodicMemory(self.buffer_size, self.seed)
        self.collate, self.batch_size = None, 1

    @property
    def memory_examples(self) -> int:
        return len(self.memory)

    def project(self, model, params: list[torch.nn.Parameter], g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate, self.batch_size = ctx.collate, ctx.batch_size
        if not self.memory.tasks:  # sized before the first task ends (a resumed memory keeps its own)
            self.memory.size = self.memory_size(ctx.stream_examples)

    def before_update(self, model) -> None:
        if not self.memory.tasks:
            return
        params = trainable(unwrap(model))
        set_flat_grad(params, self.project(model, params, flat_grad(params)))

    def end_task(self, ctx: TaskContext) -> None:
        self.memory.add_task(ctx.train)

    def state(self) -> tuple[dict, dict]:
        return {}, {"memory": self.memory.state_dict()}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.memory.load_state_dict(meta["memory"])
