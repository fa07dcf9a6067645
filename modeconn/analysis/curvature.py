"""Curvature of a task's loss at a LoRA point: the largest Hessian and Gauss-Newton eigenvalues and a Hutchinson trace.

The loss is the evaluator's (token-weighted mean answer NLL over the task, the one every barrier reports), as a
function of the point's LoRA factors A and B as peft trains them (the scale applied in the forward). The products go
through the evaluator's path layer with the point's factors trainable: curvlinops' GGN operator and Hessian products by
double backpropagation, for scipy's ``eigsh``. Mirzadeh et al. (2020) relate sharper minima to more forgetting:
``modeconn report --curvature`` sets each task minimum's sharpness against its forgetting.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy
import torch
from torch import nn

from .. import checks
from ..errors import ConfigError, DataError
from ..evaluator.batch import scored_batch
from ..evaluator.budget import batches
from ..evaluator.data import Encoded
from ..evaluator.head import causal_lm, scoring_head
from ..evaluator.layer import inject_path
from ..evaluator.memory import release_freed
from ..lora.adapters import LoraWeights
from ..lora.paths import Span
from ..results import JsonResult
from .settings import StudySettings

PARAMETERS = "the LoRA factors A and B as peft trains them (the scale applied in the forward)"


@dataclass(frozen=True)
class CurvatureConfig:
    top_k: int = field(default=5, metadata={"help": "how many of the largest eigenvalues"})
    ggn: bool = field(default=True, metadata={"help": "also the Gauss-Newton matrix's largest eigenvalues"})
    probes: int | None = field(default=20, metadata={
        "help": "Rademacher probes of the Hutchinson trace estimate (None: no trace); the seed draws them"})
    tol: float | None = field(default=None, metadata={
        "help": "relative accuracy ARPACK stops at for the eigenvalues (None: 1e-5, or machine precision in float64); "
                "1e-3 takes a fraction of the Hessian-vector products on a large base"})

    def __post_init__(self):
        checks.count("top_k", self.top_k, 1)
        checks.flag("ggn", self.ggn)
        if self.probes is not None:
            checks.count("probes", self.probes, 2)
        if self.tol is not None:
            checks.finite("tol", self.tol, 0, 0.1, low_open=True)


class AnswerLogits(nn.Module):
    """A scored batch → the logits at its answer positions ``[n, V]``: the evaluator's forward in a form curvlinops
    calls (a model function of one input, and a loss over its rows), so the masked LM loss is a plain cross-entropy."""

    def __init__(self, model: nn.Module, injected):
        super().__init__()
        self.model, self.injected = model, injected

    def forward(self, batch: dict) -> torch.Tensor:
        with self.injected.points(batch["coefficients"], batch["ids"].shape[0]):
            with scoring_head(self.model, batch["rows"], batch["cols"]):
                return causal_lm(self.model)(input_ids=batch["ids"], attention_mask=batch["mask"], use_cache=False).logits[0]


@dataclass
class CurvaturePoint:
    """One LoRA point scored on one task: its loss and the curvature of that loss."""

    adapter: str
    task: str
    loss: float
    hessian: list[float]  # the top-k eigenvalues, largest first
    ggn: list[float] | None = None
    trace: float | None = None  # Hutchinson estimate of the Hessian's trace
    trace_se: float | None = None  # its standard error over the probes
    t: float | None = None  # the point's t on the --along path
    parameters: int = 0
    examples: int = 0


@dataclass
class CurvatureResult(JsonResult):
    kind: ClassVar[str] = "curvature"

    points: list[CurvaturePoint]
    base_model: str
    split: str
    top_k: int
    probes: int | None
    parameters_of: str = PARAMETERS
    along: dict | None = None  # {"from", "to", "space"} of the path whose points were measured
    run: str | None = None  # the run folder whose task minima were measured, each on its own task
    made_by: dict = field(default_factory=dict)

    @classmethod
    def from_fields(cls, data: dict) -> "CurvatureResult":
        return cls(**{**data, "points": [CurvaturePoint(**p) for p in data["points"]]})

    def table(self) -> str:
        rows = [f"{'adapter' if self.along is None else 't':>24}  {'task':<12} {'loss':>8} {'λ_max H':>10} "
                f"{'λ_max GGN':>10} {'trace H ± SE':>20}"]
        for p in self.points:
            where = Path(p.adapter).name if p.t is None else f"{p.t:.3f}"
            ggn = f"{p.ggn[0]:10.4g}" if p.ggn else f"{'—':>10}"
            trace = f"{p.trace:.4g} ± {p.trace_se:.2g}" if p.trace is not None else "—"
            rows.append(f"{where:>24}  {p.task:<12} {p.loss:8.4f} {p.hessian[0]:10.4g} {ggn} {trace:>20}")
        return "\n".join(rows) + f"\n(top {self.top_k} eigenvalues of each in the JSON; parameters: {self.parameters_of})"

    def by_task(self) -> dict[str, CurvaturePoint]:
        """Each task's point (the run's task minima, one per task)."""
        return {p.task: p for p in self.points}


def _curvlinops():
    try:
        import curvlinops
    except ImportError:
        raise ConfigError("modeconn curvature needs curvlinops: pip install --no-deps curvlinops-for-pytorch einops "
                          "einconv linear_operator opt-einsum") from None
    return curvlinops


def math_attention():
    """Attention by its plain math kernel inside the block: curvlinops' products use forward-mode AD, which the fused
    CPU and CUDA attention kernels do not implement; the math kernel computes the same function."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def _data(encoded: list[Encoded], pad_id: int, budget: int, *, device, dtype) -> list[tuple[dict, torch.Tensor]]:
    """The task as curvlinops' data: one (scored batch, answer targets) pair per length-grouped batch."""
    one = torch.ones(1, 1, dtype=dtype)
    out = []
    for batch in batches(encoded, lambda e: len(e.ids), 1, budget):
        ids, mask, rows, cols, targets = scored_batch([encoded[i] for i in batch], pad_id, device)
        out.append(({"ids": ids, "mask": mask, "rows": rows, "cols": cols, "coefficients": one}, targets))
    return out


