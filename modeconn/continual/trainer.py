"""The shared continual training loop: one LoRA model, a stream of tasks, a method deciding each step's loss.

    for each task:  method.begin_task → epochs of steps (method.training_step, backward, update, method.after_step)
                    → method.end_task → evaluate every task → save the task's adapters (and a resumable state)

Set-up lives in ``prepare.py``, the files in ``run_folder.py``. One process, or several under `accelerate launch` /
torchrun: every rank walks the same global batch order and trains on its own slice of each batch (DDP averages the
gradients); replay buffers are per rank; evaluation runs on every rank with identical weights; only the main
process writes files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..lora.sequence import Sequence, TaskEntry
from .config import TrainConfig
from .methods import FAST, Batch, Method, TaskContext
from .metrics import ContinualMetrics
from .prepare import Prepared, prepare
from .run_folder import RunFolder
from .state import restore


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


def train_sequence(
    base: str,
    tasks: list[tuple[str, Path]],
    method: Method,
    config: TrainConfig,
    out: str | Path,
    name: str | None = None,
    device: str = "cpu",
    eval_split: str = "test",
    eval_limit: int | None = None,
    progress: bool = True,
    resume: bool = False,
    state_every: int = 25,
    stop_after: int | None = None,
    metrics_by_task: dict[str, str] | None = None,
    allow_pickle: bool = False,
) -> TrainRun:
    """Train ``method`` on each ``(task name, task folder)`` in order; save adapters, manifest and metrics.

    ``resume=True`` continues from ``out/.state`` if a run with the same settings left one (else starts afresh);
    ``stop_after=N`` stops after N optimizer steps of this call, leaving that state (for time-limited jobs).
    Resuming is exact for one process; with several, the state holds the main process's replay buffer only.
    The caller's global RNG is left as it was: the run seeds a forked one (for the LoRA initialisation and dropout).
    A non-finite loss, gradient or weight stops the run (``NonFiniteError``) before anything of that step is saved.
    """
    from accelerate import Accelerator

    from .. import checks
    from ..outdir import claim

    checks.device("device", device)
    checks.choice("eval_split", eval_split, ("eval", "test"))
    checks.optional_count("eval_limit", eval_limit)
    for task, _ in tasks:
        checks.safe_name("task name", task)
    checks.unique("task", [task for task, _ in tasks])
    metrics_by_task = {task: (metrics_by_task or {}).get(task, "exact_match") for task, _ in tasks}
    owned = [t for t, _ in tasks] + list(method.saved_adapters) + RunFolder.RECORDS
    with claim(out, owned=owned) as claimed:
        from .prepare import run_device

        accelerator = Accelerator(cpu=device == "cpu")
        folder = RunFolder(claimed)
        where = run_device(accelerator, device)
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
            torch.manual_seed(config.seed)
            run = prepare(accelerator, base, tasks, method, config, folder, eval_split, eval_limit, resume, metrics_by_task,
                          allow_pickle, device)
            clock = StepClock()
            for index in range(run.run.task_index, len(tasks)):
                if not train_task(run, method, config, folder, index, clock, progress, state_every, stop_after):
                    return TrainRun(None, run.metrics, complete=False)
            return finish(run, method, config, folder, base, name, clock)


def train_task(run: Prepared, method: Method, config: TrainConfig, folder: RunFolder, index: int, clock: StepClock,
               progress: bool, state_every: int, stop_after: int | None) -> bool:
    """Train one task, evaluate, save; False if ``stop_after`` stopped it (its state saved for resuming)."""
    task = run.tasks[index][0]
    examples = method.train_set(run.train_sets[: index + 1])
    ctx = TaskContext(run.model, task, index, examples, run.to_device, config.batch_size)
    method.begin_task(ctx)
    optimizer = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
    if run.resume_from is not None:
        opt_meta, tensors = run.resume_from
        mid_task = run.run.epoch > 0 or run.run.position > 0  # at a task boundary the next task starts a fresh optimizer
        method.load_state(restore(run.model, optimizer if mid_task else None, run.generator, opt_meta, tensors),
                          run.run.method_meta)
        run.resume_from = None
    run.model.train()
    state, main = run.run, run.accelerator.is_main_process
    per_epoch = -(-len(examples) // config.batch_size)
    with tqdm(total=config.epochs * per_epoch, initial=state.epoch * per_epoch + state.position // config.batch_size,
              desc=f"{method.name} {index + 1}/{len(run.tasks)} {task}", leave=False, disable=not progress) as bar:
        while state.epoch < config.epochs:
            if state.order is None:
                state.order = torch.randperm(len(examples), generator=run.generator).tolist()
            while state.position < len(state.order):
                chosen = [examples[i] for i in state.order[state.position : state.position + config.batch_size]]
                local = chosen[run.rank :: run.world] or chosen[:1]
                started = time.perf_counter()
                loss = method.training_step(run.trained, Batch(local, run.to_device(local)))
                _refuse_nonfinite(run, folder, "loss", loss.detach(), task, state.global_step)
                loss.backward()
                _refuse_nonfinite(run, folder, "gradient", _grad_norm(optimizer), task, state.global_step)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                method.after_step(run.trained)
                _refuse_nonfinite(run, folder, "LoRA weight", _weights_finite(run.model), task, state.global_step)
                clock.add(task, time.perf_counter() - started)
                state.position += config.batch_size
                state.global_step += 1
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if stop_after is not None and clock.steps >= stop_after:
                    if main:
                        folder.checkpoint(state, run.metrics, run.model, optimizer, run.generator, method)
                    run.accelerator.wait_for_everyone()
                    return False
                if state_every and state.global_step % state_every == 0 and main and run.world == 1:
                    folder.checkpoint(state, run.metrics, run.model, optimizer, run.generator, method)
            state.epoch, state.position, state.order = state.epoch + 1, 0, None
    run.model.eval()
    method.end_task(ctx)
    run.metrics.add_row(*run.scores(method.evaluated_adapter))
    state.task_index, state.epoch, state.position, state.order = index + 1, 0, 0, None
    if main:
        folder.save_task(run.model, method, task)
        if run.world == 1:
            folder.checkpoint(state, run.metrics, run.model, optimizer, run.generator, method)
    run.accelerator.wait_for_everyone()
    return True


def _grad_norm(optimizer) -> torch.Tensor:
    grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else torch.zeros(())


def _weights_finite(model) -> torch.Tensor:
    """1 when every LoRA weight (every adapter: a slow learner too) is finite, else NaN."""
    ok = all(bool(torch.isfinite(p).all()) for name, p in model.named_parameters() if "lora_" in name)
    return torch.tensor(1.0 if ok else float("nan"))


def _refuse_nonfinite(run: Prepared, folder: RunFolder, what: str, value: torch.Tensor, task: str, step: int) -> None:
    """Stop the run (on every rank together) when ``value`` is not finite; nothing of this step is saved."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(value).all()) else 1.0, device=run.device)
    if run.world > 1:
        bad = run.accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        from ..errors import NonFiniteError

        raise NonFiniteError(f"training diverged: the {what} became non-finite at task {task!r}, step {step + 1}; nothing "
                             f"from that step was saved (the last saved state, if any, stays in {folder.out / '.state'}); "
                             "a lower lr or a smaller alpha usually helps")


