"""modeconn: mode connectivity and forgetting in continual LoRA fine-tuning.

    import modeconn
    result = modeconn.measure_barrier(["checkpoints/seq/news", "checkpoints/seq/gloss"], space="delta")
    print(result.table())

The package draws the pipeline: ``lora/`` (points in LoRA space, as data) → ``evaluator/`` (a base model + K points +
tasks → numbers) → ``analysis/`` (studies and their results) → ``plots/`` (pictures); ``continual/`` trains the task
sequences that the analysis side reads, and ``demo/`` runs the whole study on the embedded default.

Names are imported lazily, so ``import modeconn`` (and the CLI's ``--help``) stays fast and has no side effects.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    # points in LoRA space
    "LoraWeights": "lora.adapters", "load_adapter": "lora.adapters", "save_adapter": "lora.adapters",
    "check_compatible": "lora.adapters",
    "LoraPath": "lora.paths", "Span": "lora.paths", "linear_path": "lora.paths", "bezier_path": "lora.paths",
    "bernstein": "lora.paths", "uniform_ts": "lora.paths", "kind_path": "lora.paths",
    "PathKind": "lora.path_kinds",
    "Sequence": "lora.sequence", "load_sequence": "lora.sequence",
    # the evaluator
    "EvalConfig": "evaluator.evaluate", "PathEvaluation": "evaluator.evaluate", "evaluate_path": "evaluator.evaluate",
    "evaluate_points": "evaluator.evaluate", "evaluate_model": "evaluator.evaluate",
    "load_base": "evaluator.models", "checkpoints_dir": "evaluator.models",
    "Example": "evaluator.data", "load_examples": "evaluator.data", "load_split": "evaluator.data",
    "Fields": "evaluator.data", "TaskSource": "analysis.study",
    "get_scorer": "evaluator.scoring",
    # analyses and their results
    "Study": "analysis.study", "load_task_data": "analysis.study", "StudySettings": "analysis.settings",
    "measure_barrier": "analysis.measure", "fit_curve": "analysis.measure", "measure_plane": "analysis.measure",
    "measure_landscape": "analysis.measure", "sweep_sequence": "analysis.measure",
    "BarrierResult": "analysis.barrier", "loss_barrier": "analysis.barrier", "max_endpoint_barrier": "analysis.barrier",
    "mean_endpoint_barrier": "analysis.barrier", "accuracy_drop": "analysis.barrier", "joint_gap": "analysis.barrier",
    "SurfaceResult": "analysis.surface", "SweepResult": "analysis.sweep", "CurveConfig": "analysis.bezier",
    # pictures
    "load_result": "plots.kinds", "figure": "plots.kinds", "save_result": "plots.kinds",
    # continual training
    "TrainConfig": "continual", "TrainRequest": "continual", "train_sequence": "continual", "get_method": "continual", "METHODS": "continual",
    "ContinualMetrics": "continual", "EMBEDDED_TRAINING": "continual.config",
    # the main job
    "DemoConfig": "demo.config", "load_demo": "demo.config", "run_demo": "demo.run",
    "ModeconnError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'modeconn' has no attribute {name!r}")