class HessianProducts:
    """Hessian-matrix products of the mean answer NLL by reverse-over-reverse differentiation, one forward pass per
    batch for all columns. Written here, not curvlinops' ``HessianLinearOperator``: its forward-over-reverse products
    need forward-mode derivatives of activation backwards (``silu_backward``) that torch does not implement."""

    def __init__(self, logits: nn.Module, params: list, data: list, n_tokens: int):
        self.logits, self.params, self.data, self.n_tokens = logits, params, data, n_tokens
        self.shapes = [p.shape for p in params]

    def __matmul__(self, m: numpy.ndarray) -> numpy.ndarray:
        dtype = self.params[0].dtype
        columns = torch.as_tensor(m.reshape(m.shape[0], -1), dtype=dtype).to(self.params[0].device)
        out = torch.zeros_like(columns)
        for x, y in self.data:
            loss = nn.functional.cross_entropy(self.logits(x), y, reduction="sum") / self.n_tokens
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            for j in range(columns.shape[1]):
                parts = torch.split(columns[:, j], [p.numel() for p in self.params])
                hv = torch.autograd.grad(grads, self.params, [v.view(s) for v, s in zip(parts, self.shapes)],
                                         retain_graph=j + 1 < columns.shape[1])
                out[:, j] += torch.cat([h.reshape(-1) for h in hv])
        release_freed()  # each product's double-backward graph, freed: returned, not kept in the heap
        return out.cpu().double().numpy().reshape(m.shape)


def _top(operator, k: int, v0: numpy.ndarray, tol: float) -> list[float]:
    from scipy.sparse.linalg import eigsh

    values = eigsh(operator, k=k, which="LA", v0=v0, tol=tol, return_eigenvectors=False)
    return sorted(values.tolist(), reverse=True)


