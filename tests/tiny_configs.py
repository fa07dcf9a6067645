"""Tiny random configs of every causal LM the installed transformers knows (hidden 32, 2 layers, vocabulary 4096):
each config class's defaults with its sizes shrunk, so that a new architecture joins the table without code."""
from __future__ import annotations

import torch

LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "decoder_layers", "encoder_layers")
TOKENS = {"vocab_size": 4096, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}  # the embedded tokenizer's
SIZES = {
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "embedding_size", "hidden_dim", "word_embed_proj_dim",
                     "attention_hidden_size", "lru_width", "backbone_hidden_size"), 32),
    **dict.fromkeys(("intermediate_size", "n_inner", "ffn_dim", "decoder_ffn_dim", "encoder_ffn_dim", "moe_intermediate_size",
                     "shared_expert_intermediate_size", "ffn_hidden_size", "dense_intermediate_size",
                     "shared_intermediate_size", "expert_ffn_hidden_size", "intermediate_size_mlp",
                     "shared_experts_intermediate_size", "first_dense_intermediate_size",
                     "moe_shared_expert_intermediate_size", "mlp_only_intermediate_size", "feed_forward_size"), 64),
    **dict.fromkeys(LAYERS, 2),
    **dict.fromkeys(("num_attention_heads", "n_head", "num_heads", "decoder_attention_heads", "encoder_attention_heads",
                     "num_key_value_heads", "num_kv_heads"), 2),
    **dict.fromkeys(("head_dim", "v_head_dim", "qk_head_dim", "kv_lora_rank", "q_lora_rank", "attention_head_dim",
                     "linear_key_head_dim", "linear_value_head_dim", "index_head_dim"), 16),
    **dict.fromkeys(("qk_nope_head_dim", "qk_rope_head_dim", "rotary_dim"), 8),
    **dict.fromkeys(("n_routed_experts", "num_experts", "num_local_experts", "moe_num_experts"), 4),
    "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
    **dict.fromkeys(("emb_dim", "hidden_size_per_layer_input"), 32), "vocab_size_per_layer_input": 4096,
    **dict.fromkeys(("mamba_d_state", "ssm_state_size", "state_size", "mamba_chunk_size", "chunk_size"), 16),
    **dict.fromkeys(("max_position_embeddings", "n_positions", "n_ctx", "max_target_positions"), 256),
}
# per architecture, where the shrunk defaults do not make a consistent config
EXTRA: dict[str, dict] = {
    "jamba": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1),
    "recurrent_gemma": dict(block_types=["recurrent", "attention"]),
    "deepseek_v2": dict(num_experts_per_tok=2),
}


def _shrunk(defaults: dict, layer_count: int | None = None) -> dict:
    out = {}
    layer_count = next((defaults[k] for k in LAYERS if isinstance(defaults.get(k), int)), layer_count)
    for key, value in defaults.items():
        if isinstance(value, dict) and "model_type" in value:
            out[key] = _shrunk(value, layer_count)
        elif key in TOKENS and (value is None or isinstance(value, int)):
            out[key] = TOKENS[key]
        elif key in SIZES and isinstance(value, int) and not isinstance(value, bool):
            out[key] = SIZES[key]
        elif key == "layer_types" and isinstance(value, list) and value:
            kinds = list(dict.fromkeys(value))[:2]  # one layer of each kind (a hybrid keeps both)
            out[key] = (kinds * 2)[:2]
    if "qk_rope_head_dim" in out and "head_dim" in out:  # multi-head latent attention: rope on qk_rope_head_dim
        out["head_dim"] = out["qk_rope_head_dim"]
    return out


def tiny_config(model_type: str, **extra):
    """The config class's defaults, shrunk (lists with one entry per default layer dropped, to be re-derived)."""
    from transformers import AutoConfig

    config_class = type(AutoConfig.for_model(model_type))
    defaults = config_class().to_dict()
    layers = next((defaults[k] for k in LAYERS if isinstance(defaults.get(k), int)), None)
    fields = {k: v for k, v in defaults.items()
              if k == "layer_types" or not (isinstance(v, list) and layers and len(v) == layers != 2)}
    return config_class(**{**_shrunk(fields), **EXTRA.get(model_type, {}), **extra})


def tiny_causal_lm(model_type: str, seed: int = 0, **extra):
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, **extra)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()
