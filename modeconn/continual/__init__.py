"""Continual LoRA training: a task stream, pluggable methods over one training loop, per-task checkpoints.

    config.py      TrainConfig: plain values, defaults in one place
    request.py     TrainRequest: base, tasks, method, config and evaluation settings, checked once, passed whole
    methods/       one file per method, the Method protocol the loop calls, the pieces methods share, the registry
    options.py     flags and config files → a TrainRequest;  old_names.py  renamed flags, keys, recorded options
    prepare.py     a run's set-up;  trainer.py  the loop;  run_folder.py  its files;  state.py  resuming
    metrics.py     the accuracy matrix, AP, BWT, FWT;  compare*.py  runs over seeds side by side

Names are imported lazily, so reading a run's metrics does not load the trainer.
"""
from importlib import import_module

_EXPORTS = {"TrainConfig": "config", "ContinualMetrics": "metrics", "METHODS": "methods.registry", "get_method": "methods.registry",
            "train_sequence": "trainer", "TrainRun": "trainer", "TrainRequest": "request"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
