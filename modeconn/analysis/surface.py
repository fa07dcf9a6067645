"""Loss over a grid of LoRA points: planes through three points and random-direction landscapes, as one result.

``loss[iy][ix]`` is the loss at ``(x[ix], y[iy])``; a 1D landscape has ``y == [0.0]``. Labelled points (the three
plane points, or the centre of a landscape) carry their own exact numbers in ``at_points``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class SurfaceTask:
    loss: list[list[float]]
    accuracy: list[list[float]] | None
    at_points: list[float]  # loss at each labelled point
    examples: int
    metric: str = "exact_match"
    curve_loss: list[float] | None = None  # loss along the Bézier curve drawn on a plane, if any


@dataclass
class SurfaceResult:
    kind: str  # "plane" (three points, orthonormal axes) or "random" (filter-normalised directions around a point)
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

    def to_json(self) -> dict:
        return {**asdict(self), "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict) -> "SurfaceResult":
        data = dict(data)
        data["tasks"] = {n: SurfaceTask(**v) for n, v in data["tasks"].items()}
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False)

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
            flat = [v for row in st.loss for v in row]
            lines.append(f"{name[:16]:<16}" + "".join(f"{v:13.4f}" for v in st.at_points) + f"{min(flat):10.4f}{max(flat):10.4f}")
        return "\n".join(lines)
