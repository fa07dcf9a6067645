"""Pictures of continual runs: the accuracy matrix R[i][j] of each method as a heatmap, and AP / BWT side by side
(with rank AP, rank-classification AP, in the titles of the runs that record it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..continual.metrics import ContinualMetrics, signed
from .style import COLORS, new_figure, save_png, write_html


def _matrix(m: ContinualMetrics) -> np.ndarray:
    return np.array(m.accuracy, dtype=float)


def _title(label: str, m: ContinualMetrics, newline: str = "\n") -> str:
    """The run's name, then its scores on a line of their own (a run folder's name is often as wide as the panel)."""
    rank = f" (rank {m.rank_ap:.3f})" if m.rank_ap is not None else ""
    return f"{label}{newline}AP {m.ap:.3f}{rank}, BWT {signed(m.bwt)}"


def continual_png(runs: dict[str, ContinualMetrics], out: str | Path) -> None:
    """One accuracy heatmap per method (rows: after training task i; columns: task j), then AP and BWT bars."""
    n = len(runs)
    fig = new_figure(figsize=(4.1 * (n + 1), 4.1), layout="constrained")
    axes = fig.subplots(1, n + 1, squeeze=False)
    for ax, (label, m) in zip(axes[0], runs.items()):
        values = _matrix(m)
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(m.tasks)), m.tasks, rotation=30, ha="right")
        ax.set_yticks(range(len(values)), m.tasks[: len(values)])
        ax.set(title=_title(label, m), xlabel="evaluated on", ylabel="after training")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if values[i, j] > 0.6 else "white")
    fig.colorbar(image, ax=list(axes[0, :n]), label=f"accuracy ({next(iter(runs.values())).split} split)", shrink=0.8)
    ax = axes[0, n]
    x = np.arange(n)
    ax.bar(x - 0.2, [m.ap for m in runs.values()], 0.4, color=COLORS[0], label="AP")
    ax.bar(x + 0.2, [m.bwt or 0.0 for m in runs.values()], 0.4, color=COLORS[1], label="BWT")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, list(runs))
    ax.set(title="AP and BWT", ylim=(min(-1.0, ax.get_ylim()[0]), 1.0))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    save_png(fig, out, dpi=120)


def continual_figure(runs: dict[str, ContinualMetrics]):
    """The plotly version: the heatmaps in a row, then the AP / BWT bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(runs)
    titles = [_title(label, m, "<br>") for label, m in runs.items()] + ["AP and BWT"]
    fig = make_subplots(rows=1, cols=n + 1, subplot_titles=titles, horizontal_spacing=0.07)
    for k, (label, m) in enumerate(runs.items(), start=1):
        z = _matrix(m)
        right = fig.layout[f"xaxis{'' if k == 1 else k}"].domain[1]
        fig.add_trace(go.Heatmap(z=z, x=m.tasks, y=m.tasks[: len(z)], zmin=0, zmax=1, colorscale="Viridis", showscale=k == n,
                                 colorbar=dict(title="accuracy", x=right + 0.005, len=0.9, thickness=12),
                                 text=np.round(z, 2).astype(str), texttemplate="%{text}",
                                 hovertemplate=f"{label}<br>after %{{y}}, on %{{x}}: %{{z:.3f}}<extra></extra>"), 1, k)
        fig.update_yaxes(autorange="reversed", title_text="after training" if k == 1 else None, row=1, col=k)
        fig.update_xaxes(title_text="evaluated on", row=1, col=k)
    labels = list(runs)
    fig.add_trace(go.Bar(x=labels, y=[m.ap for m in runs.values()], name="AP", marker_color=COLORS[0]), 1, n + 1)
    fig.add_trace(go.Bar(x=labels, y=[m.bwt or 0.0 for m in runs.values()], name="BWT", marker_color=COLORS[1]), 1, n + 1)
    fig.update_layout(title="accuracy matrix R[i][j] per method (row: after training task i; column: task j)",
                      template="plotly_white", height=430, width=max(800, 330 * (n + 1)), barmode="group",
                      legend=dict(orientation="h", x=1.0, xanchor="right", y=1.14, yanchor="bottom"),
                      margin=dict(t=110))
    return fig


def continual_html(runs: dict[str, ContinualMetrics], out: str | Path) -> None:
    write_html(continual_figure(runs), out)
