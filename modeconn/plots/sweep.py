"""Pictures of a sweep: heatmaps of the joint gap and of each task's barrier over adapter pairs, and the joint gap
of consecutive tasks along the training order (linear vs Bézier); and, where the paths were scored by accuracy, each
consecutive pair's accuracy along its paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.sweep import MEASURES, SweepResult, consecutive_scored
from .style import COLORS, caption_html, new_figure, save_png, write_html

MEASURE_NAMES = {"barrier": "barrier (vs interpolated endpoints)", "mean": "barrier vs mean endpoint",
                 "max": "barrier vs worse endpoint"}


def _array(matrix) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)


def _colour_range(values: np.ndarray) -> tuple[float, float]:
    """From 0 to the largest value: a negative joint gap (a point better than both minima) is as pale as 0, its
    number in the cell, so that colour means barrier height only; an all-zero matrix stays pale instead of mid-scale."""
    finite = values[np.isfinite(values)]
    return 0.0, max(float(finite.max()) if finite.size else 0.0, 1e-3)


def _heatmap(fig, ax, values: np.ndarray, labels: list[str], title: str, label: str) -> None:
    low, top = _colour_range(values)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="magma_r", vmin=low, vmax=top)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(title=title, xlabel="adapter (trained on)", ylabel="adapter (trained on)")
    middle = (low + top) / 2  # white text on the darker half of the colour scale
    for i in range(len(labels)):
        for j in range(len(labels)):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > middle else "black")
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)


def sweep_png(result: SweepResult, out: str | Path, measure: str = "barrier") -> None:
    paths = result.paths()
    evaluated = list(result.matrix(measure, "linear"))
    scored = consecutive_scored(result)  # with accuracy: one more row per path, each pair's accuracy along it
    cols = max(len(paths) + 1, len(evaluated), len(scored))
    rows = 1 + len(paths) + (len(paths) if scored else 0)
    fig = new_figure(figsize=(4.3 * cols, 4.0 * rows + 0.2))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, path in enumerate(paths):
        _heatmap(fig, axes[0, k], _array(result.joint(path)), result.tasks, title=f"{path}: joint gap of each pair", label="joint gap (loss)")
    ax = axes[0, len(paths)]
    names = [f"{r['from']}→{r['to']}" for r in result.consecutive("linear")]
    for k, path in enumerate(paths):
        rows = {f"{r['from']}→{r['to']}": r["joint_gap"] for r in result.consecutive(path)}
        ax.plot(range(len(names)), [rows.get(n, np.nan) for n in names], "o-", color=COLORS[k], label=path)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(title="consecutive tasks (training order)", ylabel="joint gap (loss)", xlabel="pair")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for k in range(len(paths) + 1, cols):
        axes[0, k].axis("off")
    for r, path in enumerate(paths, start=1):
        matrices = result.matrix(measure, path)
        for k in range(cols):
            if k < len(evaluated):
                name = evaluated[k]
                _heatmap(fig, axes[r, k], _array(matrices[name]), result.tasks, title=f"{path}: loss of {name}", label=MEASURE_NAMES[measure])
            else:
                axes[r, k].axis("off")
    for r, path in enumerate(paths if scored else [], start=1 + len(paths)):
        for k in range(cols):
            if k < len(scored):
                _accuracy_axes(axes[r, k], result, scored[k], path)
            else:
                axes[r, k].axis("off")
    fig.suptitle(f"sweep over {' → '.join(result.tasks)} ({result.space} space)", fontsize=11)
    save_png(fig, out, result.made_by, dpi=120)


def _accuracy_axes(ax, result: SweepResult, pair, path: str) -> None:
    """One pair's two tasks' accuracy along ``path``: the task metric solid, rank classification dashed."""
    found = pair.get(path)
    for k in (pair.a, pair.b) if found is not None else ():
        name, color = result.tasks[k], COLORS[k % len(COLORS)]
        tb = found.tasks.get(name)
        if tb is not None and tb.accuracy is not None:
            ax.plot(found.t, tb.accuracy, "o-", color=color, ms=3, label=name)
        if tb is not None and tb.rank_accuracy is not None:
            ax.plot(found.t, tb.rank_accuracy, "s--", color=color, ms=3, lw=1, label=f"{name} rank acc.")
    ax.set(title=f"{path}: {result.tasks[pair.a]} → {result.tasks[pair.b]}", xlabel="t", ylabel="accuracy",
           ylim=(-0.03, 1.03))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def flat_paths(result: SweepResult, measure: str = "barrier") -> list[str]:
    """The paths on which every task's ``measure`` is zero on every measured pair: a row of heatmaps saying nothing."""
    flat = []
    for path in result.paths():
        values = [v for matrix in result.matrix(measure, path).values() for row in matrix for v in row if v is not None]
        if values and all(v == 0 for v in values):
            flat.append(path)
    return flat


