"""Fit a curve's free points between two LoRA minima (Garipov et al., 2018), for any path kind with free points
(quadratic Bézier control point, polygonal chain bend, cubic Bézier controls…): train them to minimise
E_{t~U(0,1)} L(φ(t)), several t per step in one batched pass, with gradients flowing into the free points only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .. import checks
from ..errors import ConfigError, NonFiniteError
from ..evaluator.data import Encoded, Example, encode, resolve_max_length
from ..evaluator.batch import scored_batch
from ..evaluator.budget import backward_budget, batches
from ..evaluator.evaluate import points_nll
from ..evaluator.fields import max_length_field
from ..evaluator.layer import inject_path
from ..evaluator.memory import release_freed
from ..lora.adapters import LoraWeights
from ..lora.path_kinds import curved, path_kind
from ..lora.paths import LoraPath, kind_path, linear_path

CURVE_RECORD = "curve.json"


@dataclass(frozen=True)
class CurveConfig:
    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    points_per_step: int = field(default=4, metadata={"help": "t values sampled per step, scored in one forward pass"})
    batch_size: int = field(default=8, metadata={"help": "examples per step (each scored at every sampled t)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate for the control point"})
    max_length: int | None = max_length_field()
    seed: int = field(default=0, metadata={"help": "seed for t samples and batches"})
    path: str = field(default="bezier", metadata={"help": "the kind of curve whose free points are fitted"})
    max_batch_tokens: int | None = field(default=None, metadata={
        "help": "padded tokens per forward-and-backward chunk of a step (points × examples × length; the step's "
                "gradient is the chunks' sum) [default: 4096 on a CPU; on CUDA from free memory]", "low": 1})

    def __post_init__(self):
        if not path_kind(checks.text("path", self.path)).free:
            raise ConfigError(f"a {self.path} path has no free point to fit; choose one of {', '.join(curved())}")
        for name in ("steps", "points_per_step", "batch_size"):
            checks.count(name, getattr(self, name), 1, 1 << 24)
        checks.optional_count("max_length", self.max_length, 2)
        checks.optional_count("max_batch_tokens", self.max_batch_tokens, 1)
        checks.finite("lr", self.lr, 0, low_open=True)
        checks.seed("seed", self.seed)


@dataclass
class CurveFit:
    controls: list[LoraWeights]  # the free points, in path order
    space: str
    endpoints: list[str]
    history: list[float]  # training loss per step
    config: CurveConfig
    made_by: dict = field(default_factory=dict)  # settings, versions, command (provenance.made_by)
    path: str = "bezier"

    @property
    def control(self) -> LoraWeights:
        """The first free point (a quadratic Bézier's only control point)."""
        return self.controls[0]

    def folders(self) -> list[str]:
        """Where each free point is saved inside the curve's folder: one point at its root (a peft adapter folder
        ``modeconn plane`` takes as C), several in ``control_1/``, ``control_2/``, …"""
        return [""] if len(self.controls) == 1 else [f"control_{k + 1}" for k in range(len(self.controls))]

    def to_json(self) -> dict:
        return {"kind": "bezier_curve", "path": self.path, "controls": self.folders(), "space": self.space,
                "endpoints": self.endpoints, "history": self.history, "config": asdict(self.config),
                "base_model": self.controls[0].base_model, "made_by": self.made_by}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False)

    def save(self, folder) -> None:
        """The free points as peft adapters, plus ``curve.json`` (path kind, endpoints, space, training history),
        written into ``folder`` together."""
        from ..files import write_all
        from ..lora.adapters import adapter_files

        if len(self.controls) == 1:
            write_all(folder, {**adapter_files(self.control), CURVE_RECORD: self.dumps() + "\n"})
            return
        for sub, point in zip(self.folders(), self.controls):
            write_all(Path(folder) / sub, adapter_files(point))
        write_all(folder, {CURVE_RECORD: self.dumps() + "\n"})  # last: a folder with its record holds every point


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


def control_folders(control: str | Path, kind: str) -> list[str]:
    """The adapter folders of a curve's free points: ``control`` itself for one point, else the subfolders its
    ``curve.json`` lists (what ``modeconn curve --path KIND`` wrote)."""
    free = path_kind(kind).free
    if free == 1:
        return [str(control)]
    record = read_curve(control) or {}
    found = record.get("controls")
    if record.get("path") != kind or not isinstance(found, list) or len(found) != free:
        raise ConfigError(f"{control}: not a {kind} curve's folder (its curve.json should name {free} control points); "
                          f"fit one with: modeconn curve A B --path {kind} --out FOLDER")
    return [str(Path(control) / checks.text("controls", name)) for name in found]


