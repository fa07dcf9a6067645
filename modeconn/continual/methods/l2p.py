"""Learning to Prompt (Wang et al., 2022, CVPR, "Learning to Prompt for Continual Learning"): a pool of soft prompts,
each with a learned key; every example picks the top-N prompts whose keys are closest (cosine) to its query and is
prefixed with them; a surrogate loss pulls the chosen keys toward their queries:

    loss = CE − λ · mean_batch Σ_{chosen} cos(query, key)

The pool is shared by all tasks and trained throughout, the base model frozen.

Choices where the paper is open or LLMCL differs: the query is the mean input embedding of the example's prompt tokens
(the paper's query is a frozen encoder's [CLS] feature, which a decoder has not; LLMCL's method/L2P.py also averages
input embeddings, but over the answer too, which a test example does not have); keys are learned parameters as in the
paper (LLMCL uses each prompt's mean as its key); pool 10, length 5, N = 3 and λ = 0.5 are LLMCL's settings; prompts
and keys start from random vocabulary embeddings. No LoRA is trained; checkpoints are prompts. One process only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ...evaluator.data import Encoded
from ..adapter_io import FAST
from .base import MethodBase, answer_loss, unwrap
from .option import option
from .protocol import Batch, Scorer, TaskContext
from .prompts import embedding_rows, install, prepend, save_prompts

POOL = "pool"


class PromptPool(nn.Module):
    def __init__(self, prompts: torch.Tensor, keys: torch.Tensor):
        super().__init__()
        self.prompts, self.keys = nn.Parameter(prompts), nn.Parameter(keys)

    def forward(self) -> torch.Tensor:
        return self.prompts


@dataclass
class L2P(MethodBase):
    name: ClassVar[str] = "l2p"
    distributed: ClassVar[bool] = False
    checkpoint_kind: ClassVar[str] = "prompt"
    l2p_pool: int = option(10, "prompts in the pool (L2P, LLMCL: 10)", low=1)
    l2p_length: int = option(5, "virtual tokens per prompt (LLMCL: 5)", low=1)
    l2p_top_k: int = option(3, "prompts chosen per example (LLMCL: 3)", low=1)
    l2p_key_weight: float = option(0.5, "λ of the surrogate loss pulling the chosen keys toward their queries (LLMCL: 0.5)",
                                   low=0)

    def __post_init__(self):
        super().__post_init__()
        if self.l2p_top_k > self.l2p_pool:
            from ...errors import ConfigError

            raise ConfigError(f"l2p: l2p_top_k ({self.l2p_top_k}) must not exceed l2p_pool ({self.l2p_pool})")
        self.pool, self.embedding, self.max_length, self.collate = None, None, 0, None

    def setup(self, model, tasks: int, max_length: int) -> None:
        self.embedding = model.get_base_model().get_input_embeddings()
        self.max_length = max_length
        self.pool = PromptPool(embedding_rows(self.embedding, self.l2p_pool * self.l2p_length),
                               embedding_rows(self.embedding, self.l2p_pool))
        install(model, self.pool)

    @torch.no_grad()
    def queries(self, examples: list[Encoded]) -> torch.Tensor:
        """``[B, hidden]`` float32: each example's mean input embedding over its prompt tokens."""
        weight = self.embedding.weight
        return torch.stack([weight[torch.tensor(e.prompt_ids, device=weight.device)].float().mean(0) for e in examples])

    def similarity(self, queries: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(queries, dim=-1) @ nn.functional.normalize(self.pool.keys, dim=-1).T

    def virtual_ids(self, chosen: torch.Tensor) -> list[list[int]]:
        vocab, m = self.embedding.num_embeddings, self.l2p_length
        return [[vocab + p * m + i for p in row for i in range(m)] for row in chosen.tolist()]

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate = ctx.collate
        self.restore_training(ctx.model)

    def training_step(self, model, batch: Batch):
        similarity = self.similarity(self.queries(batch.examples))
        chosen = similarity.detach().topk(self.l2p_top_k, dim=1).indices
        inputs = self.collate(prepend(batch.examples, self.virtual_ids(chosen), self.max_length))
        pull = similarity.gather(1, chosen).sum(1).mean()
        return answer_loss(model, inputs) - self.l2p_key_weight * pull

    def choose(self, encoded: list[Encoded]) -> list[Encoded]:
        with torch.no_grad():
            chosen = self.similarity(self.queries(encoded)).topk(self.l2p_top_k, dim=1).indices
        return prepend(encoded, self.virtual_ids(chosen), self.max_length)

    def evaluation_plan(self, trained: int, tasks: int) -> list:
        return [POOL if trained else FAST] * tasks

    def evaluation_scorer(self, model, key) -> Scorer:
        model.set_adapter(FAST)  # frozen, B = 0: the base model
        return Scorer(model, self.choose if key == POOL else None)

    def restore_training(self, model) -> None:
        for name, p in unwrap(model).named_parameters():
            p.requires_grad_(".modeconn_table." in name)

    def save(self, model, folder) -> None:
        save_prompts(folder, {"prompts": self.pool.prompts, "keys": self.pool.keys},
                     {"method": self.name, "pool_size": self.l2p_pool, "prompt_length": self.l2p_length,
                      "top_k": self.l2p_top_k, "query": "mean input embedding of the prompt tokens"})
