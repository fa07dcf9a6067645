"""The shared continual training loop: one LoRA model, a stream of tasks, a method deciding each step's loss."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import collate, encode, load_split
from ..models import load_base
from ..sequence import Sequence, TaskEntry
from .config import TrainConfig
from .methods import Method


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(Path(path).resolve(), root.resolve())


def train_sequence(
    base: str,
    tasks: list[tuple[str, Path]],
    method: Method,
    config: TrainConfig,
    out: str | Path,
    name: str | None = None,
    device: str = "cpu",
) -> Sequence:
    """Train ``method`` on each ``(task name, task folder)`` in order; save a peft adapter per task and ``sequence.json``."""
    from peft import LoraConfig, get_peft_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(base, device=device)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(config.seed)
    entries = []
    for index, (task, folder) in enumerate(tasks):
        examples = encode(tokenizer, load_split(folder, "train", config.max_train), config.max_length)
        method.begin_task(model, task, index)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
        model.train()
        steps = config.epochs * -(-len(examples) // config.batch_size)
        bar = tqdm(total=steps, desc=f"{method.name} {index + 1}/{len(tasks)} {task}", leave=False)
        for _ in range(config.epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                batch = collate([examples[i] for i in order[start : start + config.batch_size]], tokenizer.pad_token_id)
                loss = method.training_step(model, {k: v.to(device) for k, v in batch.items()})
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        model.eval()
        method.end_task(model, task, index)
        model.save_pretrained(out / task)
        entries.append(TaskEntry(task, _relative(folder, out), task))
    seq = Sequence(name or out.name, base, tuple(entries), method.name, {"config": config.to_json()}, out)
    seq.save(out)
    (out / "command.sh").write_text(" ".join(shlex.quote(a) for a in sys.argv) + "\n")
    (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return seq
