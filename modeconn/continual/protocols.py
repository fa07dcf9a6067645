"""Named experimental settings for `modeconn train --protocol NAME`: a task order, per-task metrics, which test rows,
and training settings, all of which the user's own flags and config file override. The run records the resolved
protocol (``made_by.settings.protocol``).

  trace     the I-LoRA paper's setting on a user's copy of TRACE + MedMCQA + JEC-QA laid out as LLMCL reads it
            (``<root>/<task>/{train,eval,test}.json`` of ``prompt`` / ``answer`` records): the order C-STANCE, FOMC,
            MeetingBank, ScienceQA, NumGLUE-cm, 20Minuten, MedMCQA, JEC-QA; the first 5,000 training rows; the last
            500 test rows; LLMCL's metrics (evaluation.py, utils/metrics.py); LoRA r 8, α 32, dropout 0.1 on
            q/k/v/o (utils/arg_configs.py); 3 epochs, batch 1, lr 1e-5, constant with 500 warm-up steps per task,
            max length 1024 (scripts/train_seq.sh)
  embedded  the embedded four-task stream and the settings of benchmarks/continual.py
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

TRACE_ORDER = ("C-STANCE", "FOMC", "MeetingBank", "ScienceQA", "NumGLUE-cm", "20Minuten", "MedMCQA", "JEC-QA")
# folder names LLMCL's own code uses for the two added tasks (evaluation.py's EVAL_FUNCs keys)
TRACE_ALIASES = {"MedMCQA": ("medmcqa",), "JEC-QA": ("jecqa", "JECQA")}
TRACE_METRICS = {"C-STANCE": "trace_choice", "FOMC": "trace_choice", "MeetingBank": "rouge_l",
                 "ScienceQA": "trace_scienceqa", "NumGLUE-cm": "trace_number", "20Minuten": "sari",
                 "MedMCQA": "trace_choice", "JEC-QA": "trace_choice"}
TRACE_TRAIN_ROWS, TRACE_TEST_ROWS, TRACE_EPOCHS, TRACE_WARMUP_STEPS = 5000, 500, 3, 500


@dataclass(frozen=True)
class Protocol:
    name: str
    order: tuple[str, ...]
    metrics: dict[str, str]
    settings: dict  # TrainConfig and run keys, as in a config file
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def record(self, used: dict, tasks: list[tuple[str, Path]], metrics: dict[str, str]) -> dict:
        """What a run records of its protocol: the preset, the keys the user changed, the task order and metrics."""
        def same(a, b):
            join = lambda v: ",".join(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
            return join(a) == join(b)

        changed = sorted(k for k, v in used.items() if k in self.settings and not same(v, self.settings[k]))
        return {"name": self.name, "preset": dict(self.settings), "overridden": changed, "order": [t for t, _ in tasks],
                "metrics": dict(metrics)}

    def task_folders(self, root: Path) -> list[tuple[str, Path]]:
        """``(task, folder)`` in the protocol's order; every missing task named in one line."""
        if not root.is_dir():
            raise DataError(f"--protocol {self.name}: {root} is not a folder of task folders")
        found, missing = [], []
        for task in self.order:
            folder = next((root / n for n in (task, *self.aliases.get(task, ())) if (root / n).is_dir()), None)
            if folder is None:
                missing.append(task)
            else:
                found.append((task, folder))
        if missing:
            raise DataError(f"--protocol {self.name}: {len(missing)} task folder(s) missing under {root}: "
                            f"{', '.join(missing)} (each <root>/<task>/ with train.json and test.json)")
        return found


def _trace() -> Protocol:
    return Protocol("trace", TRACE_ORDER, dict(TRACE_METRICS), {
        "max_train": TRACE_TRAIN_ROWS, "eval_limit": TRACE_TEST_ROWS, "eval_rows": "last",
        "rank": 8, "alpha": 32, "dropout": 0.1, "target_modules": "q_proj,k_proj,v_proj,o_proj",
        "epochs": TRACE_EPOCHS, "batch_size": 1, "lr": 1e-5, "lr_scheduler": "constant",
        "warmup_ratio": TRACE_WARMUP_STEPS / (TRACE_TRAIN_ROWS * TRACE_EPOCHS), "schedule_scope": "task",
        "max_length": 1024}, dict(TRACE_ALIASES))


def _embedded() -> Protocol:
    from .config import EMBEDDED_TRAINING

    training = {**EMBEDDED_TRAINING, "target_modules": ",".join(EMBEDDED_TRAINING["target_modules"])}
    return Protocol("embedded", ("news", "gloss", "fortune", "stdlib"), {},
                    {"base": "tiny-llama", "max_train": 200, "eval_limit": 100, "epochs": 3, **training})


PROTOCOLS = {"trace": _trace, "embedded": _embedded}


def get_protocol(name: str) -> Protocol:
    from .. import checks

    checks.choice("protocol", name, sorted(PROTOCOLS))
    return PROTOCOLS[name]()


def default_tasks(protocol: Protocol) -> str | None:
    """Where the protocol's tasks are when ``--tasks`` is not given (the embedded data; TRACE must be named)."""
    if protocol.name == "embedded":
        from ..evaluator.models import checkpoints_dir

        return str(checkpoints_dir() / "data")
    return None
