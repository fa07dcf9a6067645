"""One search budget for the continual benchmark, as bookkeeping without training: every method is chosen over the
same learning-rate grid, at most MAX_OWN values of one option of its own, and the same selection seeds; each winner
is checked for sitting inside the lr grid, and a grid whose winner sits on an edge is extended for the next run."""
from __future__ import annotations

import math

LR_GRID = [3e-4, 1e-3, 3e-3, 1e-2]  # 3e-3 won for 9 of 13 methods over [1e-3, 3e-3]: one more point each side
LR_BOUNDS = (1e-5, 1.0)  # the grid is never extended past these
MAX_OWN = 3


class BudgetError(ValueError):
    """A selection that would give the methods unequal search budgets."""


def configs(lr_grid: list[float], own: dict[str, list]) -> list[dict]:
    """Every configuration of one method: each lr of the grid × each value of its one own option (if any)."""
    if not own:
        return [{"lr": lr} for lr in lr_grid]
    (name, values), = own.items()
    return [{"lr": lr, name: value} for value in values for lr in lr_grid]


def check_budget(plans: dict[str, dict]) -> None:
    """``plans``: label → {"lr_grid", "own": {option: values}, "seeds"}. Refuse unless every method has the same lr
    grid and seeds (at least two), and at most one own option of at most MAX_OWN values, never the lr itself."""
    if not plans:
        return
    first, reference = next(iter(plans.items()))
    grid, seeds = sorted(reference["lr_grid"]), sorted(reference["seeds"])
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise BudgetError(f"{first}: selection seeds {reference['seeds']}: at least two different seeds are needed")
    for label, plan in plans.items():
        if sorted(plan["lr_grid"]) != grid:
            raise BudgetError(f"{label} is selected over lr {plan['lr_grid']}, {first} over {reference['lr_grid']}: every "
                              "method needs the same lr grid (rerun select for every method; finished runs are skipped)")
        if sorted(plan["seeds"]) != seeds:
            raise BudgetError(f"{label} is selected with seeds {plan['seeds']}, {first} with {reference['seeds']}: every "
                              "method needs the same selection seeds")
        own = plan.get("own") or {}
        if "lr" in own or len(own) > 1 or any(len(v) > MAX_OWN or len(set(map(repr, v))) != len(v) for v in own.values()):
            raise BudgetError(f"{label}: own options {own}: at most one option besides lr, with at most {MAX_OWN} "
                              "different values")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(tried: list[dict], seeds: list[int], lr_grid: list[float]) -> dict:
    """One method's selection entry from its configurations with their per-seed eval APs (``eval_AP``): the winner
    (best mean eval AP; ties go to the smaller lr, then the earlier option value), whether its lr is interior to the
    grid, which edge it sits on, and whether every configuration scored the same (``flat``: nothing to choose)."""
    grid = sorted(lr_grid)
    means = [_mean(c["eval_AP"]) for c in tried]
    best = max(means)
    order = sorted(range(len(tried)), key=lambda i: (-means[i], tried[i]["lr"], i))
    winner = tried[order[0]]
    lr = winner["lr"]
    edge = "low" if lr == grid[0] else "high" if lr == grid[-1] else None
    return {"configs": tried, "seeds": list(seeds),
            "selected": {**{k: v for k, v in winner.items() if k != "eval_AP"}, "eval_AP_mean": best},
            "lr_grid": grid, "interior": edge is None, "edge": edge, "flat": max(means) == min(means)}


def _beyond(lr: float, up: bool) -> float:
    """The next point of a 1-3-10 grid past ``lr`` (×3 then ×10/3 upward, the reverse downward)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    three = lr / 10 ** exponent > 2
    if up:
        return float(f"{(10 ** (exponent + 1)) if three else 3 * 10 ** exponent:.0e}")
    return float(f"{(10 ** exponent) if three else 3 * 10 ** (exponent - 1):.0e}")


def next_grid(lr_grid: list[float], selection: dict[str, dict]) -> tuple[list[float], list[str]]:
    """The grid for the next select run: one point past each edge that some method's winner sits on (a method whose
    configurations all tie says nothing about the lr and is left out), within LR_BOUNDS; and a line per such method."""
    grid, notes = sorted(lr_grid), []
    for label, entry in selection.items():
        if entry["interior"] or entry["flat"]:
            continue
        up = entry["edge"] == "high"
        point = _beyond(grid[-1] if up else grid[0], up)
        if LR_BOUNDS[0] <= point <= LR_BOUNDS[1]:
            notes.append(f"{label}: winner lr {entry['selected']['lr']:g} on the {entry['edge']} edge of the grid; the "
                         f"next select run adds lr {point:g} for every method")
            grid = sorted(set(grid) | {point})
        else:
            notes.append(f"{label}: winner lr {entry['selected']['lr']:g} on the {entry['edge']} edge, and the grid is "
                         f"at its bound {LR_BOUNDS}: not interior")
    return grid, notes
