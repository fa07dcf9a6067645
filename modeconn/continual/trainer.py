"""The shared continual training loop: one LoRA model, a stream of tasks, a method deciding each step's loss.

Writes, under ``out``: one peft adapter folder per task (the method's evaluated model), ``sequence.json``,
``metrics.json`` (the accuracy/loss matrix and AP, BWT, FWT), ``train_config.json`` and ``command.sh``; while it runs,
a resumable state in ``out/.state`` (see ``state.py``).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import collate, encode, load_split
from ..errors import ConfigError
from ..evaluate import EvalConfig, evaluate_model
from ..models import load_base
from ..scoring import get_scorer
from ..sequence import Sequence, TaskEntry
from .config import TrainConfig
from .methods import Batch, Method, TaskContext, train_only
from .metrics import ContinualMetrics
from .state import RunState, clear_state, read_state, restore, save_state

FAST = "default"


@dataclass
class TrainRun:
    sequence: Sequence | None  # None when the run stopped early (``stop_after``); rerun with resume=True
    metrics: ContinualMetrics
    complete: bool = True
    main_process: bool = True  # False on the other ranks of a multi-process run, which write nothing
    seconds_per_step: float = 0.0  # wall time of the training steps of this call (forward, backward, update, hooks)
    # the same per task trained in this call: replay methods do more work once a buffer exists (tasks after the first)
    seconds_per_step_by_task: dict[str, float] = field(default_factory=dict)


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), root.resolve())


def save_peft_adapter(model, adapter: str, folder: Path) -> None:
    """Save one named adapter of a PeftModel with peft's own ``save_pretrained``, as a plain adapter folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp, selected_adapters=[adapter], save_embedding_layers=False)
        saved = tmp if adapter == FAST else tmp / adapter
        config_path = saved / "adapter_config.json"
        config = json.loads(config_path.read_text())
        if isinstance(config.get("target_modules"), list):  # peft writes a set: its order changes from run to run
            config["target_modules"] = sorted(config["target_modules"])
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(saved, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scores(model, tokenizer, tests, adapter: str, config: EvalConfig, metrics: dict[str, str]) -> tuple[list[float], list[float]]:
    model.set_adapter(adapter)
    curves = evaluate_model(model, tokenizer, tests, config, metrics)
    train_only(model, FAST)
    return [c.accuracy[0] for c in curves.values()], [c.loss[0] for c in curves.values()]


def _ranks_agree(accelerator, model) -> bool:
    """Whether every rank ends with the same LoRA weights (fast and slow): a checksum gathered from all ranks."""
    if accelerator.num_processes == 1:
        return True
    total = sum(p.detach().double().sum() * (i + 1) for i, (n, p) in enumerate(model.named_parameters()) if "lora_" in n)
    sums = accelerator.gather(total.reshape(1).to(accelerator.device))
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=1e-9))


