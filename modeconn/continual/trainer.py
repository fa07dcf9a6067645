"""The shared continual training loop: one LoRA model, a stream of tasks, a method deciding each step's loss.

    for each task:  method.begin_task → epochs of steps (method.training_step, backward, update, method.after_step)
                    → method.end_task → evaluate every task → save the task's adapters (and a resumable state)

Set-up lives in ``prepare.py``, the files in ``run_folder.py``. One process, or several under `accelerate launch` /
torchrun: every rank walks the same global batch order and trains on its own slice of each batch (DDP averages the
gradients); replay buffers are per rank; evaluation runs on every rank with identical weights; only the main
process writes files.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from ..evaluator.memory import release_freed
from ..files import null_nonfinite
from ..lora.sequence import Sequence, TaskEntry
from .config import TrainConfig
from .methods.base import FAST, trained_weight
from .methods.protocol import Method, TaskContext
from .metrics import ContinualMetrics
from .prepare import Prepared, prepare
from .request import STATE_EVERY, TrainRequest
from .run_folder import PICTURES, RunFolder, check_task_names, tracker_name
from .schedule import lr_factor, schedule_position
from .state import restore
from .step import Amp, StepResult, make_optimizer, optimizer_step


@dataclass
class TrainRun:
    sequence: Sequence | None  # None when the run stopped early (``stop_after``); rerun with resume=True
    metrics: ContinualMetrics
    complete: bool = True
    main_process: bool = True  # False on the other ranks of a multi-process run, which write nothing
    seconds_per_step: float = 0.0  # wall time of the training steps of this call (forward, backward, update, hooks)
    # the same per task trained in this call: replay methods do more work once a buffer exists (tasks after the first)
    seconds_per_step_by_task: dict[str, float] = field(default_factory=dict)


@dataclass
class StepClock:
    """Steps and seconds of this call, per task."""

    by_task: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, task: str, seconds: float) -> None:
        steps, total = self.by_task.get(task, (0, 0.0))
        self.by_task[task] = (steps + 1, total + seconds)

    @property
    def steps(self) -> int:
        return sum(steps for steps, _ in self.by_task.values())

    def per_step(self) -> float:
        return sum(seconds for _, seconds in self.by_task.values()) / max(1, self.steps)

    def per_task(self) -> dict[str, float]:
        return {task: seconds / steps for task, (steps, seconds) in self.by_task.items()}


def train_sequence(request: TrainRequest, out: str | Path, *, name: str | None = None, progress: bool = True,
                   resume: bool = False, state_every: int = STATE_EVERY, stop_after: int | None = None,
                   allow_pickle: bool = False) -> TrainRun:
    """Train ``request.method`` on each of ``request.tasks`` in order; save adapters, manifest, metrics and the log.

    ``resume=True`` continues from ``out/.state`` if a run with the same settings left one (else starts afresh);
    ``stop_after=N`` stops after N optimizer steps of this call, leaving that state (for time-limited jobs). Resuming
    is exact, with one process or several (each process's replay buffer and RNG are saved).
    The caller's global RNG is left as it was: the run seeds a forked one (for the LoRA initialisation and dropout).
    A non-finite loss, gradient or weight stops the run (``NonFiniteError``) before anything of that step is saved.
    ``request.report_to``: ``tensorboard`` or ``wandb`` (offline unless ``WANDB_MODE`` says otherwise) also log there.
    """
    from accelerate import Accelerator

    from .. import checks
    from ..outdir import claim

    checks.instance("request", request, TrainRequest, "a TrainRequest (modeconn.TrainRequest)")
    checks.text("out", out), checks.text("name", name, optional=True)
    for key, value in (("progress", progress), ("resume", resume), ("allow_pickle", allow_pickle)):
        checks.flag(key, value)
    checks.count("state_every", state_every, 0), checks.optional_count("stop_after", stop_after)
    # dtype "auto": bfloat16 where the device multiplies it fast; recorded resolved
    request = replace(request, config=request.config.resolved(request.device))
    method, config, tasks, base = request.method, request.config, request.tasks, request.base
    check_task_names([task for task, _ in tasks], method, out)
    _check_tracker(request.report_to)
    owned = [t for t, _ in tasks] + list(method.saved_adapters) + RunFolder.RECORDS + PICTURES
    inputs = [path for _, path in tasks] + ([base] if Path(base).exists() else [])
    with claim(out, owned=owned, inputs=inputs) as claimed:
        from .prepare import run_device

        accelerator = Accelerator(cpu=request.device == "cpu", project_dir=str(claimed.path("logs")),
                                  log_with=None if request.report_to == "none" else request.report_to)
        folder = RunFolder(claimed)
        where = run_device(accelerator, request.device)
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
            torch.manual_seed(config.seed)
            run = prepare(accelerator, request, folder, resume=resume, allow_pickle=allow_pickle)
            checks.free_space(claimed.root, _planned_bytes(run, method, config),
                              f"training {len(tasks)} task{'s' if len(tasks) > 1 else ''}")
            if request.report_to != "none":
                kwargs = {"wandb": {"mode": os.environ.get("WANDB_MODE", "offline")}} if request.report_to == "wandb" else {}
                accelerator.init_trackers(tracker_name(name or claimed.root.name), config=_flat(run.run.fingerprint), init_kwargs=kwargs)
            amp = Amp(config.dtype, run.device)
            if run.run.scaler:
                amp.scaler.load_state_dict(run.run.scaler)
            clock, controls = StepClock(), Controls(progress, state_every, stop_after)
            try:
                for index in range(run.run.task_index, len(tasks)):
                    if not train_task(run, folder, index, clock=clock, amp=amp, controls=controls):
                        return TrainRun(None, run.metrics, complete=False)
                    release_freed()
                return finish(run, folder, name, clock)
            finally:
                if request.report_to != "none":
                    accelerator.end_training()


def _planned_bytes(run: Prepared, method: Method, config: TrainConfig) -> int:
    """About what the run writes: each task's adapters, the resumable state (weights and two optimizer moments, old and
    new side by side while it is swapped), a log line per step and the records; checked before the first step, so a
    full disk is met before training rather than after a task."""
    lora = sum(p.numel() * 4 for name, p in run.model.named_parameters() if trained_weight(name))
    steps = sum(steps_per_task(run, method, config))
    return lora * (len(run.tasks) * (1 + len(method.saved_adapters)) + 6) + steps * 512 + 2**20


def _check_tracker(report_to: str) -> None:
    from importlib.util import find_spec

    from ..errors import ConfigError

    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}.get(report_to, ())
    if needs and not any(find_spec(package) for package in needs):
        raise ConfigError(f"report_to={report_to} needs the {needs[0]} package: pip install {needs[0]}")


def _flat(values: dict, prefix: str = "") -> dict:
    """A nested record as the flat name → number/text mapping trackers take."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def steps_per_task(run: Prepared, method: Method, config: TrainConfig) -> list[int]:
    """Optimizer steps of each task: epochs × windows of batch_size × grad_accum examples."""
    window = config.batch_size * config.grad_accum
    sizes = [len(method.train_set(run.train_sets[: i + 1], len(run.tasks))) for i in range(len(run.tasks))]
    return [config.epochs * -(-size // window) for size in sizes]


@dataclass(frozen=True)
class Controls:
    """How a call of the loop runs, not what it trains: a progress bar, how often to save state, when to stop."""

    progress: bool = True
    state_every: int = STATE_EVERY
    stop_after: int | None = None


def train_task(run: Prepared, folder: RunFolder, index: int, *, clock: StepClock, amp: Amp, controls: Controls) -> bool:
    """Train one task, evaluate, save; False if ``stop_after`` stopped it (its state saved for resuming)."""
    method, config = run.request.method, run.request.config
    progress, state_every, stop_after = controls.progress, controls.state_every, controls.stop_after
    task = run.tasks[index][0]
    examples = method.train_set(run.train_sets[: index + 1], len(run.tasks))
    stream = sum(len(method.train_set(run.train_sets[: i + 1], len(run.tasks))) for i in range(len(run.tasks))) // run.world
    ctx = TaskContext(run.model, task, index, examples, collate=run.to_device, batch_size=config.batch_size,
                      stream_examples=stream, tasks=len(run.tasks), tokenizer=run.tokenizer, task_dirs=tuple(run.tasks),
                      max_length=run.max_length, metrics=run.metrics_by_task, data_fields=run.data_fields or {})
    method.begin_task(ctx)
    optimizer = make_optimizer([p for p in run.model.parameters() if p.requires_grad], config)
    state, main = run.run, run.accelerator.is_main_process
    if run.resume_from is not None:
        opt_meta, tensors = run.resume_from
        mid_task = state.epoch > 0 or state.position > 0  # at a task boundary the next task starts a fresh optimizer
        restored = restore(run.model, optimizer if mid_task else None, run.generator, opt_meta, tensors=tensors,
                           rank=run.rank)
        method.load_state(restored, state.method_meta[run.rank] if state.method_meta else {})
        run.resume_from = None
    run.model.train()
    window, steps = config.batch_size * config.grad_accum, steps_per_task(run, method, config)
    warmup = lambda total: int(config.warmup_ratio * total)  # noqa: E731
    with tqdm(total=steps[index], initial=state.task_step, desc=f"{method.name} {index + 1}/{len(run.tasks)} {task}",
              leave=False, disable=not progress) as bar:
        while state.epoch < config.epochs:
            if state.order is None:
                state.order = torch.randperm(len(examples), generator=run.generator).tolist()
            while state.position < len(state.order):
                chosen = [examples[i] for i in state.order[state.position : state.position + window]]
                step, total = schedule_position(config.schedule_scope, steps, index, state.task_step)
                lr = config.lr * lr_factor(config.lr_scheduler, step, total, warmup(total))
                started = time.perf_counter()
                result = optimizer_step(run, optimizer, amp, chosen, lr=lr, epoch=state.epoch,
                                        where=f"task {task!r}, step {state.global_step + 1}")
                seconds = time.perf_counter() - started
                clock.add(task, seconds)
                state.position += window
                state.global_step += 1
                state.task_step += 1
                _log(run, folder, result, task=task, lr=lr, seconds=seconds)
                bar.update()
                bar.set_postfix(loss=f"{result.loss:.3f}")
                if stop_after is not None and clock.steps >= stop_after:
                    folder.checkpoint(run, optimizer, amp.scaler)
                    return False
                if state_every and state.global_step % state_every == 0:
                    folder.checkpoint(run, optimizer, amp.scaler)
            state.epoch, state.position, state.order = state.epoch + 1, 0, None
    run.model.eval()
    method.end_task(ctx)
    run.metrics.add_row(*run.scores(method, index + 1))
    if method.other_learner is not None:
        accuracy, _, rank = run.scores(method, index + 1, key=method.other_learner)
        method.note_other_scores(accuracy, rank)
    state.task_index, state.epoch, state.position, state.order, state.task_step = index + 1, 0, 0, None, 0
    if main:
        folder.save_task(run.model, method, task)
    folder.checkpoint(run, optimizer, amp.scaler)
    return True


def _log(run: Prepared, folder: RunFolder, result: StepResult, *, task: str, lr: float, seconds: float) -> None:
    """One line of train_log.jsonl per optimizer step (the main process's numbers), and the trackers'."""
    state = run.run
    if not run.accelerator.is_main_process:
        return
    record = {"step": state.global_step, "task": task, "epoch": state.epoch, "loss": result.loss, **result.parts,
              "lr": lr, "grad_norm": result.grad_norm, "tokens_per_second": result.tokens * run.world / max(seconds, 1e-9),
              "seconds": seconds, **({"loss_scale": result.loss_scale} if result.loss_scale else {}),
              **({"skipped": True} if result.skipped else {})}
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:  # an fp16 step the loss scaler skipped has an overflowed gradient norm: null in JSON, named in "not_finite"
        record = {**null_nonfinite(record), "not_finite": bad}
    folder.log_step(record)
    if run.accelerator.log_with:
        run.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=state.global_step)


def _ranks_agree(accelerator, model) -> bool:
    """Whether every rank ends with the same LoRA weights (fast and slow): a checksum gathered from all ranks."""
    if accelerator.num_processes == 1:
        return True
    total = sum(p.detach().double().sum() * (i + 1) for i, (n, p) in enumerate(model.named_parameters()) if trained_weight(n))
    sums = accelerator.gather(total.reshape(1).to(accelerator.device))
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=1e-9))


