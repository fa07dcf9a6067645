"""One search budget for the continual benchmark, as bookkeeping without training: every method is chosen over the
same learning-rate grid of its optimizer, at most MAX_OWN values of one option of its own, and the same selection
seeds; each winner is checked for sitting inside its grid, and a grid whose winner sits on an edge is extended for the
next run.

AdamW and plain SGD get a grid each, of the same number of points: AdamW's step is normalised per coordinate, SGD's
is the gradient times the lr, so one lr means different steps under the two (GEM under SGD learned nothing on the
embedded stream at lr 1e-2 and below, where every AdamW method had its optimum; its reference trains at 0.1). Every
grid is the same length, so every method is tried at the same number of learning rates."""
from __future__ import annotations

import math

LR_GRID = [3e-4, 1e-3, 3e-3, 1e-2]  # 3e-3 won for 9 of 13 methods over [1e-3, 3e-3]: one more point each side
# SGD: from AdamW's top up; A-GEM's reference code trains at 0.03 (CIFAR) and 0.1 (MNIST), GEM's at 0.1
LR_GRIDS = {"adamw": LR_GRID, "sgd": [1e-2, 3e-2, 1e-1, 3e-1]}
LR_BOUNDS = (1e-5, 10.0)  # the grid is never extended past these (SGD on LoRA factors took lr 1 and asked for more)
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
    """``plans``: label → {"lr_grid", "optimizer" (adamw if absent), "own": {option: values}, "seeds"}. Refuse unless
    the methods of one optimizer share their lr grid, every grid has the same number of points, every method has the
    same seeds (at least two), and at most one own option of at most MAX_OWN values, never the lr itself."""
    if not plans:
        return
    first, reference = next(iter(plans.items()))
    seeds = sorted(reference["seeds"])
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise BudgetError(f"{first}: selection seeds {reference['seeds']}: at least two different seeds are needed")
    grids: dict[str, tuple[str, list]] = {}
    for label, plan in plans.items():
        optimizer = plan.get("optimizer", "adamw")
        holder, grid = grids.setdefault(optimizer, (label, sorted(plan["lr_grid"])))
        if sorted(plan["lr_grid"]) != grid:
            raise BudgetError(f"{label} is selected over lr {plan['lr_grid']}, {holder} over {grid}: every {optimizer} "
                              "method needs the same lr grid (rerun select for every method; finished runs are skipped)")
        if sorted(plan["seeds"]) != seeds:
            raise BudgetError(f"{label} is selected with seeds {plan['seeds']}, {first} with {reference['seeds']}: every "
                              "method needs the same selection seeds")
        own = plan.get("own") or {}
        if "lr" in own or len(own) > 1 or any(len(v) > MAX_OWN or len(set(map(repr, v))) != len(v) for v in own.values()):
            raise BudgetError(f"{label}: own options {own}: at most one option besides lr, with at most {MAX_OWN} "
                              "different values")
    sizes = {optimizer: len(grid) for optimizer, (_, grid) in grids.items()}
    if len(set(sizes.values())) > 1:
        raise BudgetError(f"lr grids of {sizes} points: every optimizer's grid needs the same number of points, so "
                          "that every method is tried at as many learning rates")


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


def _nearer_edge(grid: list[float], entries: list[dict]) -> bool:
    """True (extend upward) when the non-flat winners of a grid's methods sit nearer its top than its bottom."""
    spots = [grid.index(e["selected"]["lr"]) for e in entries if not e["flat"] and e["selected"]["lr"] in grid]
    if not spots:
        return True
    return len(grid) - 1 - max(spots) <= min(spots)


def next_grids(grids: dict[str, list[float]], selection: dict[str, dict]) -> tuple[dict[str, list[float]], list[str]]:
    """``next_grid`` for each optimizer's grid over its methods (``selection`` entries carry ``optimizer``); then every
    grid shorter than the longest grows, one point at a time, on the side its methods' winners sit nearer, so that
    every method keeps the same number of learning rates."""
    out, notes = {}, []
    for optimizer, grid in grids.items():
        mine = {label: e for label, e in selection.items() if e.get("optimizer", "adamw") == optimizer}
        out[optimizer], said = next_grid(grid, mine)
        notes += [f"{note} ({optimizer})" for note in said]
    longest = max(map(len, out.values()))
    for optimizer, grid in out.items():
        mine = [e for e in selection.values() if e.get("optimizer", "adamw") == optimizer]
        while len(grid) < longest:
            up = _nearer_edge(grid, mine)
            point = _beyond(grid[-1] if up else grid[0], up)
            if not LR_BOUNDS[0] <= point <= LR_BOUNDS[1]:
                up, point = not up, _beyond(grid[0] if up else grid[-1], not up)
            grid = sorted(set(grid) | {point})
            notes.append(f"{optimizer}: adds lr {point:g} to keep as many points as the other grids")
        out[optimizer] = grid
    return out, notes


def grids_of(stored) -> dict[str, list[float]]:
    """The grids a select run starts from: stored ones by optimizer (an older record's single list is AdamW's)."""
    if not stored:
        return {k: list(v) for k, v in LR_GRIDS.items()}
    if isinstance(stored, list):
        return {**{k: list(v) for k, v in LR_GRIDS.items()}, "adamw": sorted(stored)}
    return {**{k: list(v) for k, v in LR_GRIDS.items()}, **{k: sorted(v) for k, v in stored.items()}}
