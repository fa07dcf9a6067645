"""A path-aware LoRA layer: the batch is K path points laid out point-major, the anchors' factors are shared.

For anchors with factors (A_i, B_i) (scales folded into B) and point k's coefficients c_k:
  delta  space: y = W x + [c_k1 B_1 | c_k2 B_2 | …] · ([A_1; A_2; …] · x)      (one matmul through the shared A stack)
  factor space: y = W x + (Σ_i c_ki B_i) · ((Σ_i c_ki A_i) · x)               (rank r, not n·r)
Per point, only the small mixed factors (rank × features) are formed, each forward; the block of rows of point k
then goes through one batched matmul. Nothing is stored per point, and everything stays differentiable (a Bézier
control point being fitted).
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import CompatibilityError
from ..lora.paths import Span


class Routing:
    """The ``[K, n_anchors]`` coefficients of the K points of the batch about to run (rows point-major, in K equal
    blocks), shared by every PathLoraLayer of one model. Set only through ``InjectedPath.points``, which scopes them to
    one block of forward passes."""

    def __init__(self):
        self.value: torch.Tensor | None = None
        self.rows = 0  # K · rows per point: the batch every path layer must see first
        self._copies: dict[torch.device, torch.Tensor] = {}

    def set(self, value: torch.Tensor | None, rows_per_point: int = 0) -> None:
        self.value, self._copies = value, {}
        self.rows = 0 if value is None else value.shape[0] * rows_per_point

    def current(self, device: torch.device) -> torch.Tensor:
        """The coefficients on ``device`` (a model spread over GPUs reads them on each layer's own device, once)."""
        if self.value is None:
            raise RuntimeError("a path-injected model ran outside `with injected.points(coefficients): ...`")
        if device not in self._copies:
            self._copies[device] = self.value.to(device, non_blocking=True)
        return self._copies[device]


class PathLoraLayer(nn.Module):
    """``trainable=(i, …)`` makes those anchors' factors parameters (a curve's free points being fitted); the rest stay
    fixed."""

    def __init__(self, base: nn.Module, a_stack: torch.Tensor, b_stack: torch.Tensor, ranks: list[int],
                 space: str, routing: Routing, trainable: tuple[int, ...] = (), name: str = ""):
        super().__init__()
        self.base, self.name = base, name
        self.read_directly, self.called = False, False
        self.register_buffer("a_stack", a_stack, persistent=False)  # [Σr, in]
        self.register_buffer("b_stack", b_stack, persistent=False)  # [out, Σr]
        self.register_buffer("block", torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks)), persistent=False)
        self.n, self.rank, self.space, self.routing = len(ranks), ranks[0], space, routing
        self.spans = [(sum(ranks[:i]), sum(ranks[: i + 1])) for i in sorted(trainable)]
        self.free = nn.ParameterList([nn.Parameter(t) for lo, hi in self.spans
                                      for t in (a_stack[lo:hi].clone(), b_stack[:, lo:hi].clone())])

    def __getattr__(self, attr: str):
        try:
            return super().__getattr__(attr)
        except AttributeError:
            if attr == "base":
                raise
            return getattr(self.base, attr)  # what peft's LoRA layers expose too (in_features, …)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight, as peft's LoRA layer exposes it; a model that multiplies by it itself (Mamba's
        ``dt_proj``) bypasses the LoRA term, which ``InjectedPath.points`` then refuses."""
        self.read_directly = True
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        self.read_directly = True
        return self.base.bias

    def stacks(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.spans:
            return self.a_stack, self.b_stack
        a_parts, b_parts, done = [], [], 0
        for k, (lo, hi) in enumerate(self.spans):
            a_parts += [self.a_stack[done:lo], self.free[2 * k]]
            b_parts += [self.b_stack[:, done:lo], self.free[2 * k + 1]]
            done = hi
        return torch.cat([*a_parts, self.a_stack[done:]], 0), torch.cat([*b_parts, self.b_stack[:, done:]], 1)

    def free_factors(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k-th trainable anchor's (A, B), detached on the CPU."""
        return self.free[2 * k].detach().cpu().clone(), self.free[2 * k + 1].detach().cpu().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.called = True
        out = self.base(x)
        if not isinstance(out, torch.Tensor):
            raise CompatibilityError(f"{self.name}: this layer returns a {type(out).__name__}, not a tensor (a mixture-of-experts "
                                     "router?), so no LoRA term can be added to it; leave it out of target_modules")
        a_stack, b_stack = self.stacks()
        c = self.routing.current(x.device).to(a_stack.dtype)  # [K, n]
        k, rows = c.shape[0], self.routing.rows
        if x.shape[0] % k or (rows and (x.shape[0] % rows or (x.dim() > 2 and x.shape[0] != rows))):
            raise CompatibilityError(f"{self.name}: this layer sees its input as {tuple(x.shape)}, not batch-first ({rows} "
                                     "rows), so rows cannot carry path points (tokens regrouped, or a length-first "
                                     "layout); leave it out of target_modules")
        # point k's rows (or, in a layer that sees its batch flattened to [rows·length, features] like OPT's MLP, its
        # tokens) form block k; the low-rank term runs in the factors' precision (float32), as peft computes it
        xs = x.reshape(k, -1, x.shape[-1]).to(a_stack.dtype)  # [K, m, in]
        if self.space == "delta":
            u = xs @ a_stack.T  # [K, m, Σr]
            b_points = b_stack.T.unsqueeze(0) * c[:, self.block].unsqueeze(-1)  # [K, Σr, out]
        else:
            a_points = torch.einsum("kn,nri->kri", c, a_stack.view(self.n, self.rank, -1))  # Σ_i c_ki A_i
            b_points = torch.einsum("kn,onr->kro", c, b_stack.view(b_stack.shape[0], self.n, self.rank))  # (Σ_i c_ki B_i)ᵀ
            u = xs @ a_points.transpose(1, 2)  # [K, m, r]
        # the LoRA term goes into the base layer's fresh output in place (its backward does not need it): float32, one
        # batched BLAS call; a bf16/fp16 base, the float32 term added in float32 and rounded once into the output, as
        # peft's ``(result + lora).to(result.dtype)`` does, with no float32 copy of the output and no cast back
        blocks = out.reshape(k, -1, out.shape[-1])
        if blocks.dtype == a_stack.dtype:
            return blocks.baddbmm_(u, b_points).view(out.shape)
        return blocks.add_(torch.bmm(u, b_points)).view(out.shape)


