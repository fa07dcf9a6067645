"""Test helpers: tiny seeded CPU models of each supported architecture, adapters made by peft itself, and peft's own
loss as the reference the evaluator is checked against. (``pythonpath = ["tests"]`` in pyproject.toml.)"""
from __future__ import annotations

import torch

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


def peft_loss(model, folder, tokenizer, examples):
    """Token-weighted answer NLL from peft's PeftModel forward (full logits, labels masked like LLMCL)."""
    from peft import PeftModel

    from modeconn.evaluator.data import collate, encode

    peft_model = PeftModel.from_pretrained(model, folder).eval()
    batch = {k: v.to(model.device) for k, v in collate(encode(tokenizer, examples), tokenizer.pad_token_id).items()}
    with torch.no_grad():
        logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).double(), labels.flatten(), ignore_index=-100, reduction="sum")
    peft_model.unload()
    return (nll / (labels != -100).sum()).item()


def free_port() -> int:
    """A TCP port nothing listens on now, for one `accelerate launch` (a fixed port can still be held by the last run)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DDPStandIn(torch.nn.Module):
    """Stands for a DistributedDataParallel wrapper (a ``module`` inside, what the methods unwrap) and records each
    forward's input shape (rows, width): under DDP a step must run one forward per backward."""

    def __init__(self, model):
        super().__init__()
        self.module, self.shapes = model, []

    def forward(self, **inputs):
        self.shapes.append(tuple(inputs["input_ids"].shape))
        return self.module(**inputs)
