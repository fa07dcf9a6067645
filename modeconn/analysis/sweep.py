"""Barriers between every pair of task minima in a sequence (linear, and fitted curves of any kind), as matrices.

``matrix(measure, path)[task][i][j]`` is task's barrier on the path from adapter i to adapter j (null where not
measured); ``joint(path)[i][j]`` is the pair's joint gap over tasks i and j. The consecutive pairs (i, i+1) follow
the training order: the quantity the I-LoRA paper's analysis looks at.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..results import JsonResult

from .barrier import BarrierResult, joint_gap

MEASURES = {"barrier": "barrier", "mean": "barrier_mean_endpoint", "max": "barrier_max_endpoint"}


@dataclass
class PairResult:
    a: int
    b: int
    paths: dict[str, BarrierResult]  # path kind → the pair's barrier along it ("linear" always)

    @property
    def linear(self) -> BarrierResult:
        return self.paths["linear"]

    @property
    def bezier(self) -> BarrierResult | None:
        return self.paths.get("bezier")

    def get(self, path: str) -> BarrierResult | None:
        return self.paths.get(path)

    @classmethod
    def from_json(cls, data: dict) -> "PairResult":
        """A pair as written now (``paths`` by kind), or before (``linear`` and ``bezier`` fields)."""
        found = data["paths"] if "paths" in data else {k: data.get(k) for k in ("linear", "bezier")}
        return cls(data["a"], data["b"], {k: BarrierResult.from_json(v) for k, v in found.items() if v})


@dataclass
class SweepResult(JsonResult):
    kind: ClassVar[str] = "sweep"
    json_derived: ClassVar[tuple[str, ...]] = ("matrices",)

    sequence: str
    tasks: list[str]  # the training order; adapter i was trained on tasks[i]
    adapters: list[str]
    space: str
    base_model: str
    pairs: list[PairResult]
    split: str = "eval"
    seed: int = 0
    extra: dict = field(default_factory=dict)
    made_by: dict = field(default_factory=dict)  # settings, versions, command (provenance.made_by)

    def paths(self) -> list[str]:
        """The path kinds measured, the straight line first."""
        found = {k for p in self.pairs for k in p.paths} - {"linear"}
        return ["linear"] + sorted(found, key=lambda k: (k != "bezier", k))

    def matrix(self, measure: str = "barrier", path: str = "linear") -> dict[str, list[list[float | None]]]:
        """Per evaluated task, the symmetric matrix of ``measure`` over adapter pairs; zeros on the diagonal."""
        n, key = len(self.tasks), MEASURES[measure]
        names = list(self.pairs[0].linear.tasks) if self.pairs else []
        out = {name: [[0.0 if i == j else None for j in range(n)] for i in range(n)] for name in names}
        for pair in self.pairs:
            result = pair.get(path)
            if result is None:
                continue
            for name in names:
                out[name][pair.a][pair.b] = out[name][pair.b][pair.a] = getattr(result.tasks[name], key)
        return out

    def joint(self, path: str = "linear") -> list[list[float | None]]:
        """The joint gap of each pair over its own two tasks (0 on the diagonal)."""
        n = len(self.tasks)
        out = [[0.0 if i == j else None for j in range(n)] for i in range(n)]
        for pair in self.pairs:
            result = pair.get(path)
            if result is None:
                continue
            own = [result.tasks[self.tasks[k]].loss for k in (pair.a, pair.b) if self.tasks[k] in result.tasks]
            out[pair.a][pair.b] = out[pair.b][pair.a] = joint_gap(result.t, own).value
        return out

    def consecutive(self, path: str = "linear") -> list[dict]:
        """Along the training order: each consecutive pair's joint gap and each of its two tasks' barriers."""
        rows, joint = [], self.joint(path)
        matrices = {m: self.matrix(m, path) for m in MEASURES}
        for i in range(len(self.tasks) - 1):
            if joint[i][i + 1] is None:
                continue
            row = {"from": self.tasks[i], "to": self.tasks[i + 1], "joint_gap": joint[i][i + 1]}
            for k in (i, i + 1):
                name = self.tasks[k]
                if name in matrices["barrier"]:
                    row[name] = {m: matrices[m][name][i][i + 1] for m in MEASURES}
            rows.append(row)
        return rows

    def json_summary(self) -> dict:
        """Each pair's paths in their own JSON, and each path kind's matrices."""
        pairs = [{"a": p.a, "b": p.b, "paths": {k: r.to_json() for k, r in p.paths.items()}} for p in self.pairs]
        matrices = {path: {"joint_gap": self.joint(path), "consecutive": self.consecutive(path),
                           **{m: self.matrix(m, path) for m in MEASURES}} for path in self.paths()}
        return {"pairs": pairs, "matrices": matrices}

    @classmethod
    def from_fields(cls, data: dict) -> "SweepResult":
        data["pairs"] = [PairResult.from_json(p) for p in data["pairs"]]
        return cls(**data)

    def table(self) -> str:
        lines = [f"sweep over {' → '.join(self.tasks)} ({self.space} space)", ""]
        for path in self.paths():
            lines.append(f"{path}: joint gap of each pair (rows and columns in training order)")
            joint = self.joint(path)
            lines.append(f"{'':<12}" + "".join(f"{t[:10]:>11}" for t in self.tasks))
            for name, row in zip(self.tasks, joint):
                lines.append(f"{name[:12]:<12}" + "".join(f"{v:11.4f}" if v is not None else f"{'-':>11}" for v in row))
            lines.append("")
        lines.append(f"{'consecutive pair':<24}" + "".join(f"{p + ' joint gap':>20}" for p in self.paths()))
        per_path = {p: {(r["from"], r["to"]): r for r in self.consecutive(p)} for p in self.paths()}
        for i in range(len(self.tasks) - 1):
            key = (self.tasks[i], self.tasks[i + 1])
            cells = [f"{per_path[p][key]['joint_gap']:20.4f}" if key in per_path[p] else f"{'-':>20}" for p in self.paths()]
            lines.append(f"{key[0][:11] + ' → ' + key[1][:10]:<24}" + "".join(cells))
        return "\n".join(lines)


def consecutive_scored(result: SweepResult) -> list:
    """The consecutive pairs (i, i+1) that carry accuracy on some path, in training order."""
    pairs = sorted((p for p in result.pairs if p.b == p.a + 1), key=lambda p: p.a)
    return [p for p in pairs if any(r is not None and any(tb.accuracy is not None or tb.rank_accuracy is not None
                                                          for tb in r.tasks.values()) for r in p.paths.values())]


KEEPS = 0.05  # "a point on the path keeps both tasks": each within 5 accuracy points of its own minimum's


def best_points(result: SweepResult) -> list[dict]:
    """Per consecutive pair, path and accuracy definition scored (the task metric, rank accuracy, or both), the point
    where the worse of its two tasks' accuracies is highest (ties: the one nearest the middle), with both tasks'
    accuracies there and at their own endpoints, and whether both stay within ``KEEPS`` of them: what a point on the
    path keeps."""
    out = []
    for pair in consecutive_scored(result):
        for path in result.paths():
            found = pair.get(path)
            if found is None:
                continue
            names = (result.tasks[pair.a], result.tasks[pair.b])
            tasks = [found.tasks.get(n) for n in names]
            if any(t is None for t in tasks):
                continue
            for by, key in (("accuracy", "accuracy"), ("rank accuracy", "rank_accuracy")):
                series = [getattr(t, key) for t in tasks]
                if any(s is None for s in series):
                    continue
                best = max(range(len(found.t)), key=lambda i: (min(series[0][i], series[1][i]), -abs(found.t[i] - 0.5)))
                own = (series[0][0], series[1][-1])
                at = (series[0][best], series[1][best])
                out.append({"a": names[0], "b": names[1], "path": path, "by": by, "t": found.t[best], "at": at,
                            "endpoints": own, "keeps_both": all(x >= e - KEEPS for x, e in zip(at, own))})
    return out
