"""Continual LoRA training: a task stream, pluggable methods over one training loop, per-task checkpoints."""
from .config import TrainConfig
from .methods import METHODS, Method, get_method
from .trainer import train_sequence

__all__ = ["TrainConfig", "METHODS", "Method", "get_method", "train_sequence"]
