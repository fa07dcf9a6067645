"""Shared fixtures: tiny seeded CPU models of each supported architecture, and adapters made by peft itself."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from modeconn.models import checkpoints_dir  # noqa: E402

MODEL_KINDS = {
    # kind: (builder, LoRA target modules, fan_in_fan_out)
    "llama": ("llama", ["q_proj", "v_proj", "down_proj"], False),
    "gpt2": ("gpt2", ["c_attn", "c_proj"], True),
}


def tiny_model(kind: str, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=3)
        return LlamaForCausalLM(config).eval()
    config = GPT2Config(vocab_size=4096, n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def make_adapter(model, folder, kind: str, seed: int, rank: int = 4, alpha: float = 8, **extra):
    """Save a peft LoRA adapter with random (non-zero) A and B on ``model``; return the folder."""
    from peft import LoraConfig, get_peft_model

    _, targets, fan_in_fan_out = MODEL_KINDS[kind]
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                        fan_in_fan_out=fan_in_fan_out, **extra)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    peft_model.unload()
    return str(folder)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoints_dir() / "base")


@pytest.fixture(scope="session")
def embedded():
    """The embedded default's sequence manifest."""
    from modeconn.sequence import load_sequence

    return load_sequence(checkpoints_dir() / "seq")
