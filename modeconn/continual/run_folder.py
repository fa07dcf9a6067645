"""Everything a training run writes under its ``out`` folder, each file all-or-nothing:

  <task>/                 the evaluated adapter after each task (a plain peft adapter folder)
  <label>/<task>/         further adapters the method keeps (I-LoRA: fast/, slow/)
  sequence.json           the manifest the analysis side reads
  metrics.json            the accuracy/loss matrix, AP, BWT, FWT, timings, and what made the run (made_by)
  train_config.json       the resolved training settings
  train_log.jsonl         one line per optimizer step: loss (and the method's parts), learning rate, gradient norm,
                          tokens/s, seconds; logs/ the TensorBoard or W&B files when asked for
  command.sh              the command that made the run (or a note that a Python call did)
  .state/                 the resumable state while the run is unfinished (state.py)
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import ConfigError, OutputError
from ..files import TEMP_PREFIX, atomic_write, write_json
from ..lora.sequence import Sequence
from ..outdir import Claimed, name_max
from ..provenance import PYTHON_CALL, command
from .adapter_io import save_peft_adapter
from .state import clear_state, save_state


def command_script() -> str:
    """``command.sh``: the command line, or a comment saying that a Python call made the run."""
    line = command()
    return (f"# {PYTHON_CALL}: modeconn.train_sequence; its settings are in train_config.json\n" if line == PYTHON_CALL
            else line + "\n")


LOG = "train_log.jsonl"
# what `modeconn plot` and `report` draw beside a run's records
PICTURES = ["accuracy.png", "accuracy.html", "train_log.png", "train_log.html", "report.html"]


def check_task_names(tasks: list[str], method, out: str | Path) -> None:
    """Before any work: no task may be named like a file the run writes itself (its log, records, the method's
    further adapters), nor be longer than the file system allows with the temporary names the run adds."""
    taken = set(RunFolder.RECORDS) | set(method.saved_adapters) | set(PICTURES)
    longest = name_max(out) - len(TEMP_PREFIX) - 9  # atomic writes name a temporary ``.modeconn-<task>.XXXXXXXX``
    for task in tasks:
        if task in taken:
            raise ConfigError(f"task name {task!r} is a name the run writes itself in its folder; rename the task")
        if len(task.encode()) > longest:
            raise ConfigError(f"task name {task[:40]!r}… has {len(task.encode())} bytes; this file system allows "
                              f"{longest} for a task name: shorten it")


def tracker_name(name: str) -> str:
    """The run's name as TensorBoard / W&B file names take it: one harmless path component, so the tracker's files
    stay under ``logs/``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).lstrip("._")[:100] or "run"


class RunFolder:
    # besides the adapters: the run's records, its log, its trackers' files (logs/) and its resumable state
    RECORDS = ["sequence.json", "metrics.json", "train_config.json", "command.sh", LOG, "logs", ".state"]

    def __init__(self, claimed: Claimed):
        self.claimed, self.out = claimed, claimed.root
        self.fresh = True  # until a resume keeps the log's earlier steps, the first step starts a new log

    def save_task(self, model, method, task: str) -> None:
        """The method's checkpoint of the task as ``<task>/`` (its evaluated adapter, unless it saves otherwise),
        and each further adapter it keeps as ``<label>/<task>/`` (paths that would leave the run folder are refused)."""
        method.save(model, self.claimed.path(task))
        for label, adapter in method.saved_adapters.items():
            save_peft_adapter(model, adapter, self.claimed.path(label, task))

    def checkpoint(self, prepared, optimizer, scaler) -> None:
        """Every process hands in its method state (its replay buffer) and RNG; the main process writes them all.
        ``prepared``: the run as ``prepare`` set it up (its state, metrics, model, generator, method, accelerator)."""
        from accelerate.utils import gather_object

        run, metrics, accelerator = prepared.run, prepared.metrics, prepared.accelerator
        tensors, meta = prepared.request.method.state()
        metas, rngs = [meta], [torch.get_rng_state()]
        if accelerator.num_processes > 1:
            metas, rngs = gather_object(metas), gather_object(rngs)
        if accelerator.is_main_process:
            run.metrics, run.method_meta, run.scaler = asdict(metrics), metas, scaler.state_dict()
            save_state(self.out, run, prepared.model, optimizer, generator=prepared.generator, method_tensors=tensors,
                       rng_states=rngs)
        accelerator.wait_for_everyone()

    def log_step(self, record: dict) -> None:
        """Append one optimizer step to ``train_log.jsonl`` (a kill can cut only the last line); a fresh run's first
        step replaces an earlier log. A link in its place is refused, never followed."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | (os.O_TRUNC if self.fresh else 0)
        try:
            handle = os.open(self.out / LOG, flags, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.out / LOG} ({exc.strerror})") from None
        self.fresh = False
        with os.fdopen(handle, "a", encoding="utf-8") as log:
            log.write(json.dumps(record, allow_nan=True) + "\n")

    def trim_log(self, global_step: int) -> None:
        """On resume: keep the log's steps up to the saved state (later ones are trained again)."""
        self.fresh = False
        path = self.out / LOG
        if path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= global_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    break  # a line cut by a kill: nothing after it is kept
            atomic_write(path, "".join(f"{line}\n" for line in kept))

    def finish(self, sequence: Sequence, metrics: dict, config: dict) -> None:
        """Write the finished run's records, then drop its resumable state."""
        sequence.save(self.out)
        write_json(self.out / "metrics.json", metrics)
        write_json(self.out / "train_config.json", config)
        atomic_write(self.out / "command.sh", command_script())
        clear_state(self.out)
