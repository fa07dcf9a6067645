"""Training configuration: plain values, defaults visible in one place, a help string per field."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .. import checks
from ..errors import ConfigError


DTYPES = ("float32", "bfloat16", "float16", "auto")
SCHEDULERS = ("constant", "linear", "cosine")
OPTIMIZERS = ("adamw", "sgd")


def _f(default, help: str):
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    rank: int = _f(8, "LoRA rank r")
    alpha: float = _f(32.0, "LoRA alpha; the update is scaled by alpha / r (32: the I-LoRA reference code)")
    dropout: float = _f(0.1, "dropout on the LoRA input during training (0.1: the I-LoRA reference code)")
    target_modules: tuple[str, ...] | None = _f(None, "module names that get LoRA, or all-linear (None: peft's default "
                                                      "for the architecture, e.g. q_proj,v_proj for LLaMA)")
    lr: float = _f(2e-3, "learning rate of the optimizer")
    optimizer: str = _f("adamw", "adamw (no weight decay), or sgd: plain SGD, no momentum, no weight decay, as the A-GEM "
                                 "and GEM reference code trains (their projection bounds the memory loss only under it)")
    epochs: int = _f(3, "passes over each task's training split")
    batch_size: int = _f(16, "examples per optimizer step")
    max_length: int | None = _f(None, "tokens per example, prompts cut from the left (None: 1024, or the base's "
                                      "positions if fewer; the same default as the analysis commands)")
    max_train: int | None = _f(None, "use at most this many training examples per task (None: all of them)")
    seed: int = _f(0, "seed for LoRA initialisation and data order")
    dtype: str = _f("float32", "float32, bfloat16 or float16: the base weights are loaded in it, frozen, and the forward "
                               "runs under autocast; LoRA weights, optimizer state and the loss stay float32; float16 gets "
                               "loss scaling; auto: bfloat16 where the device multiplies it fast (CUDA with bf16, a CPU "
                               "with AVX512-BF16 or AMX), else float32, recorded as resolved")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass instead of keeping them "
                                             "(less memory, about a third more time)")
    grad_accum: int = _f(1, "micro-batches of batch_size per optimizer step: the effective batch is "
                            "batch_size × grad_accum × processes")
    lr_scheduler: str = _f("constant", "constant, linear or cosine decay of the learning rate, after the warm-up")
    warmup_ratio: float = _f(0.0, "fraction of the schedule's steps spent warming the learning rate up from 0")
    schedule_scope: str = _f("task", "task: each task's steps have their own schedule (each task gets a fresh optimizer, "
                                     "as LLMCL trains each task with its own Trainer run); stream: one schedule over the "
                                     "whole task stream")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this (LLMCL's HF Trainer uses 1.0); 0 turns clipping off")

    def __post_init__(self):
        """Every field checked, named in the message: this is where flags, config files and Python calls all meet."""
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (a frozen dataclass)
        for name in ("rank", "epochs", "batch_size"):
            set_(name, checks.count(name, getattr(self, name), 1, 1 << 20))
        set_("max_length", checks.optional_count("max_length", self.max_length, 2, 1 << 20))
        set_("max_train", checks.optional_count("max_train", self.max_train))
        set_("seed", checks.seed("seed", self.seed))
        set_("alpha", checks.finite("alpha", self.alpha, 0, low_open=True))
        set_("dropout", checks.finite("dropout", self.dropout, 0, 1, high_open=True))
        set_("lr", checks.finite("lr", self.lr, 0, low_open=True))
        checks.choice("dtype", self.dtype, DTYPES)
        checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        set_("grad_accum", checks.count("grad_accum", self.grad_accum, 1, 1 << 16))
        checks.choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        set_("warmup_ratio", checks.finite("warmup_ratio", self.warmup_ratio, 0, 1, high_open=True))
        checks.choice("schedule_scope", self.schedule_scope, ("task", "stream"))
        set_("max_grad_norm", checks.finite("max_grad_norm", self.max_grad_norm, 0))
        targets = self.target_modules
        if targets is None:
            return
        if isinstance(targets, str):
            targets = (targets,) if targets == "all-linear" else tuple(m.strip() for m in targets.split(",") if m.strip())
        if not isinstance(targets, (list, tuple)) or not all(isinstance(m, str) and m for m in targets):
            raise ConfigError(f"target_modules must be module names, got {self.target_modules!r}")
        if not targets:
            raise ConfigError("target_modules is empty")
        set_("target_modules", tuple(targets))

    def resolved(self, device: str) -> "TrainConfig":
        """This config with ``dtype="auto"`` turned into what ``device`` runs fast (bfloat16 or float32)."""
        from ..evaluator.precision import resolve_dtype

        return replace(self, dtype=resolve_dtype(self.dtype, device))

    def to_json(self) -> dict:
        d = asdict(self)
        d["target_modules"] = None if self.target_modules is None else list(self.target_modules)
        return d


# The embedded default's own LoRA training settings (scripts/build_default.py): every linear module of the tiny LLaMA.
EMBEDDED_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EMBEDDED_TRAINING = dict(rank=8, alpha=16, dropout=0.0, target_modules=EMBEDDED_TARGETS, lr=3e-3, batch_size=16)
