"""Loss over a grid of LoRA points: planes through three points and random-direction landscapes, as one result.

``loss[iy][ix]`` is the loss at ``(x[ix], y[iy])``; a 1D landscape has ``y == [0.0]``. Labelled points (the three
plane points, or the centre of a landscape) carry their own exact numbers in ``at_points``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..files import nan_for_null
from ..results import JsonResult


@dataclass
class SurfaceTask:
    loss: list[list[float]]
    accuracy: list[list[float]] | None
    at_points: list[float]  # loss at each labelled point
    examples: int
    metric: str = "exact_match"
    curve_loss: list[float] | None = None  # loss along the Bézier curve drawn on a plane, if any
    cut_prompts: int = 0  # prompts cut from the left to fit max_length
    rank_accuracy: list[list[float]] | None = None  # rank classification over the task's choices, grid as accuracy


@dataclass
class SurfaceResult(JsonResult):
    kind: str  # "plane" (three points, orthonormal axes) or "landscape" (filter-normalised directions around a point)
    space: str
    x: list[float]
    y: list[float]
    points: list[list[float]]  # coordinates of the labelled points
    labels: list[str]
    tasks: dict[str, SurfaceTask]
    adapters: list[str]
    base_model: str
    split: str = "eval"
    seed: int = 0
    curve: dict | None = None  # {"t": [...], "xy": [[x, y], ...]}: a Bézier curve lying in the plane
    extra: dict = field(default_factory=dict)
    made_by: dict = field(default_factory=dict)  # settings, versions, command (provenance.made_by)

    @property
    def one_dimensional(self) -> bool:
        return len(self.y) == 1

    @classmethod
    def from_fields(cls, data: dict) -> "SurfaceResult":
        if data.get("kind") == "random":  # landscapes written before the kind was named for its command
            data["kind"] = "landscape"
        tasks = {}
        for name, v in data["tasks"].items():
            v = dict(v)
            for key in ("loss", "accuracy", "at_points", "curve_loss", "rank_accuracy"):
                v[key] = nan_for_null(v.get(key))
            tasks[name] = SurfaceTask(**v)
        data["tasks"] = tasks
        return cls(**data)

    def mean_loss(self) -> list[list[float]]:
        """The grid of the tasks' mean loss: the joint objective a Bézier curve between two tasks is fitted to."""
        losses = [st.loss for st in self.tasks.values()]
        return [[sum(v) / len(v) for v in zip(*rows)] for rows in zip(*losses)]

    def short_labels(self) -> list[str]:
        """The labelled points by folder name; by ``parent/name`` when two names clash (``fast/gloss``, ``slow/gloss``)."""
        names = [Path(lab).name or lab for lab in self.labels]
        if len(set(names)) == len(names):
            return names
        return ["/".join(Path(lab).parts[-2:]) or lab for lab in self.labels]

    def table(self) -> str:
        """Per task: the loss at each labelled point and the lowest and highest loss on the grid."""
        what = "plane" if self.kind == "plane" else f"{'1D' if self.one_dimensional else '2D'} random-direction landscape"
        lines = [f"{what} in {self.space} space, {len(self.x)}×{len(self.y)} grid, {', '.join(self.labels)}"]
        short = self.short_labels()
        lines.append(f"{'task':<16}" + "".join(f"{lab[:12]:>13}" for lab in short) + f"{'grid min':>10}{'grid max':>10}")
        for name, st in self.tasks.items():
            flat = [v for row in st.loss for v in row if math.isfinite(v)]  # a non-finite loss is neither
            low, high = (min(flat), max(flat)) if flat else (math.nan, math.nan)
            lines.append(f"{name[:16]:<16}" + "".join(f"{v:13.4f}" for v in st.at_points) + f"{low:10.4f}{high:10.4f}")
        return "\n".join(lines)
