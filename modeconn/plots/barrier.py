"""Pictures of a path (BarrierResult): loss and accuracy of each task against t, with each task's endpoint line; where a
task has rank-classification accuracy too, it is drawn beside its accuracy as a dashed line ("rank acc.")."""
from __future__ import annotations

from pathlib import Path

from ..analysis.barrier import BarrierResult
from .style import COLORS, caption_html, new_figure, save_png, write_html


def _title(result: BarrierResult) -> str:
    a, b = (Path(x).name or x for x in (result.adapters[0], result.adapters[-1]))
    return f"{result.path} path, {result.space} space: {a} → {b}"


def barrier_png(result: BarrierResult, out: str | Path) -> None:
    has_acc = any(tb.accuracy is not None or tb.rank_accuracy is not None for tb in result.tasks.values())
    fig = new_figure(figsize=(11 if has_acc else 6, 4.2))
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)
    t = result.t
    for i, (name, tb) in enumerate(result.tasks.items()):
        color = COLORS[i % len(COLORS)]
        ax = axes[0, 0]
        ax.plot(t, tb.loss, "o-", color=color, ms=3, label=f"{name} (barrier {tb.barrier:.3f} at t={tb.barrier_t:.2f})")
        ax.plot([0, 1], [tb.loss[0], tb.loss[-1]], "--", color=color, lw=0.8, alpha=0.6)
        if tb.accuracy is not None:
            axes[0, 1].plot(t, tb.accuracy, "o-", color=color, ms=3, label=name)
        if tb.rank_accuracy is not None:
            axes[0, 1].plot(t, tb.rank_accuracy, "s--", color=color, ms=3, lw=1, label=f"{name} rank acc.")
    axes[0, 0].set(xlabel="t (0 = first adapter, 1 = second)", ylabel="loss (mean NLL per answer token)", title="loss")
    axes[0, 0].legend(fontsize=8)
    if has_acc:
        axes[0, 1].set(xlabel="t", ylabel="accuracy (exact match or the task's metric)", title="accuracy", ylim=(-0.03, 1.03))
        axes[0, 1].legend(fontsize=8)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.suptitle(_title(result), fontsize=10)
    save_png(fig, out, result.made_by)


def barrier_figure(result: BarrierResult):
    """The plotly figure of a path: loss (and accuracy) per task against t, with each task's endpoint line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    has_acc = any(tb.accuracy is not None or tb.rank_accuracy is not None for tb in result.tasks.values())
    fig = make_subplots(rows=1, cols=2 if has_acc else 1, subplot_titles=("loss", "accuracy")[: 2 if has_acc else 1])
    for i, (name, tb) in enumerate(result.tasks.items()):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=result.t, y=tb.loss, mode="lines+markers", name=f"{name} loss", line=dict(color=color),
                                 hovertemplate=f"{name}<br>t=%{{x:.3f}}<br>loss=%{{y:.5f}}<extra></extra>"), 1, 1)
        fig.add_trace(go.Scatter(x=[0, 1], y=[tb.loss[0], tb.loss[-1]], mode="lines", line=dict(color=color, dash="dash", width=1),
                                 name=f"{name} endpoint line", hoverinfo="skip", showlegend=False), 1, 1)
        if tb.accuracy is not None:
            fig.add_trace(go.Scatter(x=result.t, y=tb.accuracy, mode="lines+markers", name=f"{name} accuracy",
                                     line=dict(color=color, dash="dot"),
                                     hovertemplate=f"{name}<br>t=%{{x:.3f}}<br>accuracy=%{{y:.4f}}<extra></extra>"), 1, 2)
        if tb.rank_accuracy is not None:
            fig.add_trace(go.Scatter(x=result.t, y=tb.rank_accuracy, mode="lines+markers", name=f"{name} rank acc.",
                                     line=dict(color=color, dash="dash", width=1), marker=dict(symbol="square"),
                                     hovertemplate=f"{name}<br>t=%{{x:.3f}}<br>rank accuracy=%{{y:.4f}}<extra></extra>"), 1, 2)
    fig.update_xaxes(title_text="t")
    fig.update_yaxes(title_text="loss (mean NLL per answer token)", row=1, col=1)
    if has_acc:
        fig.update_yaxes(title_text="accuracy (task metric)", range=[-0.03, 1.03], row=1, col=2)
    fig.update_layout(title=_title(result), template="plotly_white", height=480, margin=dict(b=110))
    caption_html(fig, result.made_by)
    return fig


def barrier_html(result: BarrierResult, out: str | Path) -> None:
    write_html(barrier_figure(result), out)
