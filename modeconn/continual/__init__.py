"""Continual LoRA training: a task stream, pluggable methods over one training loop, per-task checkpoints.

    config.py      TrainConfig: plain values, defaults in one place
    methods.py     the Method protocol (hooks with defaults), option declarations, shared helpers
    seq.py, er.py, ewc.py, mtl.py, ilora.py    one file per method; registry.py lists them by name
    options.py     flags and config files → TrainConfig + method options; the task stream
    prepare.py     a run's set-up;  trainer.py  the loop;  run_folder.py  its files;  state.py  resuming
    replay.py      the reservoir buffer;  metrics.py  the accuracy matrix, AP, BWT, FWT

Names are imported lazily, so reading a run's metrics does not load the trainer.
"""
from importlib import import_module

_EXPORTS = {"TrainConfig": "config", "ContinualMetrics": "metrics", "METHODS": "registry", "get_method": "registry",
            "train_sequence": "trainer", "TrainRun": "trainer"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
