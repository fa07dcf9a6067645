"""I-LoRA (Ren et al., 2024, arXiv:2402.18865): a fast working-memory adapter trained by SGD and a slow long-term
adapter that follows it by interpolation, with experience replay and a hidden-state consistency loss.

Each step, with a replay batch R from a reservoir buffer (the current batch B is added to the buffer afterwards):
  loss = ½(CE_fast(B) + CE_fast(R)) + γ · mean_layers MSE(h_fast(R), target)      (plain CE while the buffer is empty)
  target = max(h_fast, h_slow) element-wise (the reference code's one-sided target; ``ilora_consistency="mse"``: h_slow)
After the optimizer step: slow ← λ·slow + (1−λ)·fast with λ = min(1 − 1/(step+1), λ_max). The first task draws no
replay batch and so has no consistency loss, as LLMCL (method/ILORA.py:224-225), unless ``replay_first_task``.

Variants, each what it says (LLMCL = github.com/which47/LLMCL at a9dae12, method/ILORA.py):
  paper               as above; the slow learner is evaluated (``ilora_eval="fast"`` evaluates the fast one).
  reference           LLMCL's code with its crashing task-end call removed: ``continual_learning`` calls
                      ``self.model.load_ema_model`` (line 295), which ILoRAModel does not define, so the published code
                      stops after task 1; without that call its ``update_ema_weights`` (lines 162–172) matches the
                      fast adapter's parameter names (``….default.…``, line 166) against the slow ones'
                      (``….ema.…``, line 170) and so only rewrites the fast adapter with itself: the slow learner stays
                      at its initial LoRA (B = 0, the base model), the consistency loss pulls the fast adapter toward
                      the base model's hidden states, and the fast adapter is evaluated.
  reference-intended  what line 295 evidently meant: at each task's end the slow learner becomes a frozen copy of the
                      fast one (no interpolation during a task); the fast adapter is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import torch

from .base import FAST, MethodBase, answer_loss, labelled_nll, row_nll, unwrap
from .option import option, run_seed
from .protocol import Batch, TaskContext
from .replay import ReplayState, ReservoirBuffer
from .slow_learner import SLOW, DualLearners, SlowLearner


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
class ILoRA(DualLearners, ReplayState, MethodBase):
    name: ClassVar[str] = "ilora"
    saved_adapters: ClassVar = MappingProxyType({"fast": FAST, "slow": SLOW})
    ilora_gamma: float = option(1.0, "weight γ of the consistency loss (0: no consistency loss, the ablation)", low=0)
    ilora_ema: float = option(0.9, "λ_max of slow ← λ·slow + (1−λ)·fast (0.9: chosen on the embedded benchmark's eval "
                                   "split over 0.25–0.995, best on both selection seeds; the reference code uses 0.25)",
                              low=0, high=1, high_open=True)
    ilora_eval: str = option("slow", "adapter evaluated and saved per task", choices=("fast", "slow"))
    ilora_variant: str = option("paper", "paper; reference: LLMCL's code without its crashing task-end call (slow = base "
                                         "model, fast evaluated); reference-intended: slow := a frozen copy of fast at "
                                         "each task end, fast evaluated", choices=("paper", "reference", "reference-intended"))
    ilora_consistency: str = option("max", "target max(fast, slow) as the reference code, or the slow hidden state "
                                           "(symmetric MSE)", choices=("max", "mse"))
    seed: int = run_seed()
    buffer: ReservoirBuffer = field(init=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        self.buffer = ReservoirBuffer(self.buffer_size, self.seed)
        self.slow = SlowLearner(self.ilora_ema)
        self.other_rows: list[list[float]] = []
        self.other_rank_rows: list[list[float]] = []  # empty unless every task has choices
        self.collate, self.index = None, 0
        self.parts: dict[str, float] = {}

    @property
    def evaluated_adapter(self) -> str:
        return FAST if self.ilora_variant != "paper" or self.ilora_eval == "fast" else SLOW

    def begin_task(self, ctx: TaskContext) -> None:
        self.collate, self.index = ctx.collate, ctx.index
        self.size_buffer(ctx.stream_examples)
        self.slow.attach(ctx.model)  # B = 0: the slow learner starts at the base model, as in the reference code

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
        # as many as current examples (a process's slice under DDP)
        replay = self.buffer.sample(len(batch.examples)) if self.replays(self.index) else []
        if batch.epoch == 0:  # each example is offered once per task
            self.buffer.add(batch.examples)
        if not replay:
            loss = answer_loss(model, batch.inputs)
            self.parts = {"ce_current": loss.item()}
            return loss
        if model is unwrap(model):  # one process: the replayed rows in a forward of their own, the current ones split
            # by length (row_nll): the two batches' prompts differ in length, and neither pads to the other's
            current, current_count = row_nll(model, batch.inputs)
            inputs = self.collate(replay)
            past, past_count, out = labelled_nll(model, inputs, output_hidden_states=True)
            fast = list(out.hidden_states[1:])
        else:  # DDP wants one forward per backward: one forward of the fast adapter serves both batches
            n = len(batch.examples)
            inputs = self.collate(batch.examples + replay)
            nll, count, out = labelled_nll(model, inputs, output_hidden_states=True)
            current, current_count, past, past_count = nll[:n], count[:n], nll[n:], count[n:]
            fast = [h[n:] for h in out.hidden_states[1:]]
            inputs = {key: value[n:] for key, value in inputs.items()}
        ce_current, ce_replay = current.sum() / current_count.sum(), past.sum() / past_count.sum()
        replay_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        slow = self._slow_hidden(model, replay_inputs)
        consistency = consistency_loss(fast, slow, replay_inputs["attention_mask"], self.ilora_consistency)
        self.parts = {"ce_current": ce_current.item(), "ce_replay": ce_replay.item(), "consistency": consistency.item()}
        return 0.5 * (ce_current + ce_replay) + self.ilora_gamma * consistency

    def step_parts(self) -> dict[str, float]:
        return self.parts

    def end_task(self, ctx: TaskContext) -> None:
        if self.ilora_variant == "reference-intended":  # the slow learner becomes a frozen copy of the fast one
            self.slow.copy_fast()

    def after_step(self, model) -> None:
        if self.ilora_variant == "paper":
            self.slow.follow()
        self.slow.step += 1