def sweep_figure(result: SweepResult, measure: str = "barrier", hide_flat: bool = False):
    """The plotly figure of a sweep: joint-gap heatmaps per path, then each task's barrier per path (``hide_flat``:
    without the rows of the ``flat_paths``, which a caption then names in a sentence)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    paths = result.paths()
    flat = flat_paths(result, measure) if hide_flat else []
    shown = [p for p in paths if p not in flat]
    evaluated = list(result.matrix(measure, "linear"))
    cols, rows = max(len(paths), len(evaluated) if shown else 1), 1 + len(shown)
    grid: dict[tuple[int, int], tuple] = {(1, k + 1): (f"{path}: joint gap", path, None) for k, path in enumerate(paths)}
    for r, path in enumerate(shown, start=2):
        for k, name in enumerate(evaluated):
            grid[(r, k + 1)] = (f"{path}: loss of {name}", path, name)
    titles = [grid[(r, c)][0] if (r, c) in grid else "" for r in range(1, rows + 1) for c in range(1, cols + 1)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.12)
    what = MEASURE_NAMES[measure]
    for (r, c), (_, path, name) in grid.items():
        z = _array(result.joint(path) if name is None else result.matrix(measure, path)[name])
        label = "joint gap" if name is None else what
        low, top = _colour_range(z)
        fig.add_trace(go.Heatmap(z=z, x=result.tasks, y=result.tasks, colorscale="Magma", reversescale=True, showscale=False,
                                 zmin=low, zmax=top,
                                 text=np.where(np.isfinite(z), np.round(z, 3).astype(str), ""), texttemplate="%{text}",
                                 hovertemplate=f"{label}<br>%{{y}} ↔ %{{x}}: %{{z:.5f}}<extra></extra>"), r, c)
        fig.update_yaxes(autorange="reversed", row=r, col=c)
    fig.update_layout(title=f"sweep over {' → '.join(result.tasks)} ({result.space} space); cells: {what} per task, joint gap per pair",
                      template="plotly_white", height=360 * rows + 40, width=max(800, 330 * cols), margin=dict(b=90))
    caption_html(fig, result.made_by)
    return fig


def accuracy_figure(result: SweepResult):
    """Each consecutive pair's two tasks' accuracy along each path (rows: paths, columns: pairs), the task metric
    solid and rank classification dashed as ``plots/barrier.py`` draws a path; None when no path carries accuracy."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs, paths = consecutive_scored(result), result.paths()
    if not pairs:
        return None
    titles = [f"{path}: {result.tasks[p.a]} → {result.tasks[p.b]}" for path in paths for p in pairs]
    fig = make_subplots(rows=len(paths), cols=len(pairs), subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=0.15)
    for r, path in enumerate(paths, start=1):
        for c, pair in enumerate(pairs, start=1):
            found = pair.get(path)
            for k in (pair.a, pair.b) if found is not None else ():
                name, color = result.tasks[k], COLORS[k % len(COLORS)]
                tb = found.tasks.get(name)
                first = r == 1 and c == 1 + min(j for j, p in enumerate(pairs) if k in (p.a, p.b))
                for values, dash, what in ((tb and tb.accuracy, "solid", "accuracy"),
                                           (tb and tb.rank_accuracy, "dash", "rank acc.")):
                    if values is not None:
                        fig.add_trace(go.Scatter(x=found.t, y=values, mode="lines+markers", name=f"{name} {what}",
                                                 legendgroup=f"{name} {what}", showlegend=first,
                                                 line=dict(color=color, dash=dash, width=2 if dash == "solid" else 1),
                                                 marker=dict(symbol="circle" if dash == "solid" else "square", size=5),
                                                 hovertemplate=f"{name}<br>t=%{{x:.3f}}<br>{what}=%{{y:.4f}}<extra></extra>"),
                                      r, c)
    fig.update_xaxes(title_text="t")
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_yaxes(title_text="accuracy", col=1)
    fig.update_layout(title=f"accuracy along the consecutive paths ({result.space} space): task metric solid, rank "
                      "classification dashed", template="plotly_white", height=320 * len(paths) + 80,
                      width=max(800, 300 * len(pairs)), margin=dict(b=60))
    return fig  # its settings go under it on the report page, as the sweep's (one long line does not fit a figure)


def sweep_html(result: SweepResult, out: str | Path, measure: str = "barrier") -> None:
    write_html(sweep_figure(result, measure), out)


__all__ = ["sweep_png", "sweep_html", "sweep_figure", "flat_paths", "accuracy_figure", "MEASURES"]
