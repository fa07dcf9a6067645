"""TrainRequest: what a run trains and how it is scored, checked once and handed whole to the loop.

`modeconn train` builds it from flags and a config file (``options.resolve``); Python builds it directly. The run-level
defaults are declared here only: the CLI's help and the config-file keys read them from these fields.
"""
from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .config import TrainConfig

if TYPE_CHECKING:
    from .methods.protocol import Method

EVAL_SPLITS = ("eval", "test")
EVAL_ROWS = ("first", "last")
TRACKERS = ("none", "tensorboard", "wandb")
STATE_EVERY = 25  # optimizer steps between resumable states (`modeconn train --state-every`)
DEFAULT_METHOD = "seq"  # `modeconn train` without --method


@dataclass(frozen=True)
class TrainRequest:
    """A method, a task stream and its settings; every value checked, named in the message, when it is built."""

    base: str
    tasks: list[tuple[str, Path]]  # (task name, task folder) pairs, in training order
    method: Method  # a continual method (modeconn.get_method('seq'))
    config: TrainConfig = field(default_factory=TrainConfig)
    _: KW_ONLY
    metrics: dict | None = None  # task → its answer metric (others: exact_match)
    eval_split: str = field(default="test", metadata={"help": "split of the accuracy matrix"})
    eval_limit: int | None = field(default=None, metadata={"help": "examples per task for the accuracy matrix"})
    eval_rows: str = field(default="first", metadata={"help": "with --eval-limit: score the first or the last rows of "
                                                              "each split"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or cuda:N (several processes: launch with "
                                                         "accelerate)"})
    report_to: str = field(default="none", metadata={"help": "also log each step to TensorBoard (event files in "
                                                             "OUT/logs) or Weights & Biases (offline unless WANDB_MODE "
                                                             "says otherwise); train_log.jsonl is always written"})
    protocol: dict | None = None  # the named protocol, its preset and what the user overrode (recorded with the run)
    data_fields: dict | None = None  # task → the data.Fields named for it (others are recognised)

    def __post_init__(self):
        from .. import checks

        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (a frozen dataclass)
        set_("tasks", task_pairs(self.tasks))
        checks.text("base", self.base)
        checks.instance("config", self.config, TrainConfig, "a TrainConfig")
        if not all(hasattr(self.method, a) for a in ("name", "training_step", "saved_adapters")):
            raise ConfigError(f"method must be a continual method (modeconn.get_method('seq')), got "
                              f"{type(self.method).__name__}")
        set_("device", checks.device("device", self.device))
        checks.choice("eval_split", self.eval_split, EVAL_SPLITS)
        set_("eval_limit", checks.optional_count("eval_limit", self.eval_limit))
        checks.choice("eval_rows", self.eval_rows, EVAL_ROWS)
        checks.choice("report_to", self.report_to, TRACKERS)
        for task, _ in self.tasks:
            checks.safe_name("task name", task)
        checks.unique("task", [task for task, _ in self.tasks])
        set_("metrics", {task: (self.metrics or {}).get(task, "exact_match") for task, _ in self.tasks})

    @property
    def options(self) -> dict:
        """The method's resolved options."""
        return self.method.options


def default(name: str):
    """A TrainRequest field's default (the CLI's help and the config file's unset keys read it)."""
    return next(f.default for f in fields(TrainRequest) if f.name == name)


def help_of(name: str) -> str:
    """A TrainRequest field's help, with its default."""
    spec = next(f for f in fields(TrainRequest) if f.name == name)
    return f"{spec.metadata['help']} [{'all' if spec.default is None else spec.default}]"


def task_pairs(tasks) -> list[tuple[str, Path]]:
    """The task stream as (name, folder) pairs; a string (one folder, or a manifest) is refused, not split up."""
    from .. import checks

    if isinstance(tasks, (str, bytes, os.PathLike)) or not isinstance(tasks, (list, tuple)) or not tasks or not all(
            isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[1], (str, os.PathLike)) for t in tasks):
        raise ConfigError(f"tasks must be a non-empty list of (task name, task folder) pairs, e.g. [('news', "
                          f"'data/news')], got {checks.short(tasks)}; for a sequence.json use "
                          "modeconn.continual.options.resolve_tasks(path, None)[0]")
    return [(name, Path(folder)) for name, folder in tasks]