def _features(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":  # GPT-2: weight is [in, out]
        return module.weight.shape[0], module.weight.shape[1]
    raise CompatibilityError(f"LoRA on {type(module).__name__} layers is not supported (nn.Linear and GPT-2 Conv1D are)")


def stacked_factors(path: Span, devices, dtype=torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """Per module: A's stacked by rows, (scaled) B's side by side, and each anchor's rank; on ``devices[module]``
    (each module's own device: a model spread over GPUs keeps each layer's stacks beside it)."""
    folded = [a.folded() for a in path.anchors]
    out = {}
    for m in path.modules:
        a = torch.cat([f[m][0] for f in folded], 0).to(devices[m], dtype)
        b = torch.cat([f[m][1] for f in folded], 1).to(devices[m], dtype)
        out[m] = (a, b, [f[m][0].shape[0] for f in folded])
    return out


_EXPERTS = re.compile(r"(^|\.)(experts|block_sparse_moe)(\.|$)")


class InjectedPath:
    """A model whose adapted modules are PathLoraLayers: ``points`` says which path point each batch row is."""

    def __init__(self, model: nn.Module, layers: dict[str, PathLoraLayer], routing: Routing):
        self.model, self.layers, self._routing = model, layers, routing

    @contextmanager
    def points(self, coefficients: torch.Tensor, rows_per_point: int):
        """Inside the block, rows ``[k·b, (k+1)·b)`` of every batch are the point ``Σ_i coefficients[k, i]·θ_i``
        (``b = rows_per_point``): the point-major layout of the evaluator and the curve fit."""
        self._routing.set(coefficients, rows_per_point)
        for layer in self.layers.values():
            layer.read_directly, layer.called = False, False
        try:
            yield
        finally:
            self._routing.set(None)
        bypassed = [name for name, layer in self.layers.items() if layer.read_directly and not layer.called]
        if bypassed:
            raise CompatibilityError(f"{bypassed[0]}: the model multiplies by this layer's weight itself instead of calling "
                                     "it, so a LoRA term there is never applied (peft ignores it too); leave "
                                     f"{bypassed[0].rsplit('.', 1)[-1]} out of target_modules")

    def parameters(self) -> list[nn.Parameter]:
        """The trainable anchors' factors in every layer (``inject_path(..., trainable=(i, …))``), for an optimizer."""
        return [p for layer in self.layers.values() for p in layer.free]


class Unrouted:
    """The stand-in for ``InjectedPath`` when a model is scored as it stands (one point, no path layers)."""

    @contextmanager
    def points(self, coefficients: torch.Tensor, rows_per_point: int):
        yield


@contextmanager
def inject_path(model: nn.Module, path: Span, trainable: tuple[int, ...] = ()):
    """Temporarily replace each adapted module of ``model`` with a PathLoraLayer; yields the ``InjectedPath``
    (with ``trainable=(i, …)``, each layer holds those anchors' factors as parameters, ``free_factors(k)``)."""
    routing = Routing()
    replaced, layers, modules = [], {}, {}
    for name in path.modules:
        if _EXPERTS.search(name):
            raise CompatibilityError(f"{name}: LoRA on mixture-of-experts expert layers is not supported (their tokens are "
                                     "routed, so rows cannot carry path points); adapt the attention and shared layers")
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise CompatibilityError(f"the base model has no module '{name}' that the adapter {path.anchors[0].source} adapts") from None
    stacks = stacked_factors(path, {m: module.weight.device for m, module in modules.items()})
    try:
        for name, (a, b, ranks) in stacks.items():
            module = modules[name]
            fan_in, fan_out = _features(module)
            if a.shape[1] != fan_in or b.shape[0] != fan_out:
                raise CompatibilityError(
                    f"{name}: adapter shapes A{tuple(a.shape)} B{tuple(b.shape)} do not fit the base layer ({fan_in} → {fan_out})"
                )
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            layers[name] = PathLoraLayer(module, a, b, ranks, space=path.space, routing=routing, trainable=trainable, name=name)
            setattr(parent, child, layers[name])
            replaced.append((parent_name, child, module))
        yield InjectedPath(model, layers, routing)
    finally:  # parents looked up again: a model may rebuild them in its forward (BigBird's attention switch)
        for parent_name, child, module in reversed(replaced):
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