def _ranks_agree(accelerator, model) -> bool:
    """Whether every rank ends with the same LoRA weights (fast and slow): a checksum gathered from all ranks."""
    if accelerator.num_processes == 1:
        return True
    total = sum(p.detach().double().sum() * (i + 1) for i, (n, p) in enumerate(model.named_parameters()) if "lora_" in n)
    sums = accelerator.gather(total.reshape(1).to(accelerator.device))
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=1e-9))


def finish(run: Prepared, method: Method, config: TrainConfig, folder: RunFolder, base: str, name: str | None,
           clock: StepClock) -> TrainRun:
    """Check the ranks agree; on the main process write the manifest, metrics, config and command."""
    import os

    from ..provenance import made_by

    in_sync = _ranks_agree(run.accelerator, run.model)
    timing = dict(seconds_per_step=clock.per_step(), seconds_per_step_by_task=clock.per_task())
    if not run.accelerator.is_main_process:
        return TrainRun(None, run.metrics, main_process=False, **timing)
    out = folder.out
    entries = tuple(TaskEntry(task, os.path.relpath(Path(path).resolve(), out.resolve()), task, run.metrics_by_task[task])
                    for task, path in run.tasks)
    seq = Sequence(name or out.name, base, entries, method.name, {"config": config.to_json(), "options": method.options}, out)
    targets = run.model.peft_config[FAST].target_modules
    settings = {**run.run.fingerprint, "world_size": run.world, "max_length_used": run.max_length,
                "target_modules_used": sorted(targets) if isinstance(targets, (set, list)) else targets}
    record = {"method": method.name, **run.metrics.to_json(), "world_size": run.world, "ranks_in_sync": in_sync, **timing,
              "made_by": made_by(settings)}
    folder.finish(seq, record, config.to_json())
    return TrainRun(seq, run.metrics, **timing)
