"""Adaptive barrier search against the uniform 21-point grid: evaluations used and barrier error, both measured
against a dense 81-point grid, on paths of the embedded default.

Paths: each embedded task adapter against a re-factorised copy of itself or of the next task's adapter (rank components permuted, rescaled, signs flipped:
the same ΔW, so its factor-space line has a real bump — the permutation symmetry of LoRA factors), and the
consecutive task pairs of the embedded sequence (whose per-task barriers are 0: each task's loss rises
monotonically away from its own minimum). Prints one JSON line per path and task; writes results/adaptive.{json,md}.

    python benchmarks/adaptive.py [--limit 48]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeconn.lora.adapters import LoraWeights, load_adapter  # noqa: E402
from modeconn.analysis.barrier import loss_barrier  # noqa: E402
from modeconn.evaluator.data import load_split  # noqa: E402
from modeconn.evaluator.evaluate import EvalConfig, evaluate_points  # noqa: E402
from modeconn.evaluator.models import checkpoints_dir, load_base  # noqa: E402
from modeconn.lora.paths import linear_path, uniform_ts  # noqa: E402
from modeconn.analysis.search import SearchConfig, adaptive_evaluation  # noqa: E402


def refactorised(weights: LoraWeights, seed: int) -> LoraWeights:
    """The same ΔW with each module's rank components permuted, sign-flipped and rescaled: A' = D S P A,
    B' = B Pᵀ S D⁻¹ (D positive diagonal, so the path's bump is not symmetric about t = ½)."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for m, (a, b) in weights.factors.items():
        perm = torch.randperm(a.shape[0], generator=generator)
        signs = torch.randint(0, 2, (a.shape[0],), generator=generator).float() * 2 - 1
        scale = torch.exp(0.7 * torch.randn(a.shape[0], generator=generator)) * signs
        factors[m] = (a[perm] * scale[:, None], b[:, perm] / scale[None, :])
    return LoraWeights(factors, dict(weights.scaling), weights.base_model, f"{weights.source} (re-factorised)", weights.config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=48, help="eval examples per task")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "adaptive")
    args = parser.parse_args()
    root = checkpoints_dir()
    names = ["news", "gloss", "fortune", "stdlib"]
    adapters = {n: load_adapter(root / "seq" / n) for n in names}
    data = {n: load_split(root / "data" / n, "eval", args.limit) for n in names}
    model, tokenizer = load_base("tiny-llama")
    config = EvalConfig(accuracy=False, progress=False)
    cases = [(f"{n} ↔ {n} re-factorised", adapters[n], refactorised(adapters[n], 0), {n: data[n]}) for n in names[:2]]
    cases += [(f"{a} → {b} re-factorised", adapters[a], refactorised(adapters[b], 1), {a: data[a], b: data[b]})
              for a, b in zip(names, names[1:])]
    cases += [(f"{a} → {b}", adapters[a], adapters[b], {a: data[a], b: data[b]}) for a, b in zip(names, names[1:])]
    rows = []
    for label, a, b, tasks in cases:
        path = linear_path(a, b, "factor", base_given=True)
        score = lambda ts: evaluate_points(model, tokenizer, path, path.coefficients(ts), tasks, config)  # noqa: E731
        dense_t, grid_t = uniform_ts(81), uniform_ts(21)
        dense = score(dense_t)
        found = adaptive_evaluation(score, SearchConfig())
        for task in tasks:
            truth = loss_barrier(dense_t, dense[task].loss).value
            grid = loss_barrier(grid_t, dense[task].loss[::4]).value  # the 21-point grid is every 4th dense point
            adaptive = loss_barrier(found.t, found.tasks[task].loss).value
            row = {"path": label, "task": task, "dense81": round(truth, 5), "grid21": round(grid, 5), "adaptive": round(adaptive, 5),
                   "adaptive_evaluations": len(found.t), "grid_evaluations": 21,
                   "adaptive_error_pct": round(100 * abs(adaptive - truth) / truth, 3) if truth > 1e-9 else 0.0,
                   "grid_error_pct": round(100 * abs(grid - truth) / truth, 3) if truth > 1e-9 else 0.0}
            print(json.dumps(row, ensure_ascii=False), flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"limit": args.limit, "rows": rows}, indent=2, ensure_ascii=False) + "\n")
    lines = ["Adaptive barrier search vs the uniform 21-point grid (embedded default, factor space, "
             f"{args.limit} eval examples per task). Errors against a dense 81-point grid.", "",
             "| path | task | barrier (81 pts) | grid 21 | adaptive | adaptive evals | grid error | adaptive error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['task']} | {r['dense81']:.4f} | {r['grid21']:.4f} | {r['adaptive']:.4f} | "
                     f"{r['adaptive_evaluations']} | {r['grid_error_pct']:.2f}% | {r['adaptive_error_pct']:.2f}% |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
