"""The kind table: for each result kind (the ``kind`` field of its JSON), how to read it back, check it, name its
files and draw it — so any result JSON can be redrawn, or shown in a notebook, without recomputing anything. A kind
not in the table is an error, never drawn as another."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Callable

from ..checks import JSONShapeError, load_json_text
from ..errors import DataError
from ..files import Content

OLD_NAMES = {"random": "landscape"}  # landscapes written before they were named "landscape"


@dataclass(frozen=True)
class Drawn:
    """One result kind: its reader (JSON → result; None: read otherwise), shape check, file stem, and its figure, PNG
    and HTML writers, each given the result and the drawing options (``surface3d``, ``measure``)."""

    read: Callable[[dict], object] | None
    check: Callable[[object], None]
    stem: str
    figure: Callable[[object, dict], object]
    png: Callable[[object, dict, Path], None]
    html: Callable[[object, dict, Path], None]
    rewrites_json: bool = True  # False: a training run's own file stays as the trainer wrote it; only pictures


def _runs(result) -> dict:
    """Training metrics as label → ContinualMetrics (a single run is labelled "run")."""
    return result if isinstance(result, dict) else {"run": result}


@cache
def table() -> dict[str, Drawn]:
    """Every result kind modeconn draws, by name (imported on first use: the plotting libraries are heavy)."""
    from ..analysis.barrier import BarrierResult
    from ..analysis.surface import SurfaceResult
    from ..analysis.sweep import SweepResult
    from ..continual.compare import Comparison
    from ..continual.metrics import ContinualMetrics
    from ..analysis.curvature import CurvatureResult
    from . import barrier, compare, continual, curvature, shapes, surface, sweep, train_log

    def on_surface(stem: str) -> Drawn:
        return Drawn(SurfaceResult.from_json, shapes.surface, stem=stem,
                     figure=lambda r, o: surface.surface_figure(r, o["surface3d"]),
                     png=lambda r, o, out: surface.surface_png(r, out),
                     html=lambda r, o, out: surface.surface_html(r, out, surface3d=o["surface3d"]))

    return {
        "barrier": Drawn(BarrierResult.from_json, shapes.barrier, stem="barrier",
                         figure=lambda r, o: barrier.barrier_figure(r),
                         png=lambda r, o, out: barrier.barrier_png(r, out),
                         html=lambda r, o, out: barrier.barrier_html(r, out)),
        "plane": on_surface("plane"),
        "landscape": on_surface("landscape"),
        "sweep": Drawn(SweepResult.from_json, shapes.sweep, stem="sweep",
                       figure=lambda r, o: sweep.sweep_figure(r, o["measure"]),
                       png=lambda r, o, out: sweep.sweep_png(r, out, measure=o["measure"]),
                       html=lambda r, o, out: sweep.sweep_html(r, out, measure=o["measure"])),
        "continual_metrics": Drawn(ContinualMetrics.from_json, shapes.metrics, stem="accuracy",
                                   figure=lambda r, o: continual.continual_figure(_runs(r)),
                                   png=lambda r, o, out: continual.continual_png(_runs(r), out),
                                   html=lambda r, o, out: continual.continual_html(_runs(r), out), rewrites_json=False),
        "comparison": Drawn(Comparison.from_json, lambda r: None, stem="compare",  # from_json checks it
                            figure=lambda r, o: compare.compare_figure(r),
                            png=lambda r, o, out: compare.compare_png(r, out),
                            html=lambda r, o, out: compare.compare_html(r, out)),
        "curvature": Drawn(CurvatureResult.from_json, shapes.curvature, stem="curvature",
                           figure=lambda r, o: curvature.curvature_figure(r),
                           png=lambda r, o, out: curvature.curvature_png(r, out),
                           html=lambda r, o, out: curvature.curvature_html(r, out)),
        "train_log": Drawn(None, shapes.train_log, stem="train_log",  # read from its .jsonl, not a JSON
                           figure=lambda r, o: train_log.train_log_figure(r),
                           png=lambda r, o, out: train_log.train_log_png(r, out),
                           html=lambda r, o, out: train_log.train_log_html(r, out), rewrites_json=False),
    }


def kind_of(result) -> str:
    """The table's name for ``result``; a dict of runs (method label → metrics) is training metrics."""
    if isinstance(result, dict) and result:
        kinds = {getattr(r, "kind", None) for r in result.values()}
        kind = kinds.pop() if len(kinds) == 1 else None
    else:
        kind = getattr(result, "kind", None)
    if kind not in table():
        raise DataError(f"no figure for a result of kind {kind!r} ({type(result).__name__}); modeconn draws "
                        f"{', '.join(sorted(table()))}")
    return kind


def load_result(path: str | Path):
    """A BarrierResult, SurfaceResult, SweepResult, Comparison or a training run's ContinualMetrics or TrainLog, by the
    JSON's ``kind`` (a run's ``train_log.jsonl`` by its suffix)."""
    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():  # a training run's step log
        from ..continual.train_log import TrainLog

        log = TrainLog.read(path)
        try:
            table()["train_log"].check(log)
        except ValueError as exc:
            raise DataError(f"{path}: malformed training log ({exc})") from None
        return log
    if path.is_dir():
        raise DataError(f"{path}: a folder; pass one result file (barrier.json, plane.json, sweep.json, metrics.json, …)")
    try:
        data = load_json_text(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such result file") from None
    except JSONShapeError as exc:
        raise DataError(f"{path}: not a result modeconn reads ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    readable = sorted([k for k, d in table().items() if d.read] + list(OLD_NAMES))
    drawn = table().get(OLD_NAMES.get(kind, kind)) if isinstance(kind, str) else None
    if drawn is None or drawn.read is None:
        raise DataError(f"{path}: not a modeconn result (kind {kind!r}; expected one of {readable})")
    try:
        result = drawn.read(data)
        drawn.check(result)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: malformed {kind} result ({type(exc).__name__}: {exc})") from None
    return result


def writers(result, surface3d: bool = False, measure: str = "barrier") -> dict[str, Content]:
    """File name → writer for the result's JSON, PNG and HTML (what each command writes, and ``modeconn plot``);
    training metrics (one run, or method label → run) and logs get only their pictures."""
    drawn, options = table()[kind_of(result)], {"surface3d": surface3d, "measure": measure}
    files = {f"{drawn.stem}.json": result.dumps() + "\n"} if drawn.rewrites_json else {}
    return {**files, f"{drawn.stem}.png": partial(drawn.png, result, options),
            f"{drawn.stem}.html": partial(drawn.html, result, options)}


def figure(result, surface3d: bool = False, measure: str = "barrier"):
    """The plotly figure of any result (what its HTML page shows); in a notebook it displays itself.

    Training metrics, one run or a dict of them (method label → metrics), give side-by-side accuracy matrices."""
    return table()[kind_of(result)].figure(result, {"surface3d": surface3d, "measure": measure})


def save_result(result, out: str | Path, **options) -> list[Path]:
    """Write a result's JSON, PNG and HTML into ``out`` together (as the commands do); returns the files."""
    from ..files import write_all

    return write_all(out, writers(result, **options))
