"""The main job on the embedded default (``make demo``, ``modeconn demo``): train seq, er and ilora over the task
sequence, sweep the barriers between consecutive seq minima (linear and fitted Bézier), compare the methods, and
write a report folder — report.html, the PNGs and every JSON result.

Data flows one way: training runs → adapters → sweeps, paths and a plane → results → pictures → report.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

from .config import DemoConfig, DemoResult


# everything the demo writes at the top of its folder; a folder holding anything else is not a demo folder
DEMO_FILES = ["runs", "curves", "sweep-*", "path-*", "plane", "methods", "report.html", "demo.json",
              "report"]  # make demo's `modeconn report` folder


def run_demo(out: str | Path = "demo_out", config: DemoConfig = DemoConfig(), progress: bool = True) -> DemoResult:
    """Run the whole study and write ``out`` (an earlier demo there is replaced); returns the numbers the report and
    the summary show."""
    from ..evaluator.models import checkpoints_dir
    from ..outdir import claim

    # the claim refuses anything in ``out`` that modeconn's record does not vouch for (a file the user added to runs/
    # included), so what is removed here is only an earlier demo's own runs and curves
    with claim(out, owned=DEMO_FILES, inputs=[checkpoints_dir()]) as claimed:
        for old in ("runs", "curves"):
            shutil.rmtree(claimed.path(old), ignore_errors=True)
        return _run(Path(out), config, progress)


def _run(out: Path, config: DemoConfig, progress: bool) -> DemoResult:
    from ..analysis.bezier import CurveConfig
    from ..analysis.measure import measure_barrier, measure_plane, sweep_sequence
    from ..analysis.settings import StudySettings
    from ..continual import TrainConfig, TrainRequest, get_method, train_sequence
    from ..continual.config import EMBEDDED_TRAINING
    from ..continual.protocols import get_protocol
    from ..evaluator.models import checkpoints_dir
    from ..files import write_json
    from ..lora.sequence import load_sequence
    from ..plots.kinds import save_result
    from .report import write_demo_report

    started = time.perf_counter()
    result = DemoResult(out, config)
    embedded = load_sequence(checkpoints_dir() / "seq")
    tasks = [(t.name, embedded.data_dir(t)) for t in embedded.tasks[: config.tasks]]
    train_config = TrainConfig(**EMBEDDED_TRAINING, epochs=config.epochs, max_train=config.max_train, seed=config.seed)
    metrics = {t.name: t.metric for t in embedded.tasks}
    protocol = get_protocol("embedded").record({**EMBEDDED_TRAINING, "base": embedded.base_model, "epochs": config.epochs,
                                                "max_train": config.max_train, "eval_limit": config.eval_limit},
                                               tasks, metrics)
    for name in config.methods:
        run = train_sequence(TrainRequest(embedded.base_model, tasks, get_method(name, seed=config.seed), train_config,
                                          eval_limit=config.eval_limit, metrics=metrics, protocol=protocol),
                             out / "runs" / name, name=f"demo-{name}", progress=progress)
        result.metrics[name] = run.metrics
    losses = StudySettings(limit=config.limit, seed=config.seed, accuracy=False, progress=False)
    curves = CurveConfig(steps=config.curve_steps, seed=config.seed)
    for name in config.methods:  # seq with fitted curves; the others' straight paths, to compare the methods
        seq = name == "seq"
        sweep = sweep_sequence(str(out / "runs" / name), replace(losses, progress=progress), points=config.points,
                               pairs="consecutive", curve=curves if seq else None,
                               curves_out=str(out / "curves") if seq else None)
        save_result(sweep, out / f"sweep-{name}")
        result.sweeps[name] = sweep
    rows = result.sweeps["seq"].consecutive("linear")
    top = max(rows, key=lambda r: r["joint_gap"])
    result.pair = (top["from"], top["to"])
    a, b = (str(out / "runs" / "seq" / t) for t in result.pair)
    control = str(out / "curves" / f"{result.pair[0]}-{result.pair[1]}")
    decode = replace(losses, accuracy=True)
    for path in ("linear", "bezier"):
        barrier = measure_barrier([a, b], decode, points=config.points, path=path,
                                  control=control if path == "bezier" else None)
        save_result(barrier, out / f"path-{path}")
        result.paths[path] = barrier
    result.plane = measure_plane([a, b, control], losses, grid=config.grid)
    save_result(result.plane, out / "plane")
    result.seconds = time.perf_counter() - started
    save_result(result.metrics, out / "methods")
    write_demo_report(result)
    write_json(out / "demo.json", result.to_json())
    return result
