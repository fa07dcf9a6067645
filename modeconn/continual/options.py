"""Turning `modeconn train` flags and an optional YAML/JSON config file into a TrainConfig, method options and tasks.

The method options are not listed here: they come from the methods' own declarations (``registry.declared_options``).
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from ..errors import ConfigError, DataError
from ..evaluator.data import split_file
from ..lora.sequence import MANIFEST, load_sequence
from .config import TrainConfig
from .registry import declared_options

RUN_KEYS = {"method", "base", "tasks", "order", "eval_split", "eval_limit"}  # config keys that are not TrainConfig's


def read_config_file(path: str | None) -> dict:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text())
        else:
            data = json.loads(p.read_text())
    except Exception as exc:
        raise ConfigError(f"{p}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def resolve(method: str, file_values: dict, flag_values: dict) -> tuple[TrainConfig, dict]:
    """Merge (flags win over the file); return the TrainConfig and the method's options."""
    declared = declared_options()
    known = {f.name for f in fields(TrainConfig)} | set(declared) | RUN_KEYS
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(known)}")
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    train = {f.name: merged[f.name] for f in fields(TrainConfig) if f.name in merged}
    if isinstance(train.get("target_modules"), str):
        train["target_modules"] = tuple(m.strip() for m in train["target_modules"].split(",") if m.strip())
    elif "target_modules" in train:
        train["target_modules"] = tuple(train["target_modules"])
    try:
        config = TrainConfig(**train)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    options = {opt.name: merged[key] for key, opt in declared.items() if key in merged and method in opt.defaults}
    return config, options


def resolve_tasks(tasks: str, order: str | None) -> tuple[list[tuple[str, Path]], str | None, dict[str, str]]:
    """A sequence manifest (its task order, data and metrics) or a data root (its task folders, sorted or in ``order``)."""
    root = Path(tasks)
    if root.is_file() or (root / MANIFEST).is_file():
        seq = load_sequence(root)
        chosen = [(t.name, seq.data_dir(t)) for t in seq.tasks]
        base = seq.base_model
        metrics = {t.name: t.metric for t in seq.tasks}
    elif root.is_dir():
        chosen = [(p.name, p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        base, metrics = None, {}
    else:
        raise DataError(f"{root}: no such task sequence (a sequence.json or a folder of task folders)")
    if order:
        names = [n.strip() for n in order.split(",") if n.strip()]
        by_name = dict(chosen)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DataError(f"--order names task(s) {missing} not found in {root}; it has {sorted(by_name)}")
        chosen = [(n, by_name[n]) for n in names]
    if not chosen:
        raise DataError(f"{root}: holds no task folders")
    for name, folder in chosen:
        split_file(folder, "train")
    return chosen, base, metrics
