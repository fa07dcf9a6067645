"""The evaluator against plain peft on tiny random bases of many architectures (peft's TEST_CASES idea: one table).

For each architecture and each adapter setting (peft's default targets and all-linear, rank 4 and 8, rsLoRA, rank and
alpha patterns), two adapters written by peft itself: the path's endpoints, its ΔW-space midpoint and its factor-space
midpoint must give the loss peft's own forward gives for the same weights (within 1e-4). Gemma-2 soft-caps its logits
(cap 5 on logits of about ±10, far from the identity), Granite divides them, Cohere scales them: those scores must come through the model's
own logit path. OPT's MLP sees its batch flattened to [rows·length, features]."""
from __future__ import annotations

import pytest
import torch
import transformers as tr

from helpers import peft_loss
from modeconn.evaluator.data import Example
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.lora.adapters import load_adapter, save_adapter
from modeconn.lora.paths import linear_path

SMALL = dict(vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, bos_token_id=1, eos_token_id=2,
             pad_token_id=3)
ARCHITECTURES = {
    "llama": (tr.LlamaConfig, dict(intermediate_size=128, num_key_value_heads=2)),
    "qwen2": (tr.Qwen2Config, dict(intermediate_size=128, num_key_value_heads=2)),
    "mistral": (tr.MistralConfig, dict(intermediate_size=128, num_key_value_heads=2)),
    "gpt_neox": (tr.GPTNeoXConfig, dict(intermediate_size=128)),
    "phi": (tr.PhiConfig, dict(intermediate_size=128)),
    "phi3": (tr.Phi3Config, dict(intermediate_size=128)),
    "gemma": (tr.GemmaConfig, dict(intermediate_size=128, num_key_value_heads=1, head_dim=16)),
    "gemma2": (tr.Gemma2Config, dict(intermediate_size=128, num_key_value_heads=2, head_dim=16, final_logit_softcapping=5.0)),
    "granite": (tr.GraniteConfig, dict(intermediate_size=128, logits_scaling=4.0)),
    "cohere": (tr.CohereConfig, dict(intermediate_size=128, logit_scale=0.25)),
    "gpt2": (tr.GPT2Config, dict(n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    "opt": (tr.OPTConfig, dict(ffn_dim=128, word_embed_proj_dim=64, max_position_embeddings=256)),
    "falcon": (tr.FalconConfig, dict()),
}
# (label, LoraConfig arguments); "default" targets are peft's own for the architecture (all-linear where it has none)
SETTINGS = [
    ("default-r4", dict(r=4, lora_alpha=8)),
    ("all-linear-r8-rslora", dict(r=8, lora_alpha=8, target_modules="all-linear", use_rslora=True)),
    ("default-r8-patterns", dict(r=8, lora_alpha=16, patterns=True)),
    ("all-linear-r4-patterns", dict(r=4, lora_alpha=4, target_modules="all-linear", patterns=True)),
]
EXAMPLES = [Example("Which topic is this story about?\nShares rose sharply on Monday\nTopic:", "business"),
            Example("short", "sport"), Example("a longer prompt " * 10, "tech and more words")]
QUIET = EvalConfig(accuracy=False, progress=False)


def tiny(kind: str):
    config_class, extra = ARCHITECTURES[kind]
    fields = {k: v for k, v in SMALL.items() if kind != "gpt2" or k in ("vocab_size", "bos_token_id", "eos_token_id")}
    torch.manual_seed(0)
    model = tr.AutoModelForCausalLM.from_config(config_class(**fields, **extra)).eval()
    if kind == "gemma2":  # logits of about ±10, where a cap of 5 is far from the identity
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(30)
    return model


def adapters(model, kind: str, setting: dict, folder) -> list[str]:
    """Two peft adapters with random A and B (seeds 0 and 1)."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    setting = dict(setting)
    targets = setting.pop("target_modules", None) or DEFAULTS.get(model.config.model_type, "all-linear")
    if setting.pop("patterns", False):
        from modeconn.continual.prepare import linear_modules

        first = sorted(targets)[0] if isinstance(targets, list) else linear_modules(model)[0]
        setting.update(rank_pattern={first: 2}, alpha_pattern={first: 3})
    out = []
    for seed in range(2):
        torch.manual_seed(seed)
        config = LoraConfig(target_modules=targets, init_lora_weights=False, fan_in_fan_out=kind == "gpt2", **setting)
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(folder / f"a{seed}", save_embedding_layers=False)
        peft_model.unload()
        out.append(str(folder / f"a{seed}"))
    return out


CASES = [(kind, label, setting) for kind in ARCHITECTURES for label, setting in SETTINGS]


@pytest.mark.parametrize("kind,label,setting", CASES, ids=[f"{k}-{label}" for k, label, _ in CASES])
def test_endpoints_and_midpoints_equal_plain_peft(kind, label, setting, tokenizer, tmp_path):
    model = tiny(kind)
    folders = adapters(model, kind, setting, tmp_path)
    a, b = (load_adapter(f) for f in folders)
    config = {"fan_in_fan_out": kind == "gpt2"}
    for space in ("factor", "delta"):
        path = linear_path(a, b, space)
        losses = evaluate_path(model, tokenizer, path, [0.0, 0.5, 1.0], {"x": EXAMPLES}, QUIET).tasks["x"].loss
        midpoint = save_adapter(path.at(0.5), tmp_path / f"mid-{space}", {**a.config, **config})
        references = [peft_loss(model, folders[0], tokenizer, EXAMPLES), peft_loss(model, str(midpoint), tokenizer, EXAMPLES),
                      peft_loss(model, folders[1], tokenizer, EXAMPLES)]
        assert losses == pytest.approx(references, abs=1e-4), (space, losses, references)


def test_gemma2_scores_are_soft_capped_as_the_model_caps_them(tokenizer, tmp_path):
    """Without the cap the loss differs by far more than the tolerance: the check above can fail."""
    model = tiny("gemma2")
    folders = adapters(model, "gemma2", dict(r=4, lora_alpha=8), tmp_path)
    capped = evaluate_path(model, tokenizer, linear_path(*(load_adapter(f) for f in folders)), [0.0], {"x": EXAMPLES},
                           QUIET).tasks["x"].loss[0]
    model.config.final_logit_softcapping = None
    uncapped = evaluate_path(model, tokenizer, linear_path(*(load_adapter(f) for f in folders)), [0.0], {"x": EXAMPLES},
                             QUIET).tasks["x"].loss[0]
    assert abs(capped - uncapped) > 1e-2


def test_expert_layers_of_a_mixture_of_experts_are_refused_by_name(tokenizer):
    from modeconn.errors import CompatibilityError
    from modeconn.lora.adapters import LoraWeights

    model = tiny("llama")
    name = "model.layers.0.mlp.experts.3.down_proj"
    weights = LoraWeights({name: (torch.zeros(2, 128), torch.zeros(64, 2))}, {name: 1.0}, "x")
    with pytest.raises(CompatibilityError, match="experts.3.down_proj: LoRA on mixture-of-experts"):
        evaluate_path(model, tokenizer, linear_path(weights, weights), [0.0, 1.0], {"x": EXAMPLES}, QUIET)
