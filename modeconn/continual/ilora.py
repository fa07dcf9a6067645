"""I-LoRA (Ren et al., 2024, arXiv:2402.18865): a fast working-memory adapter trained by SGD and a slow long-term
adapter that follows it by interpolation, with experience replay and a hidden-state consistency loss.

Each step, with a replay batch R from a reservoir buffer (the current batch B is added to the buffer afterwards):
  loss = ½(CE_fast(B) + CE_fast(R)) + γ · mean_layers MSE(h_fast(R), target)      (plain CE while the buffer is empty)
  target = max(h_fast, h_slow) element-wise (the reference code's one-sided target; ``consistency="mse"``: h_slow)
After the optimizer step: slow ← λ·slow + (1−λ)·fast with λ = min(1 − 1/(step+1), λ_max).

``variant="reference"`` reproduces what the published code actually ran: its interpolation never reached the slow
adapter (it matched parameters by names that carry the adapter name), so the slow learner stayed at its initial LoRA
(B = 0: the base model), the consistency loss pulled the fast adapter toward the base model, and the fast adapter was
evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import torch

from .methods import FAST, Batch, Method, TaskContext, mean_token_nll, option, run_seed, train_only, unwrap
from .replay import ReservoirBuffer

SLOW = "slow"


def consistency_loss(fast: list[torch.Tensor], slow: list[torch.Tensor], mask: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Mean over layers of the MSE between fast hidden states and their target, over real (unpadded) tokens only.

    ``mode="max"``: target max(h_fast, h_slow) (no gradient through it), so only fast values below slow ones are
    penalised; ``mode="mse"``: target h_slow, the symmetric pull.
    """
    weight = mask.unsqueeze(-1).to(fast[0].dtype)
    total = 0.0
    for h_fast, h_slow in zip(fast, slow):
        target = torch.maximum(h_fast.detach(), h_slow) if mode == "max" else h_slow
        total = total + (((h_fast - target) ** 2) * weight).sum() / (weight.sum() * h_fast.shape[-1])
    return total / len(fast)


@dataclass
class ILoRA(Method):
    name: ClassVar[str] = "ilora"
    saved_adapters: ClassVar = MappingProxyType({"fast": FAST, "slow": SLOW})
    buffer_size: int = option(500, "replay buffer size (examples kept from earlier tasks)", low=1)
    gamma: float = option(1.0, "weight γ of the consistency loss", low=0)
    ema: float = option(0.25, "λ_max of slow ← λ·slow + (1−λ)·fast (0.25: the reference code's; the paper describes a "
                              "slowly moving average, e.g. 0.99)", low=0, high=1, high_open=True)
    eval_adapter: str = option("slow", "adapter evaluated and saved per task", flag="ilora-eval", choices=("fast", "slow"))
    variant: str = option("paper", "'reference' reproduces the published code's behaviour (slow = base model, evaluate fast)",
                          flag="ilora-variant", choices=("paper", "reference"))
    consistency: str = option("max", "target max(fast, slow) as the reference code, or the slow hidden state (symmetric MSE)",
                              choices=("max", "mse"))
    seed: int = run_seed()
    buffer: ReservoirBuffer = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.buffer = ReservoirBuffer(self.buffer_size, self.seed)
        self.step = 0
        self.collate = None
        self.parts: dict[str, float] = {}
        self.pairs: tuple[list, list] = ([], [])  # (slow weights, fast weights), found once per model

    @property
    def evaluated_adapter(self) -> str:
        return FAST if self.variant == "reference" or self.eval_adapter == "fast" else SLOW

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate = ctx.collate
        if SLOW not in ctx.model.peft_config:
            from dataclasses import replace

            # a fresh LoRA with B = 0: the slow learner starts at the base model, as in the reference code
            ctx.model.add_adapter(SLOW, replace(ctx.model.peft_config[FAST], init_lora_weights=True))
            train_only(ctx.model, FAST)
        slow, fast = [], []
        for module in unwrap(ctx.model).modules():
            for part in ("lora_A", "lora_B"):
                weights = getattr(module, part, None)
                if isinstance(weights, torch.nn.ModuleDict) and SLOW in weights and FAST in weights:
                    slow.append(weights[SLOW].weight)
                    fast.append(weights[FAST].weight)
        self.pairs = (slow, fast)

    def lam(self) -> float:
        return min(1 - 1 / (self.step + 1), self.ema)

    def _slow_hidden(self, model, inputs) -> tuple[torch.Tensor, ...]:
        model = unwrap(model)  # the slow pass needs no gradient sync
        was_training = model.training
        # inference_mode freezes both adapters; switching back to FAST re-enables exactly its gradients
        model.set_adapter(SLOW, inference_mode=True)
        model.eval()
        with torch.no_grad():  # the decoder alone: the consistency loss needs hidden states, not the LM head's logits
            decoder = model.get_base_model().get_decoder()
            hidden = decoder(**inputs, output_hidden_states=True).hidden_states[1:]
        model.set_adapter(FAST)
        model.train(was_training)
        return hidden

    def training_step(self, model, batch: Batch):
        replay = self.buffer.sample(len(batch.examples))  # as many as current examples (a process's slice under DDP)
        self.buffer.add(batch.examples)
        if not replay:
            loss = model(**batch.inputs).loss
            self.parts = {"ce_current": loss.item()}
            return loss
        inputs = self.collate(batch.examples + replay)  # one forward of the fast adapter serves both batches
        n = len(batch.examples)
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
        nll, count = mean_token_nll(out.logits, inputs["labels"])
        ce = 0.5 * (nll[:n].sum() / count[:n].sum() + nll[n:].sum() / count[n:].sum())
        replay_inputs = {"input_ids": inputs["input_ids"][n:], "attention_mask": inputs["attention_mask"][n:]}
        slow = self._slow_hidden(model, replay_inputs)
        fast = [h[n:] for h in out.hidden_states[1:]]
        consistency = consistency_loss(fast, slow, replay_inputs["attention_mask"], self.consistency)
        self.parts = {"ce_current": (nll[:n].sum() / count[:n].sum()).item(),
                      "ce_replay": (nll[n:].sum() / count[n:].sum()).item(), "consistency": consistency.item()}
        return ce + self.gamma * consistency

    def step_parts(self) -> dict[str, float]:
        return self.parts

    @torch.no_grad()
    def after_step(self, model) -> None:
        if self.variant == "paper":  # slow ← λ·slow + (1−λ)·fast
            weight = 1 - self.lam()
            for slow, fast in zip(*self.pairs):
                slow.lerp_(fast, weight)
        self.step += 1

    def state(self) -> tuple[dict, dict]:
        return {}, {"buffer": self.buffer.state_dict(), "step": self.step}

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.buffer.load_state_dict(meta["buffer"])
        self.step = meta["step"]
