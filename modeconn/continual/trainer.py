"""The shared continual training loop: one LoRA model, a stream of tasks, a method deciding each step's loss.

Writes, under ``out``: one peft adapter folder per task (the method's evaluated model), ``sequence.json``,
``metrics.json`` (the accuracy/loss matrix and AP, BWT, FWT), ``train_config.json`` and ``command.sh``.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import collate, encode, load_split
from ..errors import DataError
from ..evaluate import EvalConfig, evaluate_model
from ..models import load_base
from ..sequence import Sequence, TaskEntry
from .config import TrainConfig
from .methods import Batch, Method, TaskContext
from .metrics import ContinualMetrics

FAST = "default"


@dataclass
class TrainRun:
    sequence: Sequence
    metrics: ContinualMetrics


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), root.resolve())


def save_peft_adapter(model, adapter: str, folder: Path) -> None:
    """Save one named adapter of a PeftModel with peft's own ``save_pretrained``, as a plain adapter folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp, selected_adapters=[adapter], save_embedding_layers=False)
        saved = tmp if adapter == FAST else tmp / adapter
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(saved, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scores(model, tokenizer, tests, adapter: str, limit_config: EvalConfig) -> tuple[list[float], list[float]]:
    model.set_adapter(adapter)
    curves = evaluate_model(model, tokenizer, tests, limit_config)
    model.set_adapter(FAST)
    for name, p in model.named_parameters():  # set_adapter re-enables gradients of the active adapter only
        p.requires_grad_(".lora_" in name and f".{FAST}." in name)
    return [c.accuracy[0] for c in curves.values()], [c.loss[0] for c in curves.values()]


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
) -> TrainRun:
    """Train ``method`` on each ``(task name, task folder)`` in order; save adapters, manifest and metrics."""
    from peft import LoraConfig, get_peft_model

    out = Path(out)
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(base, device=device)
    train_sets = [encode(tokenizer, load_split(folder, "train", config.max_train), config.max_length) for _, folder in tasks]
    tests = {task: load_split(folder, eval_split, eval_limit) for task, folder in tasks}
    for (task, _), examples in zip(tasks, train_sets):
        if not examples:
            raise DataError(f"task {task}: the train split is empty")
    out.mkdir(parents=True, exist_ok=True)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(config.seed)
    to_device = lambda examples: {k: v.to(device) for k, v in collate(examples, tokenizer.pad_token_id).items()}  # noqa: E731
    eval_config = EvalConfig(max_length=config.max_length, progress=False)
    metrics = ContinualMetrics([t for t, _ in tasks], split=eval_split)
    metrics.initial_accuracy, metrics.initial_loss = _scores(model, tokenizer, tests, FAST, eval_config)
    eval_adapter = getattr(method, "eval_adapter", FAST)
    entries = []
    for index, (task, folder) in enumerate(tasks):
        select = getattr(method, "train_set", None)
        examples = select(train_sets[: index + 1]) if select else train_sets[index]
        ctx = TaskContext(model, task, index, examples, to_device, config.batch_size)
        method.begin_task(ctx)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        model.train()
        steps = config.epochs * -(-len(examples) // config.batch_size)
        bar = tqdm(total=steps, desc=f"{method.name} {index + 1}/{len(tasks)} {task}", leave=False, disable=not progress)
        for _ in range(config.epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                chosen = [examples[i] for i in order[start : start + config.batch_size]]
                loss = method.training_step(model, Batch(chosen, to_device(chosen)))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                method.after_step(model)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        model.eval()
        method.end_task(ctx)
        metrics.add_row(*_scores(model, tokenizer, tests, eval_adapter, eval_config))
        save_peft_adapter(model, eval_adapter, out / task)
        for label, adapter in getattr(method, "saved_adapters", {}).items():
            save_peft_adapter(model, adapter, out / label / task)
        entries.append(TaskEntry(task, _relative(folder, out), task))
    seq = Sequence(name or out.name, base, tuple(entries), method.name, {"config": config.to_json()}, out)
    seq.save(out)
    (out / "metrics.json").write_text(json.dumps({"method": method.name, **metrics.to_json()}, indent=2) + "\n")
    (out / "command.sh").write_text(" ".join(shlex.quote(a) for a in sys.argv) + "\n")
    (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return TrainRun(seq, metrics)
