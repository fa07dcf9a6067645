"""Merges of task vectors τ_i (LoRA adapters, each a ΔW relative to the base) in ΔW space: task arithmetic, TIES and
MagMax, written back as LoRA weights the evaluator and peft read.

Task arithmetic Σ λ·τ_i is exactly a stacked LoRA of rank Σ r_i (no loss). TIES and MagMax choose per entry of ΔW, so
their result is a dense ΔW per module: it is written back as a LoRA by SVD, exact at rank min(d_out, d_in), or
truncated to a given rank with its relative Frobenius error recorded.

peft's ``add_weighted_adapter`` against these (``tests/lora/test_merge.py`` checks each):

- ``cat`` and ``svd`` (at full ``svd_rank``) equal ``task_arithmetic`` with weights λ.
- ``ties_svd`` equals ``ties`` where the maths is the same: peft trims each module's ΔW on its own
  (``magnitude_based_pruning`` per tensor), the reference trims each task vector as a whole (global over all
  modules), so they agree on one adapted module; peft elects +1 where the trimmed sum is 0, the reference the sign of
  the majority (a difference only where non-zero values cancel exactly).
- ``linear`` and ``ties`` (without svd) combine A's and B's separately, each scaled by √(w·s): ΔW gets cross terms
  √(w_i w_j) B_i A_j, a merge in neither space.
- ``magnitude_prune_svd`` trims and sums without electing signs: no counterpart here; MagMax has none in peft.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks
from ..errors import ConfigError
from .adapters import LoraWeights, check_compatible


@dataclass(frozen=True)
class DenseMerge:
    """A merge written back as a LoRA, and the relative Frobenius error ‖ΔW − ΔW_r‖ / ‖ΔW‖ over all modules of
    truncating it to ``rank`` (0 when exact)."""

    weights: LoraWeights
    truncation_error: float
    rank: int | None


def _checked(deltas: list[LoraWeights], scale: float) -> float:
    if not isinstance(deltas, (list, tuple)) or not deltas or not all(isinstance(d, LoraWeights) for d in deltas):
        raise ConfigError("deltas must be a non-empty list of LoraWeights (one task vector per task)")
    check_compatible(list(deltas), "delta", base_given=True)
    return checks.finite("scale", scale)


def task_arithmetic(deltas: list[LoraWeights], scale: float = 1.0) -> LoraWeights:
    """``Σ_i scale·τ_i`` (Ilharco et al., 2023) as the stacked LoRA ``[s B_1 | s B_2 | …]·[A_1; A_2; …]``: exact."""
    scale = _checked(deltas, scale)
    folded = [d.folded() for d in deltas]
    factors = {m: (torch.cat([f[m][0] for f in folded]), torch.cat([scale * f[m][1] for f in folded], dim=1))
               for m in deltas[0].modules}
    first = deltas[0]
    return LoraWeights(factors, dict.fromkeys(factors, 1.0), first.base_model, f"task arithmetic ×{scale:g}",
                       config=first.config)


def _kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    return values.kthvalue(values.numel() - k + 1).values


def ties_delta(deltas: list[LoraWeights], density: float = 0.2) -> dict[str, torch.Tensor]:
    """TIES-merging's ΔW per module at λ = 1 (Yadav et al., NeurIPS 2023): trim each task vector to its
    ``density`` largest magnitudes, elect each entry's sign as the sign of the sum of the trimmed values, and take the
    mean of the trimmed values that agree with it (disjoint mean).

    Reference: TIES-Merging's merge utilities, as copied in danielm1405/magmax ``src/merging/ties.py`` (the authors'
    repository prateeksr/TIES-Merging was not reachable here): the trim runs on each task vector flattened over all
    parameters (``state_dict_to_vector``, :253-261; ``topk_values_mask``, :98-118), so here over every module's ΔW at
    once; sign by ``resolve_sign(..., "mass")`` (:163-173), a zero sum taking the majority sign (:188-195); disjoint
    mean (:200-228).

    Choices the papers leave open: the reference keeps ``int(n·density) + 1`` entries (``kthvalue`` then ``>=``);
    modeconn keeps the top ``max(1, int(n·density))`` as the paper words it and as peft does (ties at the threshold all
    kept). The trim is on ΔW = s·B·A, not on A and B, which are not the model's parameters. Finding a task vector's
    threshold holds its |ΔW| over all modules at once, as the reference holds the flattened model.
    """
    _checked(deltas, 1.0)
    density = checks.finite("density", density, 0, 1, low_open=True)
    modules = deltas[0].modules
    thresholds = []
    for d in deltas:
        flat = torch.cat([d.delta(m).abs().flatten() for m in modules])
        thresholds.append(_kth_largest(flat, max(1, int(flat.numel() * density))))

    def trimmed(m: str) -> torch.Tensor:
        return torch.stack([w * (w.abs() >= th) for w, th in ((d.delta(m), th) for d, th in zip(deltas, thresholds))])

    # a zero sum takes the sign of the majority over the whole merge: a first pass over the modules
    majority = torch.sign(sum(torch.sign(trimmed(m).sum(0)).sum() for m in modules))
    out = {}
    for m in modules:
        stack = trimmed(m)
        sign = torch.sign(stack.sum(0))
        sign[sign == 0] = majority if majority != 0 else 1
        agree = torch.where(sign > 0, stack > 0, stack < 0)
        out[m] = (stack * agree).sum(0) / agree.sum(0).clamp(min=1)
    return out


def magmax_delta(deltas: list[LoraWeights]) -> dict[str, torch.Tensor]:
    """MagMax's ΔW per module at λ = 1 (Marczak et al., ECCV 2024): each entry the value of largest magnitude over the
    task vectors, a later task winning a tie (danielm1405/magmax ``src/merging/task_vectors.py:104-127``, ``>=`` at
    :122)."""
    _checked(deltas, 1.0)
    out = {}
    for m in deltas[0].modules:
        best = deltas[0].delta(m)
        for d in deltas[1:]:
            current = d.delta(m)
            best = torch.where(current.abs() >= best.abs(), current, best)
        out[m] = best
    return out


def svd_lora(dense: dict[str, torch.Tensor], rank: int | None = None, like: LoraWeights | None = None,
             source: str = "merge") -> DenseMerge:
    """Each module's ΔW as SVD-balanced factors ``B = U√S, A = √S Vᵀ``: exact at ``rank=None`` (min(d_out, d_in)),
    else the best rank-``rank`` approximation (Eckart–Young) and its relative Frobenius error over all modules."""
    rank = checks.optional_count("rank", rank)
    factors, lost, total = {}, 0.0, 0.0
    for m, w in dense.items():
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = len(s) if rank is None else min(rank, len(s))
        root = s[:r].sqrt()
        factors[m] = (root[:, None] * vh[:r], u[:, :r] * root)
        lost += float(s[r:].square().sum())
        total += float(s.square().sum())
    error = (lost / total) ** 0.5 if total > 0 else 0.0
    weights = LoraWeights(factors, dict.fromkeys(factors, 1.0), like.base_model if like else None, source,
                          config=like.config if like else {})
    return DenseMerge(weights, error, rank)


def ties(deltas: list[LoraWeights], density: float = 0.2, scale: float = 1.0, rank: int | None = None) -> DenseMerge:
    """``scale`` × TIES-merging of the task vectors (``ties_delta``), written back as a LoRA (``svd_lora``)."""
    scale = _checked(deltas, scale)
    dense = {m: scale * w for m, w in ties_delta(deltas, density).items()}
    return svd_lora(dense, rank, deltas[0], f"ties ×{scale:g}")


def magmax(deltas: list[LoraWeights], scale: float = 1.0, rank: int | None = None) -> DenseMerge:
    """``scale`` × MagMax of the task vectors (``magmax_delta``), written back as a LoRA (``svd_lora``)."""
    scale = _checked(deltas, scale)
    dense = {m: scale * w for m, w in magmax_delta(deltas).items()}
    return svd_lora(dense, rank, deltas[0], f"magmax ×{scale:g}")