def _checkpoint(out: Path, run: RunState, metrics: ContinualMetrics, model, optimizer, generator, method) -> None:
    run.metrics = asdict(metrics)
    tensors, run.method_meta = method.state()
    save_state(out, run, model, optimizer, generator, tensors)


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
) -> TrainRun:
    """Train ``method`` on each ``(task name, task folder)`` in order; save adapters, manifest and metrics.

    ``resume=True`` continues from ``out/.state`` if a run with the same settings left one (else starts afresh);
    ``stop_after=N`` stops after N optimizer steps of this call, leaving that state (for time-limited jobs).
    Resuming is exact for one process; with several, the state holds the main process's replay buffer only.
    """
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    # One process, or several under `accelerate launch` / torchrun: every rank walks the same global batch order and
    # trains on its own slice of each batch (DDP averages the gradients); replay buffers are per rank; evaluation
    # runs on every rank with identical weights; only the main process writes files.
    accelerator = Accelerator(cpu=device == "cpu")
    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    out = Path(out)
    metrics_by_task = {task: (metrics_by_task or {}).get(task, "exact_match") for task, _ in tasks}
    for metric in metrics_by_task.values():
        get_scorer(metric)
    fingerprint = {"base": base, "tasks": [[t, str(Path(f).resolve())] for t, f in tasks], "method": method.name,
                   "options": getattr(method, "options", {}), "config": config.to_json(),
                   "eval_split": eval_split, "eval_limit": eval_limit}
    previous = read_state(out) if resume else None
    if previous is not None and previous[0].fingerprint != fingerprint:
        changed = sorted(k for k in fingerprint if previous[0].fingerprint.get(k) != fingerprint[k])
        raise ConfigError(f"--resume: the run in {out} was made with other settings ({', '.join(changed)} differ); "
                          "repeat its command or choose another --out")
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(base, device=device)
    train_sets = [encode(tokenizer, load_split(folder, "train", config.max_train), config.max_length) for _, folder in tasks]
    tests = {task: load_split(folder, eval_split, eval_limit) for task, folder in tasks}
    out.mkdir(parents=True, exist_ok=True)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    trained = accelerator.prepare_model(model) if world > 1 else model  # DDP wrapper: forwards sync gradients
    generator = torch.Generator().manual_seed(config.seed)
    to_device = lambda examples: {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id).items()}  # noqa: E731
    eval_config = EvalConfig(max_length=config.max_length, progress=False)
    eval_adapter = getattr(method, "eval_adapter", FAST)
    if previous is not None:
        run = previous[0]
        metrics = ContinualMetrics(**run.metrics)
    else:
        run = RunState(fingerprint)
        metrics = ContinualMetrics([t for t, _ in tasks], split=eval_split)
        metrics.initial_accuracy, metrics.initial_loss = _scores(model, tokenizer, tests, FAST, eval_config, metrics_by_task)
    steps_now = 0
    task_steps: dict[str, tuple[int, float]] = {}  # task -> (steps, seconds of those steps) in this call
    for index in range(run.task_index, len(tasks)):
        task, _ = tasks[index]
        select = getattr(method, "train_set", None)
        examples = select(train_sets[: index + 1]) if select else train_sets[index]
        ctx = TaskContext(model, task, index, examples, to_device, config.batch_size)
        method.begin_task(ctx)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0)
        if previous is not None:
            _, opt_meta, tensors = previous
            mid_task = run.epoch > 0 or run.position > 0
            method.load_state(restore(model, optimizer if mid_task else None, generator, opt_meta, tensors), run.method_meta)
            previous = None
        model.train()
        per_epoch = -(-len(examples) // config.batch_size)
        bar = tqdm(total=config.epochs * per_epoch, initial=run.epoch * per_epoch + run.position // config.batch_size,
                   desc=f"{method.name} {index + 1}/{len(tasks)} {task}", leave=False, disable=not progress)
        while run.epoch < config.epochs:
            if run.order is None:
                run.order = torch.randperm(len(examples), generator=generator).tolist()
            while run.position < len(run.order):
                chosen = [examples[i] for i in run.order[run.position : run.position + config.batch_size]]
                local = chosen[rank::world] or chosen[:1]
                started = time.perf_counter()
                loss = method.training_step(trained, Batch(local, to_device(local)))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                method.after_step(trained)
                steps, seconds = task_steps.get(task, (0, 0.0))
                task_steps[task] = (steps + 1, seconds + time.perf_counter() - started)
                run.position += config.batch_size
                run.global_step += 1
                steps_now += 1
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if stop_after is not None and steps_now >= stop_after:
                    if accelerator.is_main_process:
                        _checkpoint(out, run, metrics, model, optimizer, generator, method)
                    accelerator.wait_for_everyone()
                    bar.close()
                    return TrainRun(None, metrics, complete=False)
                if state_every and run.global_step % state_every == 0 and accelerator.is_main_process and world == 1:
                    _checkpoint(out, run, metrics, model, optimizer, generator, method)
            run.epoch, run.position, run.order = run.epoch + 1, 0, None
        bar.close()
        model.eval()
        method.end_task(ctx)
        metrics.add_row(*_scores(model, tokenizer, tests, eval_adapter, eval_config, metrics_by_task))
        run.task_index, run.epoch, run.position, run.order = index + 1, 0, 0, None
        if accelerator.is_main_process:
            save_peft_adapter(model, eval_adapter, out / task)
            for label, adapter in getattr(method, "saved_adapters", {}).items():
                save_peft_adapter(model, adapter, out / label / task)
            if world == 1:
                _checkpoint(out, run, metrics, model, optimizer, generator, method)
        accelerator.wait_for_everyone()
    in_sync = _ranks_agree(accelerator, model)
    per_step = sum(seconds for _, seconds in task_steps.values()) / max(1, steps_now)
    by_task = {task: seconds / steps for task, (steps, seconds) in task_steps.items()}
    if not accelerator.is_main_process:
        return TrainRun(None, metrics, main_process=False, seconds_per_step=per_step, seconds_per_step_by_task=by_task)
    entries = tuple(TaskEntry(task, _relative(folder, out), task, metrics_by_task[task]) for task, folder in tasks)
    seq = Sequence(name or out.name, base, entries, method.name, {"config": config.to_json(), "options": fingerprint["options"]}, out)
    seq.save(out)
    (out / "metrics.json").write_text(json.dumps({"method": method.name, **metrics.to_json(), "world_size": world,
                                                  "ranks_in_sync": in_sync, "seconds_per_step": per_step,
                                                  "seconds_per_step_by_task": by_task}, indent=2) + "\n")
    (out / "command.sh").write_text(" ".join(shlex.quote(a) for a in sys.argv) + "\n")
    (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    clear_state(out)
    return TrainRun(seq, metrics, seconds_per_step=per_step, seconds_per_step_by_task=by_task)
