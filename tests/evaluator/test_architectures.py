"""The evaluator against plain peft on tiny random bases of many architectures (peft's TEST_CASES idea: one table).

For each architecture and each adapter setting (peft's default targets and all-linear, rank 4 and 8, rsLoRA, rank and
alpha patterns), two adapters written by peft itself: the path's endpoints, its ΔW-space midpoint and its factor-space
midpoint must give the loss peft's own forward gives for the same weights (within 1e-4). Gemma-2 soft-caps its logits
(cap 5 on logits of about ±10, far from the identity), Granite divides them, Cohere scales them: those scores must come through the model's
own logit path. OPT's MLP sees its batch flattened to [rows·length, features].

Then the walk: every causal LM of the installed transformers, built tiny from its config class's defaults
(tests/tiny_configs.py), with the LoRA targets ``modeconn train`` would choose for it, is ✓ (endpoints and the ΔW
midpoint equal peft's own forward) or refused in one line; the few that cannot be built tiny on CPU are skipped with
the reason. A representative part runs in the default suite, the rest is marked slow."""
from __future__ import annotations

import re

import peft
import pytest
import torch
import transformers as tr
from packaging.version import Version
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from helpers import peft_loss
from tiny_configs import tiny_causal_lm
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


# ---- the walk over every causal LM of the installed transformers ----

_NOT_TINY = "the shrunk defaults make no consistent tiny config"
SKIPPED = {  # model type → why it is not built tiny here
    "bailing_hybrid": f"{_NOT_TINY} (linear-attention head sizes)",
    "bamba": f"{_NOT_TINY} (validate_architecture: Mamba head sizes)",
    "blt": f"{_NOT_TINY} (byte patcher sizes; 10 s even so)",
    "cohere_compass_text": f"{_NOT_TINY} (layer types)",
    "dbrx": f"{_NOT_TINY} (nested attention config)",
    "deepseek_v4": f"{_NOT_TINY} (compressed-attention sizes)",
    "dory": f"{_NOT_TINY} (attention sizes)",
    "dots1": f"{_NOT_TINY} (expert sizes)",
    "dots3_note": f"{_NOT_TINY} (per-layer config of the vision-language model)",
    "ernie4_5_moe": f"{_NOT_TINY} (top-k over experts)",
    "gemma3n": "its vision tower needs the timm package, not installed",
    "gemma3n_text": f"{_NOT_TINY} (KV-sharing layer types)",
    "gemma4_assistant": f"{_NOT_TINY} (validate_architecture)",
    "gemma4_unified_assistant": "a draft model: its forward needs the target model's shared KV states",
    "gpt_neo": f"{_NOT_TINY} (attention_types per layer)",
    "granitemoehybrid": f"{_NOT_TINY} (validate_architecture: Mamba head sizes)",
    "hunyuan_v1_dense": f"{_NOT_TINY} (rope scaling)",
    "hunyuan_v1_moe": f"{_NOT_TINY} (rope scaling)",
    "kimi_linear": f"{_NOT_TINY} (top-k over experts; 5 s even so)",
    "kolibri1_1": f"{_NOT_TINY} (validate_architecture)",
    "lfm2_moe": f"{_NOT_TINY} (layer types)",
    "mamba2": f"{_NOT_TINY} (validate_architecture: Mamba head sizes)",
    "mimo_v2_flash": f"{_NOT_TINY} (sliding-window head counts)",
    "ministral": f"{_NOT_TINY} (rope scaling)",
    "musicgen": "a text-to-audio model: its config has no top-level decoder sizes",
    "musicgen_melody": "a text-to-audio model: its config has no top-level decoder sizes",
    "nemotron": f"{_NOT_TINY} (partial rotary factor)",
    "qwen4_exp": f"{_NOT_TINY} (linear-attention sizes)",
    "qwen4_exp_text": f"{_NOT_TINY} (linear-attention sizes)",
    "reformer": "its causal LM head needs is_decoder and chunked-attention settings",
    "xlstm": f"{_NOT_TINY} (mLSTM head sizes)",
    "xmod": "needs a default language adapter chosen before its forward (set_default_language)",
    "zamba": f"{_NOT_TINY} (hybrid layer types)",
    "zamba2": f"{_NOT_TINY} (hybrid layer types)",
    "zaya": f"{_NOT_TINY} (validate_architecture)",
}
REFUSED = {  # model type → the one line it is refused with
    "prophetnet": "not [rows, length, hidden] (several prediction streams?)",
    "xlnet": "transformer.layer.0.ff.layer_1: this layer sees its input as",  # length-first layout
}
if Version(peft.__version__) < Version("0.22"):  # peft 0.21 saved beam's walk adapter with bare expert parameters
    REFUSED["beam"] = "target_parameters"  # (target_parameters), which the reader refuses; 0.22's is scored exactly