def point_curvature(model: nn.Module, point: LoraWeights, encoded: list[Encoded], pad_id: int, *,
                    config: CurvatureConfig = CurvatureConfig(), seed: int = 0, budget: int = 4096) -> dict:
    """Loss, the top ``config.top_k`` Hessian (and GGN) eigenvalues and a Hutchinson trace ± SE (``config.probes``
    Rademacher vectors from a ``torch.Generator`` seeded by ``seed``) of the answer NLL over ``encoded`` at ``point``,
    with respect to its A and B factors. The LoRA terms run in the base's precision (float64 in tests)."""
    from scipy.sparse.linalg import LinearOperator

    GGNLinearOperator = _curvlinops().GGNLinearOperator

    if not encoded:
        raise DataError("no examples to measure the curvature on")
    checks.instance("config", config, CurvatureConfig, "a CurvatureConfig")
    top_k, ggn, probes = config.top_k, config.ggn, config.probes
    generator = torch.Generator().manual_seed(seed)
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    try:
        with inject_path(model, Span((point,), "factor"), trainable=(0,)) as injected, math_attention():
            dtype = next(iter(injected.layers.values())).base.weight.dtype
            for layer in injected.layers.values():
                layer.to(dtype)
            params = injected.parameters()
            # the layer holds B with the scale folded in (s·B); the factors peft trains are (A, B): H = D·H_folded·D
            scale = numpy.concatenate([numpy.full(p.numel(), 1.0 if k % 2 == 0 else point.scaling[m])
                                       for m, layer in injected.layers.items() for k, p in enumerate(layer.free)])
            n = scale.size
            if top_k >= n:
                raise ConfigError(f"top_k {top_k} must be below the number of LoRA parameters ({n})")
            device = params[0].device
            data = _data(encoded, pad_id, budget, device=device, dtype=dtype)
            logits = AnswerLogits(model, injected)
            n_tokens = sum(len(t) for _, t in data)
            loss_fn = nn.CrossEntropyLoss(reduction="mean")
            # check_deterministic off: the model is in eval mode and the batches are fixed (it would cost extra passes)
            common = dict(data=data, num_data=n_tokens, batch_size_fn=lambda x: len(x["rows"]), check_deterministic=False)
            with torch.no_grad():
                loss = sum(nn.functional.cross_entropy(logits(x), y, reduction="sum").item() for x, y in data) / n_tokens
            tol = config.tol if config.tol is not None else 0.0 if dtype == torch.float64 else 1e-5
            v0 = torch.rand(n, generator=generator, dtype=torch.float64).numpy() - 0.5

            def scaled(inner):
                return LinearOperator((n, n), matvec=lambda v: scale * (inner @ (scale * v.ravel())),
                                      matmat=lambda m: scale[:, None] * (inner @ (scale[:, None] * m)), dtype=numpy.float64)

            hessian = scaled(HessianProducts(logits, params, data, n_tokens))
            out = {"loss": loss, "hessian": _top(hessian, top_k, v0, tol), "parameters": n, "examples": len(encoded)}
            if ggn:
                out["ggn"] = _top(scaled(GGNLinearOperator(logits, loss_fn, params, **common).to_scipy(numpy.float64)),
                                  top_k, v0, tol)
            if probes is not None:
                out["trace"], out["trace_se"] = hutchinson(hessian, n, probes, generator)
            return out
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        model.train(was_training)


def hutchinson(operator, n: int, probes: int, generator: torch.Generator) -> tuple[float, float]:
    """Hutchinson's trace estimate with Rademacher probes, and its standard error. Written here, not curvlinops'
    ``hutchinson_trace``: that one returns no standard error and draws from the global RNG."""
    checks.count("probes", probes, 2)
    v = (torch.randint(0, 2, (n, probes), generator=generator, dtype=torch.float64) * 2 - 1).numpy()
    samples = numpy.einsum("ij,ij->j", v, operator.matmat(v))
    return float(samples.mean()), float(samples.std(ddof=1) / numpy.sqrt(probes))


def _unfolded(point: LoraWeights, scales: dict[str, float]) -> LoraWeights:
    """A path point (scales folded into B) as factors with ``scales`` applied in the forward again, as peft trains."""
    factors = {m: (a, b / scales[m]) for m, (a, b) in point.factors.items()}
    return replace(point, factors=factors, scaling=dict(scales))


