"""The demo's settings (``DemoConfig``) and its numbers (``DemoResult``), and reading a finished demo folder back."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checks import load_json_text
from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class DemoConfig:
    """Sized to finish in a few minutes on 2 CPU cores; the full sequence is ``benchmarks/continual.py``'s job."""

    methods: tuple[str, ...] = ("seq", "er", "ilora")
    max_train: int = 160  # training examples per task
    epochs: int = 3
    eval_limit: int = 60  # test examples per task for the accuracy matrices
    limit: int = 48  # examples per task for path evaluation and curve fitting
    points: int = 11  # t per path
    curve_steps: int = 100
    grid: int = 13  # plane: points per axis
    seed: int = 0
    tasks: int | None = None  # the first N tasks of the embedded sequence (None: all four)

    def __post_init__(self):
        for name in ("max_train", "epochs", "eval_limit", "limit", "curve_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.points < 2 or self.grid < 2:
            raise ConfigError("points and grid must be at least 2")
        if self.tasks is not None and self.tasks < 2:
            raise ConfigError(f"the demo needs at least two tasks, got {self.tasks}")
        from ..continual.methods.registry import METHODS

        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"methods: unknown method {unknown[0]!r}; choose from {sorted(METHODS)}")
        if "seq" not in self.methods:
            raise ConfigError("the demo sweeps the seq run: keep 'seq' among the methods")


@dataclass
class DemoResult:
    out: Path
    config: DemoConfig
    metrics: dict = field(default_factory=dict)  # method → ContinualMetrics
    sweeps: dict = field(default_factory=dict)  # method → SweepResult (seq with Bézier curves)
    pair: tuple[str, str] = ("", "")  # the seq pair with the largest linear joint gap
    paths: dict = field(default_factory=dict)  # "linear" / "bezier" → BarrierResult along that pair, with accuracy
    plane: object = None  # SurfaceResult through the pair and its control point
    seconds: float = 0.0

    def largest(self) -> dict:
        """The consecutive seq pair whose straight path has the largest joint gap, and the same pair's curve."""
        rows = {p: {(r["from"], r["to"]): r for r in self.sweeps["seq"].consecutive(p)} for p in ("linear", "bezier")}
        line, curve = rows["linear"][self.pair], rows["bezier"][self.pair]
        own = lambda row: max(row[t]["barrier"] for t in self.pair)  # noqa: E731
        return {"from": self.pair[0], "to": self.pair[1], "linear_joint_gap": line["joint_gap"],
                "bezier_joint_gap": curve["joint_gap"], "linear_task_barrier": own(line), "bezier_task_barrier": own(curve)}

    def summary_lines(self) -> list[str]:
        lines = [f"{m:<6} AP {r.ap:.3f}   BWT {r.bwt:+.3f}   (exact match, {r.split} split, {len(r.tasks)} tasks)"
                 for m, r in self.metrics.items()]
        big = self.largest()
        lines.append(f"largest linear barrier (seq, joint gap): {big['from']} → {big['to']} {big['linear_joint_gap']:.3f}")
        lines.append(f"its fitted Bézier curve: joint gap {big['bezier_joint_gap']:.3f} "
                     f"(largest per-task barrier of the pair: line {big['linear_task_barrier']:.3f}, curve {big['bezier_task_barrier']:.3f})")
        return lines

    def to_json(self) -> dict:
        return {"kind": "demo", "config": {**asdict(self.config), "methods": list(self.config.methods)},
                "methods": {m: {"AP": r.ap, "BWT": r.bwt, "FWT": r.fwt, "metrics": f"runs/{m}/metrics.json"}
                            for m, r in self.metrics.items()},
                "consecutive": {m: {p: s.consecutive(p) for p in s.paths()} for m, s in self.sweeps.items()},
                "largest": self.largest(), "seconds": self.seconds}


def load_demo(out: str | Path) -> DemoResult:
    """Read a finished demo folder back (every number comes from its JSON files), e.g. to redraw the report."""
    from ..plots.kinds import load_result

    out = Path(out)
    try:
        record = load_json_text((out / "demo.json").read_text())
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{out}: not a finished demo folder ({exc})") from None
    config = DemoConfig(**{**record["config"], "methods": tuple(record["config"]["methods"])})
    result = DemoResult(out, config, seconds=record["seconds"])
    for name in config.methods:
        result.metrics[name] = load_result(out / "runs" / name / "metrics.json")
        result.sweeps[name] = load_result(out / f"sweep-{name}" / "sweep.json")
    result.pair = (record["largest"]["from"], record["largest"]["to"])
    result.paths = {p: load_result(out / f"path-{p}" / "barrier.json") for p in ("linear", "bezier")}
    result.plane = load_result(out / "plane" / "plane.json")
    return result