REPRESENTATIVE = {"llama", "gpt2", "bloom", "gpt_bigcode", "opt", "mixtral", "qwen3_moe", "deepseek_v3", "mamba",
                  "falcon_h1", "jamba", "rwkv", "bert", "big_bird", "ctrl", "gemma2", "qwen3_next", "recurrent_gemma",
                  "prophetnet", "xlnet"}
WALK_EXAMPLES = EXAMPLES[:2]


def walk_targets(model) -> list[str]:
    """What ``modeconn train`` adapts on this base by default (peft's default targets that fit, or the advice of its
    refusal: every linear layer a run can train and the evaluator can analyse)."""
    from modeconn.continual.config import TrainConfig
    from modeconn.continual.prepare import lora_targets, usable_modules
    from modeconn.errors import ConfigError

    try:
        return lora_targets(model, TrainConfig())
    except ConfigError:
        return usable_modules(model)


def peft_forward_loss(model, folder, tokenizer, examples) -> float:
    """peft's own forward with the adapter's tensors copied into its LoRA layers: ``PeftModel.from_pretrained`` drops
    some (Laguna's ``shared_experts``, renamed by transformers' checkpoint conversion), and peft reads the short
    ``target_modules`` a midpoint is saved with more widely than meant where a module is named ``0`` (CTRL, GIT)."""
    from pathlib import Path

    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from modeconn.evaluator.data import collate, encode

    tensors = load_file(str(Path(folder) / "adapter_model.safetensors"))
    names = sorted({k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in tensors})
    config = LoraConfig.from_pretrained(folder)
    config.target_modules = "^(" + "|".join(map(re.escape, names)) + ")$"
    peft_model = get_peft_model(model, config).eval()
    params = {name.replace(".default", ""): p for name, p in peft_model.named_parameters()}  # key names as saved
    batch = collate(encode(tokenizer, examples), tokenizer.pad_token_id)
    with torch.no_grad():
        for key, value in tensors.items():
            params[key].copy_(value)
        logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    peft_model.unload()
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).double(), labels.flatten(), ignore_index=-100,
                                            reduction="sum")
    return (nll / (labels != -100).sum()).item()


def walk_case(model_type: str, folder, tokenizer) -> tuple[list[float], list[float]]:
    """(evaluator losses at t = 0, ½, 1 of the ΔW path, peft's) for two random adapters on the walk's targets."""
    from peft import LoraConfig, get_peft_model

    model = tiny_causal_lm(model_type)
    targets = walk_targets(model)
    fan_in_fan_out = any(type(m).__name__ == "Conv1D" for m in model.modules())
    folders = []
    for seed in range(2):
        torch.manual_seed(seed)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, fan_in_fan_out=fan_in_fan_out)
        peft_model = get_peft_model(model, config)
        peft_model.save_pretrained(folder / f"a{seed}", save_embedding_layers=False)
        peft_model.unload()
        folders.append(folder / f"a{seed}")
    a, b = (load_adapter(f) for f in folders)
    path = linear_path(a, b, "delta")
    losses = evaluate_path(model, tokenizer, path, [0.0, 0.5, 1.0], {"x": WALK_EXAMPLES}, QUIET).tasks["x"].loss
    midpoint = save_adapter(path.at(0.5), folder / "mid", {**a.config, "fan_in_fan_out": fan_in_fan_out})
    return losses, [peft_forward_loss(model, f, tokenizer, WALK_EXAMPLES) for f in (folders[0], midpoint, folders[1])]


def _walk_param(model_type: str):
    marks = [] if model_type in REPRESENTATIVE else [pytest.mark.slow]
    return pytest.param(model_type, marks=marks, id=model_type)


