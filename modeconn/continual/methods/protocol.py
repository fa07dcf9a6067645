"""What the loop hands a continual method (a batch, a task's context, a scorer) and the hooks it calls on one.

``Method`` lists only what ``trainer``, ``prepare``, ``step``, ``state`` and ``run_folder`` call; ``base.MethodBase``
gives each a default, so a method writes only what it changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol

import torch

from ...evaluator.data import Encoded


@dataclass
class Batch:
    examples: list[Encoded]
    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, labels, on the model's device
    epoch: int = 0  # the epoch of the current task this batch belongs to (replay offers examples in the first only)


@dataclass
class TaskContext:
    model: torch.nn.Module
    task: str
    index: int
    train: list[Encoded]
    collate: Callable[[list[Encoded]], dict[str, torch.Tensor]]  # examples -> tensors on the device
    batch_size: int
    stream_examples: int = 0  # training examples of the whole task stream this process sees (a buffer fraction's base)
    tasks: int = 1  # the stream's number of tasks
    tokenizer: Any = None
    task_dirs: tuple = ()  # (name, folder) of every task of the stream, in order (seq-path reads the training splits)
    max_length: int = 0  # the run's input length
    metrics: Mapping[str, str] = field(default_factory=dict)  # each task's answer metric
    data_fields: Mapping = field(default_factory=dict)  # each task's record fields of prompt and answer (data.Fields)


@dataclass(frozen=True)
class Scorer:
    """What one group of tasks is scored with: the model as it stands, and an optional rewrite of the encoded examples
    (the prompt methods prepend their virtual prompt tokens)."""

    model: torch.nn.Module
    transform: Callable[[list[Encoded]], list[Encoded]] | None = None


class Method(Protocol):
    """The hooks the loop calls, in the order it calls them; ``MethodBase`` documents and defaults each."""

    name: ClassVar[str]
    saved_adapters: ClassVar[Mapping[str, str]]  # label -> peft adapter, saved per task beside the evaluated one
    joint: ClassVar[bool]  # trains once on all tasks together: only the final accuracy row means something
    distributed: ClassVar[bool]  # can train under several processes (DDP)
    one_process_reason: ClassVar[str]  # why not, where distributed is False

    @property
    def options(self) -> dict: ...
    def setup(self, model, tasks: int, max_length: int) -> None: ...
    def train_set(self, seen: list[list[Encoded]], tasks: int) -> list[Encoded]: ...
    def begin_task(self, ctx: TaskContext) -> None: ...
    def training_step(self, model, batch: Batch) -> torch.Tensor: ...
    def before_update(self, model) -> None: ...
    def after_step(self, model) -> None: ...
    def step_parts(self) -> dict[str, float]: ...
    def end_task(self, ctx: TaskContext) -> None: ...
    def evaluation_plan(self, trained: int, tasks: int) -> list: ...
    def evaluation_scorer(self, model, key) -> Scorer: ...
    def restore_training(self, model) -> None: ...
    @property
    def other_learner(self) -> str | None: ...
    def note_other_scores(self, accuracy: list[float], rank: list[float] | None = None) -> None: ...
    def save(self, model, folder) -> None: ...
    def record(self) -> dict: ...
    @property
    def memory_examples(self) -> int | None: ...
    def state(self) -> tuple[dict, dict]: ...
    def load_state(self, tensors: dict, meta: dict) -> None: ...
