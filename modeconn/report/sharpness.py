"""The report's curvature section: each task minimum's sharpness beside its forgetting, the relation Mirzadeh et al.
(2020, "Understanding the Role of Training Regimes in Continual Learning") report: flatter minima forget less."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..plots.page import Section, table_html

SHARPNESS_PNG = "sharpness.png"


def read_curvature(files, runs: list) -> dict:
    """Run label → the CurvatureResult of that run among ``files`` (each a ``modeconn curvature RUN`` result), every
    file checked before any work."""
    from ..analysis.curvature import CurvatureResult
    from ..plots.kinds import load_result

    by_folder = {Path(folder).resolve(): label for label, folder in runs}
    found = {}
    for file in files:
        result = load_result(file)
        if not isinstance(result, CurvatureResult) or result.run is None:
            raise DataError(f"{file}: not the curvature of a run's task minima; make one with: modeconn curvature RUN "
                            "--out DIR")
        label = by_folder.get(Path(result.run).resolve())
        if label is None:
            raise DataError(f"{file}: measured the run {result.run}, which is not among the report's runs; add it, or "
                            "leave this --curvature out")
        found[label] = result
    return found


def sharpness_rows(entries: list, curvature: dict) -> list[dict]:
    """Per run and task: the top Hessian and GGN eigenvalues, the trace ± SE, and the forgetting a_{T,i} − a_{i,i}
    from the run's accuracy matrix (None for the last task, and where the run has no matrix)."""
    rows = []
    for entry in entries:
        result = curvature.get(entry.label)
        if result is None:
            continue
        matrix = entry.metrics.accuracy if entry.metrics is not None else None
        order = entry.metrics.tasks if entry.metrics is not None else []
        for task, point in result.by_task().items():
            i = order.index(task) if task in order else None
            last = matrix is not None and i is not None and i == len(matrix) - 1
            forgetting = (matrix[-1][i] - matrix[i][i]) if matrix and i is not None and i < len(matrix) and not last else None
            rows.append({"run": entry.label, "task": task, "hessian": point.hessian[0],
                         "ggn": point.ggn[0] if point.ggn else None, "trace": point.trace, "trace_se": point.trace_se,
                         "forgetting": forgetting})
    return rows


def sharpness_section(results) -> Section | None:
    """The table of each measured run's task minima and, where two or more have a forgetting, their scatter."""
    from ..plots.curvature import sharpness_figure, sharpness_png

    rows = sharpness_rows(results.runs, getattr(results, "curvature", {}))
    if not rows:
        return None
    num = lambda v, spec="{:.4g}": "—" if v is None else spec.format(v)  # noqa: E731
    table = table_html(["run", "task", "λ_max Hessian", "λ_max GGN", "trace of the Hessian ± SE", "forgetting a(T,i) − a(i,i)"],
                       [[r["run"], r["task"], num(r["hessian"]), num(r["ggn"]),
                         "—" if r["trace"] is None else f"{r['trace']:.4g} ± {r['trace_se']:.2g}",
                         num(r["forgetting"], "{:+.3f}")] for r in rows])
    scattered = [r for r in rows if r["forgetting"] is not None and r["hessian"] > 0]
    figure = None
    if len(scattered) >= 2:
        sharpness_png(scattered, results.out / SHARPNESS_PNG)
        figure = sharpness_figure(scattered)
    made = next(iter(results.curvature.values())).made_by.get("settings", {})
    text = ("Curvature of each task's loss at the task's minimum (the adapter after training it, scored on its own "
            f"{made.get('split', 'eval')} split), with respect to the LoRA factors A and B: the largest eigenvalue of the "
            "Hessian and of the Gauss-Newton matrix, and a Hutchinson estimate of the Hessian's trace with its standard "
            "error; beside it, the task's forgetting, its accuracy after the last task minus right after its own "
            "(negative: forgotten; the last task has none). Mirzadeh et al. (2020) relate sharper minima to more "
            "forgetting; the scatter shows whether these runs do.")
    return Section("Sharpness of each task minimum against its forgetting", text, figure,
                   files=[SHARPNESS_PNG] if figure is not None else [], table=table)
