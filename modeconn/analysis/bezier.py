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

from .. import checks
from ..errors import ConfigError, NonFiniteError
from ..evaluator.data import Example, encode, resolve_max_length
from ..evaluator.batch import scored_batch
from ..evaluator.evaluate import points_nll
from ..evaluator.layer import inject_path
from ..lora.adapters import LoraWeights
from ..lora.paths import bezier_path, linear_path

CURVE_RECORD = "curve.json"


@dataclass(frozen=True)
class CurveConfig:
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    points_per_step: int = field(default=4, metadata={"help": "t values sampled per step, scored in one forward pass"})
    batch_size: int = field(default=8, metadata={"help": "examples per step (each scored at every sampled t)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate for the control point"})
    max_length: int | None = field(default=None, metadata={
        "help": "tokens per example (None: 1024, or the base's positions if fewer; as every command)"})
    seed: int = field(default=0, metadata={"help": "seed for t samples and batches"})

    def __post_init__(self):
        for name in ("steps", "points_per_step", "batch_size"):
            checks.count(name, getattr(self, name), 1, 1 << 24)
        checks.optional_count("max_length", self.max_length, 2)
        checks.finite("lr", self.lr, 0, low_open=True)
        checks.seed("seed", self.seed)


@dataclass
class CurveFit:
    control: LoraWeights
    space: str
    endpoints: list[str]
    history: list[float]  # training loss per step
    config: CurveConfig
    made_by: dict = field(default_factory=dict)  # settings, versions, command (provenance.made_by)

    def to_json(self) -> dict:
        return {"kind": "bezier_curve", "space": self.space, "endpoints": self.endpoints, "history": self.history,
                "config": asdict(self.config), "base_model": self.control.base_model, "made_by": self.made_by}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False)

    def save(self, folder) -> None:
        """The control point as a peft adapter, plus ``curve.json`` (endpoints, space, training history), written
        into ``folder`` together."""
        from ..files import write_all
        from ..lora.adapters import adapter_files

        write_all(folder, {**adapter_files(self.control), CURVE_RECORD: self.dumps() + "\n"})


def read_curve(control: str | Path) -> dict | None:
    """The ``curve.json`` a fitted control point's folder holds (endpoints, space, history), or None."""
    record = Path(control) / CURVE_RECORD
    if not record.is_file():
        return None
    try:
        return checks.load_json_text(record.read_text())  # no RecursionError on a deeply nested file
    except ValueError as exc:
        raise ConfigError(f"{record}: not valid JSON ({exc})") from None


def fitted_between(record: dict | None, a: str | Path, b: str | Path, space: str) -> bool:
    """Whether a curve record names ``a`` → ``b`` as its endpoints and ``space`` as its space."""
    if record is None:
        return False
    ends = [Path(e).resolve() for e in record.get("endpoints", [])]
    return ends == [Path(a).resolve(), Path(b).resolve()] and record.get("space") == space


def midpoint(a: LoraWeights, b: LoraWeights, space: str) -> LoraWeights:
    """The straight-line midpoint, the control point's initial value (the curve then starts as the line)."""
    return linear_path(a, b, space, base_given=True).at(0.5)


def fit_bezier(model, tokenizer, a: LoraWeights, b: LoraWeights, train: list[Example], space: str = "factor",
               config: CurveConfig = CurveConfig(), progress: bool = True) -> CurveFit:
    """Train the control point on ``train`` (usually the union of both tasks' training data)."""
    if not train:
        raise ConfigError("fitting a curve needs training examples")
    generator = torch.Generator().manual_seed(config.seed)  # t samples and batches: nothing else draws at random
    path = bezier_path(a, midpoint(a, b, space), b, space)
    encoded = encode(tokenizer, train, resolve_max_length(model, config.max_length))
    device = next(model.parameters()).device
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    history = []
    try:
        with inject_path(model, path, trainable=1) as injected:
            optimizer = torch.optim.Adam(injected.parameters(), lr=config.lr)
            for _ in tqdm(range(config.steps), desc="fitting Bézier control point", disable=not progress, leave=False):
                chosen = torch.randint(len(encoded), (config.batch_size,), generator=generator).tolist()
                items = [encoded[i] for i in chosen]
                ts = torch.rand(config.points_per_step, generator=generator)
                n_tokens = sum(len(e.ids) - e.n_prompt for e in items)
                with injected.points(path.coefficients(ts).float(), len(items)):
                    loss = points_nll(model, scored_batch(items, tokenizer.pad_token_id, device), config.points_per_step).sum()
                loss = loss / (n_tokens * config.points_per_step)
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"fitting the curve diverged at step {len(history) + 1} (loss {loss.item()}); "
                                         "nothing was saved; use a smaller lr")
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                history.append(loss.item())
            factors = {m: (layer.control_a.detach().cpu().clone(), layer.control_b.detach().cpu().clone())
                       for m, layer in injected.layers.items()}
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    control = LoraWeights(factors, {m: 1.0 for m in factors}, a.base_model, f"bezier control ({space})", a.config)
    return CurveFit(control, space, [a.source, b.source], history, config)
