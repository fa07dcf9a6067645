"""Soft prompts as virtual tokens, shared by the prompt methods (``l2p``, ``pp``).

A prompt of length m is m extra token ids past the vocabulary; the base model's input embedding is wrapped so those ids
read rows of the method's prompt table. Examples then carry their prompt as ordinary ids, so training, the evaluator's
batching, its loss and greedy decoding (the KV cache included) run unchanged on any causal LM. peft's prompt tuning
(``PromptTuningConfig``) prepends one prompt per model inside its own forward and ``generate``; it has no pool chosen
per example (L2P) and no stack of frozen per-task prompts (Progressive Prompts), and its forward would bypass the
evaluator's shared batching, hence this small wrapper instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ...errors import DataError
from ...evaluator.data import Encoded
from ...files import atomic_folder
from ...lora.adapters import PROMPT_FILE


class PromptEmbedding(nn.Module):
    """The base's input embedding; ids ≥ its vocabulary read ``table()`` (rows in the embedding's dtype)."""

    def __init__(self, base: nn.Embedding, table: nn.Module):
        super().__init__()
        self.base, self.modeconn_table, self.vocab = base, table, base.num_embeddings

    @property
    def weight(self) -> torch.Tensor:  # tied output heads and transformers' helpers read the embedding's weight
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        virtual = ids >= self.vocab
        out = self.base(ids.masked_fill(virtual, 0))
        if bool(virtual.any()):
            rows = self.modeconn_table().to(out.dtype)
            out = torch.where(virtual.unsqueeze(-1), rows[(ids - self.vocab).clamp(min=0)], out)
        return out


def install(model, table: nn.Module) -> PromptEmbedding:
    """Wrap the input embedding of ``model`` (a PeftModel) so its virtual ids read ``table``; the base stays frozen."""
    lm = model.get_base_model()
    wrapper = PromptEmbedding(lm.get_input_embeddings(), table)
    lm.set_input_embeddings(wrapper)
    return wrapper


def embedding_rows(embedding: nn.Embedding, count: int) -> torch.Tensor:
    """``count`` rows copied from random vocabulary entries (float32), the prompt initialisation of LLMCL's L2P and PP;
    drawn from the global RNG, which the run seeds and its saved state carries."""
    picks = torch.randint(embedding.num_embeddings, (count,))
    return embedding.weight.detach()[picks.to(embedding.weight.device)].float().clone()


def prepend(examples: list[Encoded], virtual: list[list[int]] | list[int], max_length: int) -> list[Encoded]:
    """Each example with virtual ids in front (one list for all, or one per example); if that passes ``max_length``,
    the real prompt loses tokens from its start (the answer is never cut)."""
    out = []
    for i, e in enumerate(examples):
        ids = virtual[i] if virtual and isinstance(virtual[0], list) else virtual
        drop = max(0, len(ids) + len(e.ids) - max_length)
        if drop >= e.n_prompt:
            raise DataError(f"{len(ids)} prompt tokens + an answer of {len(e.ids) - e.n_prompt} tokens do not fit "
                            f"max_length={max_length}; raise the max_length={max_length}")
        out.append(Encoded(tuple(ids) + e.ids[drop:], len(ids) + e.n_prompt - drop))
    return out


def save_prompts(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """A prompt checkpoint: ``prompts.safetensors`` and ``prompt_config.json`` (which the analysis commands refuse)."""
    from safetensors.torch import save_file

    with atomic_folder(folder) as tmp:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, tmp / "prompts.safetensors")
        (tmp / PROMPT_FILE).write_text(json.dumps({"kind": "prompt", **config}, indent=2, sort_keys=True) + "\n")
