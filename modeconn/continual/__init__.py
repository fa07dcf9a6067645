"""Continual LoRA training: a task stream, pluggable methods over one training loop, per-task checkpoints."""
from .config import TrainConfig
from .metrics import ContinualMetrics
from .registry import METHODS, get_method
from .trainer import TrainRun, train_sequence

__all__ = ["TrainConfig", "ContinualMetrics", "METHODS", "get_method", "train_sequence", "TrainRun"]