def midpoint(a: LoraWeights, b: LoraWeights, space: str) -> LoraWeights:
    """The straight-line midpoint, the control point's initial value (the curve then starts as the line)."""
    return linear_path(a, b, space, base_given=True).at(0.5)


def start_path(kind: str, a: LoraWeights, b: LoraWeights, space: str) -> LoraPath:
    """The ``kind`` path a fit starts from: each free point on the straight line at the kind's ``start`` t."""
    line = linear_path(a, b, space, base_given=True)
    return kind_path(kind, a, [line.at(t) for t in path_kind(kind).start], b, space=space)


def fit_bezier(model, tokenizer, a: LoraWeights, b: LoraWeights, train: list[Example] | list[Encoded],
               space: str = "factor", config: CurveConfig = CurveConfig(), progress: bool = True) -> CurveFit:
    """A quadratic Bézier curve's control point fitted between ``a`` and ``b`` (``fit_path`` from the midpoint)."""
    return fit_path(model, tokenizer, start_path("bezier", a, b, space), train, config=config, progress=progress)


def fit_path(model, tokenizer, start: LoraPath, train: list[Example] | list[Encoded], config: CurveConfig = CurveConfig(),
             progress: bool = True) -> CurveFit:
    """Train the free points of ``start`` (its kind's anchors between the ends) on ``train`` (usually the union of
    both tasks' training data): Examples, or already encoded at the config's max_length (a Study's, encoded once)."""
    if not train:
        raise ConfigError("fitting a curve needs training examples")
    generator = torch.Generator().manual_seed(config.seed)  # t samples and batches: nothing else draws at random
    path, space = start, start.space
    a, b = path.anchors[0], path.anchors[-1]
    free = tuple(range(1, len(path.anchors) - 1))
    encoded = train if isinstance(train[0], Encoded) else encode(tokenizer, train,
                                                                 resolve_max_length(model, config.max_length))
    device = next(model.parameters()).device
    budget = config.max_batch_tokens or backward_budget(model)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    history = []
    try:
        with inject_path(model, path, trainable=free) as injected:
            optimizer = torch.optim.Adam(injected.parameters(), lr=config.lr)
            n_points = config.points_per_step
            for _ in tqdm(range(config.steps), desc=f"fitting the {path.kind} curve", disable=not progress, leave=False):
                chosen = torch.randint(len(encoded), (config.batch_size,), generator=generator).tolist()
                items = [encoded[i] for i in chosen]
                coefficients = path.coefficients(torch.rand(n_points, generator=generator)).float()
                n_tokens = sum(len(e.ids) - e.n_prompt for e in items)
                step_loss = 0.0
                # the step in chunks of at most `budget` tokens, each one's backward before the next: the gradients
                # add up to the whole step's, and only one chunk's activations are held (a 7B model's 32 sequences
                # of 512 tokens at once would not fit a 40 GB card)
                for chunk in batches(items, lambda e: len(e.ids), n_points, budget):
                    part = [items[i] for i in chunk]
                    with injected.points(coefficients, len(part)):
                        loss = points_nll(model, scored_batch(part, tokenizer.pad_token_id, device), n_points).sum()
                    loss = loss / (n_tokens * n_points)
                    if not torch.isfinite(loss):
                        raise NonFiniteError(f"fitting the curve diverged at step {len(history) + 1} (loss "
                                             f"{loss.item()}); nothing was saved; use a smaller lr")
                    loss.backward()
                    step_loss += loss.item()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                history.append(step_loss)
                release_freed()  # a step's activations and gradients, freed: returned, not kept in the heap
            points = [{m: layer.free_factors(k) for m, layer in injected.layers.items()} for k in range(len(free))]
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    name = "bezier control" if path.kind == "bezier" else f"{path.kind} point"
    controls = [LoraWeights(factors, {m: 1.0 for m in factors}, a.base_model,
                            f"{name} ({space})" if len(points) == 1 else f"{name} {k + 1} ({space})", config=a.config)
                for k, factors in enumerate(points)]
    return CurveFit(controls, space, [a.source, b.source], history, config=config, path=path.kind)