def finish(run: Prepared, folder: RunFolder, name: str | None, clock: StepClock) -> TrainRun:
    """Check the ranks agree; on the main process write the manifest, metrics, config and command."""
    from ..provenance import made_by

    method, config, base = run.request.method, run.request.config, run.request.base
    in_sync = _ranks_agree(run.accelerator, run.model)
    timing = dict(seconds_per_step=clock.per_step(), seconds_per_step_by_task=clock.per_task())
    if not run.accelerator.is_main_process:
        return TrainRun(None, run.metrics, main_process=False, **timing)
    out = folder.out
    used = {task: fields for task, fields in (run.data_fields or {}).items() if not fields.default}
    entries = tuple(TaskEntry(task, os.path.relpath(Path(path).resolve(), out.resolve()), task, run.metrics_by_task[task],
                              **({"prompt_field": used[task].prompt, "answer_field": used[task].answer} if task in used else {}))
                    for task, path in run.tasks)
    seq = Sequence(name or out.name, base, entries, method=method.name, root=out,
                   extra={"config": config.to_json(), "options": method.options})
    targets = run.model.peft_config[FAST].target_modules
    settings = {**run.run.fingerprint, "world_size": run.world, "max_length_used": run.max_length,
                "target_modules_used": sorted(targets) if isinstance(targets, (set, list)) else targets,
                "effective_batch": config.batch_size * config.grad_accum * run.world,
                "engine": str(run.accelerator.distributed_type).rsplit(".", 1)[-1],
                **({"data_fields_used": {task: f.to_json() for task, f in used.items()}} if used else {}),
                **({"prompts_cut": run.cut_prompts} if run.cut_prompts else {})}
    extra = method.record()
    record = {"method": method.name, **run.metrics.to_json(), "memory_examples": method.memory_examples,
              "world_size": run.world, "ranks_in_sync": in_sync, **timing,
              **({"method_record": extra} if extra else {}), "made_by": made_by(settings)}
    folder.finish(seq, record, config.to_json())
    return TrainRun(seq, run.metrics, **timing)
