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
from dataclasses import asdict

import torch

from ..files import atomic_write, write_json
from ..lora.sequence import Sequence
from ..outdir import Claimed
from ..provenance import PYTHON_CALL, command
from .adapter_io import save_peft_adapter
from .metrics import ContinualMetrics
from .state import RunState, clear_state, save_state


def command_script() -> str:
    """``command.sh``: the command line, or a comment saying that a Python call made the run."""
    line = command()
    return (f"# {PYTHON_CALL}: modeconn.train_sequence; its settings are in train_config.json\n" if line == PYTHON_CALL
            else line + "\n")


LOG = "train_log.jsonl"


class RunFolder:
    # besides the adapters: the run's records, its log, its trackers' files (logs/) and its resumable state
    RECORDS = ["sequence.json", "metrics.json", "train_config.json", "command.sh", LOG, "logs", ".state"]

    def __init__(self, claimed: Claimed):
        self.claimed, self.out = claimed, claimed.root

    def save_task(self, model, method, task: str) -> None:
        """The method's checkpoint of the task as ``<task>/`` (its evaluated adapter, unless it saves otherwise),
        and each further adapter it keeps as ``<label>/<task>/`` (paths that would leave the run folder are refused)."""
        method.save(model, self.claimed.path(task))
        for label, adapter in method.saved_adapters.items():
            save_peft_adapter(model, adapter, self.claimed.path(label, task))

    def checkpoint(self, run: RunState, metrics: ContinualMetrics, model, optimizer, generator, method, scaler,
                   accelerator) -> None:
        """Every process hands in its method state (its replay buffer) and RNG; the main process writes them all."""
        from accelerate.utils import gather_object

        tensors, meta = method.state()
        metas, rngs = [meta], [torch.get_rng_state()]
        if accelerator.num_processes > 1:
            metas, rngs = gather_object(metas), gather_object(rngs)
        if accelerator.is_main_process:
            run.metrics, run.method_meta, run.scaler = asdict(metrics), metas, scaler.state_dict()
            save_state(self.out, run, model, optimizer, generator, tensors, rngs)
        accelerator.wait_for_everyone()

    def log_step(self, record: dict) -> None:
        """Append one optimizer step to ``train_log.jsonl`` (a kill can cut only the last line)."""
        with open(self.out / LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")

    def trim_log(self, global_step: int) -> None:
        """On resume: keep the log's steps up to the saved state (later ones are trained again)."""
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
