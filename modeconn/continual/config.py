"""Training configuration: plain values, defaults visible in one place, a help string per field."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ConfigError


def _f(default, help: str):
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    rank: int = _f(8, "LoRA rank r")
    alpha: float = _f(32.0, "LoRA alpha; the update is scaled by alpha / r (32: the I-LoRA reference code)")
    dropout: float = _f(0.1, "dropout on the LoRA input during training (0.1: the I-LoRA reference code)")
    target_modules: tuple[str, ...] = _f(("q_proj", "k_proj", "v_proj", "o_proj"), "module names that get LoRA")
    lr: float = _f(2e-3, "AdamW learning rate")
    epochs: int = _f(3, "passes over each task's training split")
    batch_size: int = _f(16, "examples per optimizer step")
    max_length: int = _f(128, "tokens per example; prompts are cut from the left")
    max_train: int | None = _f(None, "use at most this many training examples per task (None: all of them)")
    seed: int = _f(0, "seed for LoRA initialisation and data order")

    def __post_init__(self):
        for name in ("rank", "epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not self.target_modules:
            raise ConfigError("target_modules is empty")

    def to_json(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


# The embedded default's own LoRA training settings (scripts/build_default.py): every linear module of the tiny LLaMA.
EMBEDDED_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EMBEDDED_TRAINING = dict(rank=8, alpha=16, dropout=0.0, target_modules=EMBEDDED_TARGETS, lr=3e-3, batch_size=16)