def measure_curvature(adapters, settings: StudySettings = StudySettings(), config: CurvatureConfig = CurvatureConfig(), *,
                      along: bool = False, space: str = "factor", points: int = 5,
                      keep: str | None = None) -> CurvatureResult:
    """Curvature of each adapter on every task of the study; a run folder (a ``modeconn train`` output) gives each task's
    minimum on its own task; ``along``: the two ``adapters`` are the ends of a linear path in ``space``, measured at
    ``points`` evenly spaced t on every task. Curvature is computed in float32 (``dtype`` float32 only). ``keep``: a
    folder where each point is written the moment it is measured and read back by a later call with the same inputs
    and settings (a SmolLM2 task minimum takes a quarter of an hour on a CPU: a stopped run resumes at its next point)."""
    from tqdm import tqdm

    from ..files import keep as keep_point, kept
    from ..lora.paths import linear_path, uniform_ts
    from ..lora.sequence import MANIFEST, load_sequence
    from .study import Study

    checks.instance("settings", settings, StudySettings, "a StudySettings (e.g. StudySettings(limit=24))")
    given = checks.texts("adapters", [adapters] if isinstance(adapters, (str, Path)) else adapters, low=1)
    checks.instance("config", config, CurvatureConfig, "a CurvatureConfig (e.g. CurvatureConfig(top_k=5))")
    checks.choice("space", space, ("factor", "delta"))
    checks.text("keep", keep, optional=True)
    if settings.dtype != "float32":
        raise ConfigError(f"curvature is computed in float32 (second derivatives in {settings.dtype} are mostly rounding); "
                          "leave --dtype out")
    runs = [Path(a) for a in given if (Path(a) / MANIFEST).is_file()]
    if along and (len(given) != 2 or runs):
        raise ConfigError("--along measures the path between two adapters: pass exactly two adapter folders")
    if runs and len(given) > 1:
        raise ConfigError("pass one run folder alone (its task minima are measured, each on its own task)")
    settings = replace(settings, accuracy=False)
    parameters_of = PARAMETERS
    if runs:
        seq = load_sequence(runs[0])
        study = Study.open([str(seq.adapter_dir(t)) for t in seq.tasks], settings, space="delta", sequence=seq)
        jobs = [(str(seq.adapter_dir(t)), study.adapters[i], t.name, None) for i, t in enumerate(seq.tasks)]
    elif along:
        study = Study.open(given, settings, space=space)
        a, b = study.adapters
        path = linear_path(a, b, space, base_given=True)
        same = a.scaling == b.scaling
        if not same:
            parameters_of = "each path point's factors A and scale·B (the two adapters' scales differ)"
        jobs = [(f"t={t:g}", _unfolded(path.at(t), a.scaling) if same else path.at(t), name, t)
                for t in uniform_ts(points) for name in study.sources]
    else:
        study = Study.open(given, settings, space="delta")
        jobs = [(loc, w, name, None) for loc, w in zip(given, study.adapters) for name in study.sources]
    encoded = {name: enc for name, (enc, _) in study.encoded().items()}
    key = _point_key(given, settings, config=config, along=along, space=space) if keep is not None else None
    measured = []
    for index, (label, point, task, t) in enumerate(tqdm(jobs, desc="curvature", disable=not study.settings.progress)):
        record = Path(keep or ".") / f"point-{index}.json"
        found = kept(record, {**key, "label": label, "task": task, "t": t}) if keep is not None else None
        if found is None:
            found = point_curvature(study.model, point, encoded[task], study.tokenizer.pad_token_id, config=config,
                                    seed=study.seed, budget=study.settings.max_batch_tokens)
            if keep is not None and study.processes.main:
                keep_point(record, {**key, "label": label, "task": task, "t": t}, found)
        measured.append(CurvaturePoint(label, task, t=t, **found))
    return CurvatureResult(measured, study.base_name, study.split, config.top_k, probes=config.probes,
                           along={"from": given[0], "to": given[1], "space": space} if along else None,
                           run=str(runs[0].resolve()) if runs else None, parameters_of=parameters_of,
                           made_by=study.made_by(**asdict(config), along=along,
                                                 space=space if along else None, points=points if along else None))


def _point_key(given: list[str], settings: StudySettings, *, config: CurvatureConfig, along: bool, space: str) -> dict:
    """What a kept point was measured from and with: the content of every adapter or run folder, of the manifest and
    task data beside it (or inside it), and of any ``--data``; and the settings that change a number."""
    from ..files import content_hash
    from ..lora.sequence import MANIFEST, load_sequence
    from .study import parse_data_spec

    data = [parse_data_spec(s).path if isinstance(s, str) else s.path for s in settings.data]
    for where in sorted({Path(g) if (Path(g) / MANIFEST).is_file() else Path(g).parent for g in given}):
        if (where / MANIFEST).is_file():
            seq = load_sequence(where)
            data += [where / MANIFEST, *(seq.data_dir(t) for t in seq.tasks)]
    fields = {k: v for k, v in asdict(settings).items() if k != "progress"}
    return {"content": content_hash([*given, *data]), "settings": fields, "config": asdict(config), "along": along,
            "space": space}
