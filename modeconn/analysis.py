"""One-call analyses for Python users and the CLI: checkpoints → path → evaluator → result."""
from __future__ import annotations

from pathlib import Path as FsPath

import torch

from .adapters import LoraWeights, load_adapter
from .barrier import BarrierResult
from .data import Example, load_examples, load_split
from .errors import CheckpointError, DataError
from .evaluate import EvalConfig, evaluate_path
from .models import load_base
from .paths import bezier_path, linear_path, uniform_ts
from .scoring import get_scorer
from .sequence import find_sequence


def parse_data_spec(spec: str, split: str = "eval") -> tuple[str, FsPath]:
    """``NAME=PATH`` or ``PATH``; a folder means its ``split`` file; the name defaults to the task folder's name."""
    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    p = FsPath(path)
    if not p.exists():
        raise DataError(f"{p}: data file or task folder not found")
    if not name:
        name = p.name if p.is_dir() else (p.parent.name if p.stem in ("train", "eval", "test") else p.stem)
    return name, p


def load_task_data(specs: list[str], split: str = "eval", limit: int | None = None) -> dict[str, list[Example]]:
    tasks = {}
    for spec in specs:
        name, p = parse_data_spec(spec, split)
        tasks[name] = load_split(p, split, limit) if p.is_dir() else load_examples(p, limit)
    return tasks


def manifest_data(adapter_dirs: list[str], split: str = "eval", limit: int | None = None) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """The ``split`` of each adapter's task, and the task's metric, as recorded in the manifest beside it (if any)."""
    tasks, metrics = {}, {}
    for adapter in adapter_dirs:
        seq = find_sequence(adapter) if FsPath(adapter).is_dir() else None
        if seq is not None:
            entry = seq.task_for_adapter(adapter)
            tasks[entry.name] = load_split(seq.data_dir(entry), split, limit)
            get_scorer(entry.metric)
            metrics[entry.name] = entry.metric
    return tasks, metrics


def resolve_base_name(adapters: list[LoraWeights], adapter_dirs: list[str], base: str | None) -> str:
    if base:
        return base
    for adapter in adapter_dirs:
        seq = find_sequence(adapter) if FsPath(adapter).is_dir() else None
        if seq is not None:
            return seq.base_model
    if adapters[0].base_model:
        return adapters[0].base_model
    raise CheckpointError("the adapter does not name its base model; pass --base")


def measure_barrier(
    a: str,
    b: str,
    data: list[str] | None = None,
    space: str = "factor",
    points: int = 11,
    path: str = "linear",
    control: str | None = None,
    base: str | None = None,
    split: str = "eval",
    limit: int | None = None,
    manifest: bool = True,
    seed: int = 0,
    device: str = "cpu",
    allow_pickle: bool = False,
    eval_config: EvalConfig = EvalConfig(),
) -> BarrierResult:
    """Loss and accuracy of each task along the path from adapter ``a`` to ``b``, with its barriers."""
    ts = uniform_ts(points)
    torch.manual_seed(seed)
    ends = [load_adapter(a, allow_pickle), load_adapter(b, allow_pickle)]
    if path == "bezier":
        if control is None:
            raise DataError("a Bézier path needs --control (the curve's control-point adapter)")
        fitted = FsPath(control) / "curve.json"
        if fitted.is_file():
            import json

            fitted_space = json.loads(fitted.read_text()).get("space")
            if fitted_space != space:
                raise DataError(f"{control} was fitted in {fitted_space} space; pass --space {fitted_space}")
        the_path = bezier_path(ends[0], load_adapter(control, allow_pickle), ends[1], space, base_given=bool(base))
    else:
        the_path = linear_path(ends[0], ends[1], space, base_given=bool(base))
    tasks, metrics = manifest_data([a, b], split, limit) if manifest else ({}, {})
    tasks.update(load_task_data(data or [], split, limit))
    if not tasks:
        raise DataError("no evaluation data: the adapters have no sequence.json beside them; pass --data FILE_OR_TASK_FOLDER")
    base_name = resolve_base_name(ends, [a, b], base)
    model, tokenizer = load_base(base_name, device=device)
    evaluation = evaluate_path(model, tokenizer, the_path, ts, tasks, eval_config, metrics)
    return BarrierResult.from_evaluation(evaluation, path, space, [str(a), str(b)], base_name, split=split, seed=seed,
                                         extra={"control": str(control)} if control else {})


def fit_curve(
    a: str,
    b: str,
    data: list[str] | None = None,
    space: str = "factor",
    base: str | None = None,
    limit: int | None = None,
    manifest: bool = True,
    device: str = "cpu",
    allow_pickle: bool = False,
    config=None,
    progress: bool = True,
):
    """Fit a quadratic Bézier control point between adapters ``a`` and ``b`` on both tasks' training data."""
    from .bezier import CurveConfig, fit_bezier

    config = config or CurveConfig()
    ends = [load_adapter(a, allow_pickle), load_adapter(b, allow_pickle)]
    linear_path(ends[0], ends[1], space, base_given=bool(base))  # validates the pair before any work
    tasks, _ = manifest_data([a, b], "train", limit) if manifest else ({}, {})
    tasks.update(load_task_data(data or [], "train", limit))
    if not tasks:
        raise DataError("no training data: the adapters have no sequence.json beside them; pass --data TASK_FOLDER")
    model, tokenizer = load_base(resolve_base_name(ends, [a, b], base), device=device)
    train = [example for examples in tasks.values() for example in examples]
    fit = fit_bezier(model, tokenizer, ends[0], ends[1], train, space, config, progress)
    fit.endpoints = [str(a), str(b)]
    return fit


__all__ = ["measure_barrier", "fit_curve", "load_task_data", "manifest_data"]
