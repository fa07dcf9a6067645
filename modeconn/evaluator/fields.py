"""The evaluator settings several configs carry (EvalConfig, StudySettings, CurveConfig), each declared once: its
default, its help and its command-line bounds. Torch-free, so the CLI can build its options without importing torch."""
from __future__ import annotations

from dataclasses import field

from .data import DEFAULT_MAX_LENGTH

DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = (*DTYPE_NAMES, "auto")


def max_length_field():
    """``max_length``: tokens per example; None resolves to the one default (``resolve_max_length``)."""
    return field(default=None, metadata={
        "help": f"tokens per example, prompts cut from the left; one default everywhere [{DEFAULT_MAX_LENGTH}, or the "
                "base's positions if fewer]", "low": 2})


def max_batch_tokens_field():
    """``max_batch_tokens``: the evaluator's token budget per forward pass; None: ``auto_budget``."""
    return field(default=None, metadata={
        "help": "padded tokens per forward pass (points × examples × length); results agree across values to 1e-6 "
                "(float32 rounding of other batch shapes) [default: 4096 on a CPU; on CUDA from free memory]", "low": 1})


def dtype_field():
    """``dtype``: the base model's precision."""
    return field(default="float32", metadata={
        "help": "the precision the base model is loaded in (bfloat16 / float16 halve its memory; auto: bfloat16 where "
                "the device multiplies it fast, CUDA with bf16 or a CPU with AVX512-BF16/AMX, else float32, recorded as "
                "resolved); LoRA terms and the loss stay float32", "choices": DTYPE_CHOICES})
