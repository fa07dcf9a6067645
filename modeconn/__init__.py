"""modeconn: mode connectivity and forgetting in continual LoRA fine-tuning.

    import modeconn
    result = modeconn.measure_barrier("checkpoints/seq/news", "checkpoints/seq/gloss", space="delta")
    print(result.table())

Names are imported lazily, so ``import modeconn`` (and the CLI's ``--help``) stays fast and has no side effects.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "LoraWeights": "adapters", "load_adapter": "adapters", "save_adapter": "adapters", "check_compatible": "adapters",
    "Path": "paths", "linear_path": "paths", "bezier_path": "paths", "bernstein": "paths", "uniform_ts": "paths",
    "EvalConfig": "evaluate", "PathEvaluation": "evaluate", "evaluate_path": "evaluate",
    "BarrierResult": "barrier", "loss_barrier": "barrier", "max_endpoint_barrier": "barrier",
    "mean_endpoint_barrier": "barrier", "accuracy_drop": "barrier",
    "measure_barrier": "analysis", "load_task_data": "analysis", "fit_curve": "analysis",
    "measure_plane": "analysis", "measure_landscape": "analysis", "sweep_sequence": "analysis",
    "Span": "paths", "evaluate_points": "evaluate", "joint_gap": "barrier",
    "SurfaceResult": "surface", "SweepResult": "sweep", "CurveConfig": "bezier", "load_result": "results",
    "load_base": "models", "Sequence": "sequence", "load_sequence": "sequence",
    "Example": "data", "load_examples": "data", "load_split": "data",
    "ModeconnError": "errors",
    "evaluate_model": "evaluate", "get_scorer": "scoring",
    "TrainConfig": "continual", "train_sequence": "continual", "get_method": "continual", "METHODS": "continual",
    "ContinualMetrics": "continual",
    "checkpoints_dir": "models", "figure": "results", "save_result": "results",
    "DemoConfig": "demo", "run_demo": "demo", "load_demo": "demo", "EMBEDDED_TRAINING": "demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'modeconn' has no attribute {name!r}")
