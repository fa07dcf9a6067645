"""Fit a quadratic Bézier curve between two LoRA minima (Garipov et al., 2018): train the control point θ_c of
φ(t) = (1−t)²θ_a + 2t(1−t)θ_c + t²θ_b to minimise E_{t~U(0,1)} L(φ(t)), several t per step in one batched pass,
with gradients flowing into θ_c only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .adapters import LoraWeights
from .data import Example, encode
from .errors import ConfigError
from .evaluate import points_nll, scored_batch
from .layer import inject_path
from .paths import bezier_path, linear_path


@dataclass(frozen=True)
class CurveConfig:
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    points_per_step: int = field(default=4, metadata={"help": "t values sampled per step, scored in one forward pass"})
    batch_size: int = field(default=8, metadata={"help": "examples per step (each scored at every sampled t)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate for the control point"})
    max_length: int = field(default=128, metadata={"help": "tokens per example"})
    seed: int = field(default=0, metadata={"help": "seed for t samples and batches"})

    def __post_init__(self):
        for name in ("steps", "points_per_step", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")


@dataclass
class CurveFit:
    control: LoraWeights
    space: str
    endpoints: list[str]
    history: list[float]  # training loss per step
    config: CurveConfig

    def to_json(self) -> dict:
        return {"kind": "bezier_curve", "space": self.space, "endpoints": self.endpoints, "history": self.history,
                "config": asdict(self.config), "base_model": self.control.base_model}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def save(self, folder) -> None:
        """The control point as a peft adapter folder, plus ``curve.json`` (endpoints, space, training history)."""
        from .adapters import save_adapter

        save_adapter(self.control, folder)
        tmp = Path(folder) / "curve.json.tmp"
        tmp.write_text(self.dumps() + "\n")
        tmp.replace(Path(folder) / "curve.json")


def midpoint(a: LoraWeights, b: LoraWeights, space: str) -> LoraWeights:
    """The straight-line midpoint, the control point's initial value (the curve then starts as the line)."""
    return linear_path(a, b, space, base_given=True).at(0.5)


def fit_bezier(model, tokenizer, a: LoraWeights, b: LoraWeights, train: list[Example], space: str = "factor",
               config: CurveConfig = CurveConfig(), progress: bool = True) -> CurveFit:
    """Train the control point on ``train`` (usually the union of both tasks' training data)."""
    if not train:
        raise ConfigError("fitting a curve needs training examples")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    path = bezier_path(a, midpoint(a, b, space), b, space)
    encoded = encode(tokenizer, train, config.max_length)
    device = next(model.parameters()).device
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    history = []
    try:
        with inject_path(model, path, trainable=1) as holder:
            layers = {m: model.get_submodule(m) for m in path.modules}
            params = [p for layer in layers.values() for p in (layer.control_a, layer.control_b)]
            optimizer = torch.optim.Adam(params, lr=config.lr)
            for _ in tqdm(range(config.steps), desc="fitting Bézier control point", disable=not progress, leave=False):
                chosen = torch.randint(len(encoded), (config.batch_size,), generator=generator).tolist()
                items = [encoded[i] for i in chosen]
                ts = torch.rand(config.points_per_step, generator=generator)
                holder.value = path.coefficients(ts).float().to(device).repeat_interleave(len(items), 0)
                n_tokens = sum(len(e.ids) - e.n_prompt for e in items)
                loss = points_nll(model, scored_batch(items, tokenizer.pad_token_id, device), config.points_per_step).sum()
                loss = loss / (n_tokens * config.points_per_step)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                history.append(loss.item())
            factors = {m: (layer.control_a.detach().cpu().clone(), layer.control_b.detach().cpu().clone())
                       for m, layer in layers.items()}
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    control = LoraWeights(factors, {m: 1.0 for m in factors}, a.base_model, f"bezier control ({space})", a.config)
    return CurveFit(control, space, [a.source, b.source], history, config)
