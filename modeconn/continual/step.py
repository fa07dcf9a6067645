"""One optimizer step: ``grad_accum`` micro-batches of ``batch_size`` examples (each process takes its slice of each),
their losses weighted by their share of the window's answer tokens, forward under autocast, backward through the
loss scaler (fp16), gradients clipped, the update, the method's ``after_step``; a non-finite loss, gradient or LoRA
weight stops the run before any of it is saved.

With the token weights, ``grad_accum=N`` gives the update of one batch N times larger for a loss that is a token
mean (seq, ewc, mtl; ``tests/continual/test_training_controls.py`` checks it): Σ_k (S_k / T_k)·(T_k / T) = S / T."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..errors import NonFiniteError
from .config import TrainConfig
from .methods.base import trained_weight
from .methods.protocol import Batch

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    tokens: int  # answer tokens of this process's examples in the step
    parts: dict[str, float]  # the method's loss parts (I-LoRA: ce_current, ce_replay, consistency)
    skipped: bool = False  # fp16: the loss scaler skipped the update (an overflowed gradient)
    loss_scale: float | None = None  # fp16: the scale the step's loss was multiplied by


class Amp:
    """Autocast and, for float16, a loss scaler; both off in float32."""

    def __init__(self, dtype: str, device: torch.device):
        self.dtype = AMP_DTYPES.get(dtype)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")

    def autocast(self):
        return torch.autocast(self.device_type, self.dtype) if self.dtype is not None else nullcontext()


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The run's optimizer over ``params``: AdamW, or plain SGD (no momentum) as A-GEM's and GEM's reference code
    (facebookresearch/GradientEpisodicMemory ``model/gem.py``: ``optim.SGD(self.parameters(), args.lr)``)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.0, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)


def answer_tokens(examples) -> int:
    return sum(len(e.ids) - e.n_prompt for e in examples)


def nonfinite(what: str, where: str) -> NonFiniteError:
    return NonFiniteError(f"training diverged: the {what} became non-finite at {where}; nothing from that step was saved "
                          "(the last saved state, if any, stays resumable); a lower lr or a smaller alpha usually helps")


def all_finite(value: torch.Tensor, run) -> bool:
    """Whether ``value`` is finite on every process (they stop together, or not at all)."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(value).all()) else 1.0, device=run.device)
    if run.world > 1:
        bad = run.accelerator.reduce(bad, reduction="sum")
    return bad.item() == 0


def optimizer_step(run, optimizer, amp: Amp, window: list, *, lr: float, where: str, epoch: int = 0) -> StepResult:
    """Train ``run.request.method`` on ``window`` (the examples of one optimizer step, in the task's ``epoch``) and
    update; ``where`` names the step in messages."""
    method, config = run.request.method, run.request.config
    for group in optimizer.param_groups:
        group["lr"] = lr
    micro = [window[i : i + config.batch_size] for i in range(0, len(window), config.batch_size)]
    local = [batch[run.rank :: run.world] or batch[:1] for batch in micro]
    total_tokens = max(1, sum(answer_tokens(batch) for batch in local))
    loss_sum, parts = 0.0, {}
    for k, batch in enumerate(local):
        weight = answer_tokens(batch) / total_tokens
        last = k == len(local) - 1
        sync = nullcontext() if last or run.world == 1 else run.trained.no_sync()  # DDP averages once, at the end
        with sync:
            with amp.autocast():
                loss = method.training_step(run.trained, Batch(batch, run.to_device(batch), epoch))
            if not all_finite(loss.detach(), run):
                raise nonfinite("loss", where)
            amp.scaler.scale(loss * weight).backward()
        loss_sum += loss.item() * weight
        for name, value in method.step_parts().items():
            parts[name] = parts.get(name, 0.0) + value * weight
    amp.scaler.unscale_(optimizer)
    method.before_update(run.trained)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
    finite_grads = all_finite(norm, run)
    if not finite_grads and not amp.scaler.is_enabled():
        raise nonfinite("gradient", where)
    scale = amp.scaler.get_scale() if amp.scaler.is_enabled() else None
    amp.scaler.step(optimizer)  # with fp16, an overflowed gradient skips the update and lowers the scale
    amp.scaler.update()
    optimizer.zero_grad(set_to_none=True)
    method.after_step(run.trained)
    weights_ok = all(bool(torch.isfinite(p).all()) for name, p in run.model.named_parameters() if trained_weight(name))
    if not all_finite(torch.tensor(0.0 if weights_ok else float("nan")), run):
        raise nonfinite("LoRA weights", where)
    skipped = scale is not None and amp.scaler.get_scale() < scale
    return StepResult(loss=loss_sum, grad_norm=float(norm), tokens=sum(answer_tokens(b) for b in local), parts=parts,
                      skipped=skipped, loss_scale=scale)
