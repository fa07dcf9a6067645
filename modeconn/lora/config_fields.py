"""Every field of peft's ``LoraConfig``, decided in one table: ignored (no effect on the forward pass), supported (the
evaluator reproduces peft's forward), or refused with one line, so that an adapter is analysed exactly or not at all."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal", "mica")  # base weights untouched, on training and on load
RESIDUAL_INITS = ("pissa", "olora", "corda", "astra", "loftq", "lora_ga")  # these move the base weights at init
CONVERT = "path_initial_model_for_weight_conversion"


@dataclass(frozen=True)
class Decision:
    """What loading does with one field: ``effect`` is ignored / supported / refused; ``refusal(value)`` is the
    one-line reason a value is refused, or None."""

    effect: str
    note: str
    refusal: Callable[[Any], str | None] = lambda value: None


def _ignored(note: str) -> Decision:
    return Decision("ignored", note)


def _supported(note: str) -> Decision:
    return Decision("supported", note)


def _refused(note: str, why: str, is_set: Callable[[Any], bool] = bool) -> Decision:
    return Decision("refused", note, lambda value: why if is_set(value) else None)


def _not_none(value) -> bool:
    return value is not None


def _init_refusal(value) -> str | None:
    if isinstance(value, bool) or value in PLAIN_INITS:
        return None
    if isinstance(value, str) and (value.startswith("pissa") or value in RESIDUAL_INITS):
        return (f"saved unconverted, it is a LoRA on a residual base that peft re-derives from the base weights when it "
                f"loads the adapter; convert it with save_pretrained(..., {CONVERT}=...) (peft's conversion to a plain "
                f"LoRA on the original base) and pass that")
    return "an initialisation modeconn does not know; it may move the base weights"


_VARIANT = "a LoRA variant whose forward is not scaling · B A"
FIELDS: dict[str, Decision] = {
    "task_type": _ignored("metadata; the base is scored as a causal LM"),
    "peft_type": Decision("ignored", "metadata; anything but LORA is refused",
                          lambda v: "modeconn works on LoRA adapters" if v not in (None, "LORA") else None),
    "auto_mapping": _ignored("metadata"),
    "peft_version": _ignored("metadata"),
    "base_model_name_or_path": Decision("ignored", "names the base to load unless --base is given; not a string: "
                                        "refused", lambda v: "must be a model name or folder (a string)"
                                        if v is not None and not isinstance(v, str) else None),
    "revision": _ignored("metadata (the base's hub revision; pass --base to choose the base)"),
    "inference_mode": _ignored("training switch"),
    "r": _supported("ranks are read from the tensors; rank 0 is refused"),
    "target_modules": _supported("the adapted modules are read from the tensors"),
    "exclude_modules": _supported("only chooses the modules at creation; the tensors say which are adapted"),
    "lora_alpha": _supported("scale alpha / r"),
    "lora_dropout": _supported("no dropout when scoring (peft's eval mode)"),
    "fan_in_fan_out": _supported("storage of the base weight only (GPT-2 Conv1D); the factors are used as stored"),
    "bias": _refused("'none' only", "the adapter trains and saves the base's biases too; modeconn walks LoRA factors "
                     "only (train with bias='none')", lambda v: v not in (None, "none")),
    "use_rslora": _supported("scale alpha / sqrt(r)"),
    "modules_to_save": _refused("refused when set", "the adapter carries full copies of these modules, which are not "
                                "LoRA factors"),
    "init_lora_weights": Decision("supported", "True, False, 'gaussian', 'eva', 'orthogonal', 'mica' (the base is left "
                                  "as it is); 'pissa*', 'olora', 'corda', 'astra', 'loftq', 'lora_ga' saved "
                                  f"unconverted are refused (convert with {CONVERT})", _init_refusal),
    "layers_to_transform": _supported("only chooses the modules at creation; the tensors say which are adapted"),
    "layers_pattern": _supported("only chooses the modules at creation; the tensors say which are adapted"),
    "rank_pattern": _supported("per-module ranks, read from the tensors"),
    "alpha_pattern": _supported("per-module alpha in the scale"),
    "megatron_config": _refused("refused when set", "LoRA on Megatron tensor-parallel layers; load it with peft into "
                                "a transformers model, save it, and pass that"),
    "megatron_core": _ignored("used only with megatron_config"),
    "trainable_token_indices": _refused("refused when set", "the adapter trains token embeddings too, which are not "
                                        "LoRA factors"),
    "loftq_config": _ignored("used only with init_lora_weights='loftq' (refused)"),
    "eva_config": _ignored("used only to initialise (init_lora_weights='eva')"),
    "corda_config": _ignored("used only with init_lora_weights='corda' (refused)"),
    "lora_ga_config": _ignored("used only with init_lora_weights='lora_ga' (refused)"),
    "astra_config": _ignored("used only with init_lora_weights='astra' (refused; peft 0.22 on)"),
    "use_dora": _refused("refused", "a DoRA adapter; its magnitude vector is not a low-rank update, so paths are "
                         "undefined"),
    "velora_config": _supported("changes the backward pass only; the forward is plain LoRA"),
    "alora_invocation_tokens": _refused("refused when set", "an activated LoRA (aLoRA) applies only from its "
                                        "invocation tokens on, which the evaluator does not mask", _not_none),
    "use_qalora": _refused("refused", "QA-LoRA pools the input before A (for GPTQ bases)"),
    "qalora_group_size": _ignored("used only with use_qalora (refused)"),
    "monteclora_config": _refused("refused when set", f"MonteCLoRA: {_VARIANT}", _not_none),
    "layer_replication": _refused("refused when set", "the adapter stacks repeated base layers, a different model "
                                  "than the base"),
    "runtime_config": _ignored("runtime switch"),
    "lora_bias": _refused("refused", "lora_B has a bias, which the evaluator does not add"),
    "target_parameters": _refused("refused when set", "LoRA on bare parameters (mixture-of-experts weights), not on "
                                  "linear layers"),
    "use_bdlora": _refused("refused when set", f"block-diagonal LoRA (BD-LoRA): {_VARIANT}", _not_none),
    "arrow_config": _refused("refused when set", f"Arrow routing between LoRA experts: {_VARIANT}", _not_none),
    "kasa_config": _refused("refused when set", "KaSA truncates the base weights and scales by learned singular "
                            "values", _not_none),
    "ensure_weight_tying": _ignored("acts only with modules_to_save or trainable_token_indices (refused)"),
}


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refusal(config: dict) -> str | None:
    """The one-line reason the adapter config cannot be analysed exactly, or None. A field peft does not have here (a
    newer peft wrote it) is refused when it is set, since what it does is unknown."""
    for name, value in config.items():
        decision = FIELDS.get(name)
        if decision is None:
            if value not in (None, False, 0, "", [], {}):
                return f"{name}={_shown(value)}: a LoraConfig field this peft does not know (a newer peft?); modeconn " \
                       "cannot tell whether it changes the forward pass"
            continue
        why = decision.refusal(value)
        if why:
            return f"{name}={_shown(value)}: {why}"
    return None