@pytest.mark.parametrize("model_type", [_walk_param(t) for t in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)])
def test_every_causal_lm_is_exact_or_refused_in_one_line(model_type, tokenizer, tmp_path):
    from modeconn.errors import ModeconnError

    if model_type in SKIPPED:
        pytest.skip(SKIPPED[model_type])
    if model_type in REFUSED:
        with pytest.raises(ModeconnError) as refusal:
            walk_case(model_type, tmp_path, tokenizer)
        assert REFUSED[model_type] in str(refusal.value) and "\n" not in str(refusal.value)
        return
    losses, references = walk_case(model_type, tmp_path, tokenizer)
    assert losses == pytest.approx(references, abs=1e-4), (losses, references)


def _peft_adapter(model, folder, seed: int = 0, **lora) -> str:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora))
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    peft_model.unload()
    return str(folder)


def test_a_layer_the_model_multiplies_by_itself_is_refused_by_name(tokenizer, tmp_path):
    """Mamba's mixer computes ``dt_proj.weight @ x`` instead of calling dt_proj: peft's LoRA there changes nothing."""
    from modeconn.errors import CompatibilityError

    model = tiny_causal_lm("mamba")
    folder = _peft_adapter(model, tmp_path / "a", target_modules=["dt_proj"])
    base = evaluate_path(model, tokenizer, linear_path(*[load_adapter(_peft_adapter(model, tmp_path / "x", target_modules=["x_proj"]))] * 2),
                         [0.0], {"x": WALK_EXAMPLES}, QUIET)  # x_proj is called: scored as peft scores it
    assert base.tasks["x"].loss[0] == pytest.approx(peft_forward_loss(model, tmp_path / "x", tokenizer, WALK_EXAMPLES), abs=1e-4)
    with pytest.raises(CompatibilityError, match=r"backbone\.layers\.0\.mixer\.dt_proj: the model multiplies by this "
                                                 r"layer's weight itself.*leave dt_proj out of target_modules"):
        evaluate_path(model, tokenizer, linear_path(load_adapter(folder), load_adapter(folder)), [0.0], {"x": WALK_EXAMPLES}, QUIET)


def test_a_router_returning_a_tuple_is_refused_by_name(tokenizer):
    from modeconn.errors import CompatibilityError
    from modeconn.lora.adapters import LoraWeights

    model = tiny_causal_lm("llama4_text")
    name = "model.layers.0.feed_forward.router"
    router = model.get_submodule(name)
    weights = LoraWeights({name: (torch.zeros(2, router.in_features), torch.zeros(router.out_features, 2))}, {name: 1.0}, "x")
    with pytest.raises(CompatibilityError, match="feed_forward.router: this layer returns a tuple"):
        evaluate_path(model, tokenizer, linear_path(weights, weights), [0.0], {"x": WALK_EXAMPLES}, QUIET)


@pytest.mark.parametrize("model_type,shared", [("bloom", True), ("gpt_bigcode", False)])
def test_later_layer_adapters_on_alibi_and_multi_query_models_equal_peft(model_type, shared, tokenizer, tmp_path,
                                                                         monkeypatch):
    """``layers_to_transform``: Bloom's ALiBi is repeated with the batch (the shared prefix stays on); GPT-BigCode
    reshapes the layers' output to the batch it was given, so its prefix check turns the shared prefix off."""
    import modeconn.evaluator.prefix as prefix
    from modeconn.continual.prepare import linear_modules

    model = tiny_causal_lm(model_type)
    folders = [_peft_adapter(model, tmp_path / f"a{s}", s, target_modules=linear_modules(model), layers_to_transform=[1])
               for s in range(2)]
    kept = []
    check = prefix._agrees
    monkeypatch.setattr(prefix, "_agrees", lambda probe, repeat: kept.append(check(probe, repeat)) or kept[-1])
    path = linear_path(*(load_adapter(f) for f in folders), "delta")
    examples = EXAMPLES  # three rows of different lengths: padding and ALiBi positions differ per row
    losses = evaluate_path(model, tokenizer, path, [0.0, 0.5, 1.0], {"x": examples}, QUIET).tasks["x"].loss
    midpoint = save_adapter(path.at(0.5), tmp_path / "mid", load_adapter(folders[0]).config)
    references = [peft_forward_loss(model, f, tokenizer, examples) for f in (folders[0], midpoint, folders[1])]
    assert losses == pytest.approx(references, abs=1e-4) and kept == [shared]
