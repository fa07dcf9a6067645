"""Pictures of a training run's log: the loss (and a method's loss parts), the learning rate and the gradient norm
against the optimizer step, with each task's start marked."""
from __future__ import annotations

from pathlib import Path

from ..continual.train_log import TrainLog
from .style import COLORS, new_figure, save_png, write_html

PANELS = [("loss", ("loss", "ce_current", "ce_replay", "consistency")), ("learning rate", ("lr",)),
          ("gradient norm (before clipping)", ("grad_norm",))]


def _present(log: TrainLog) -> list[tuple[str, list[str]]]:
    return [(title, [n for n in names if log.series(n)[0]]) for title, names in PANELS if any(log.series(n)[0] for n in names)]


def train_log_png(log: TrainLog, out: str | Path) -> None:
    panels = _present(log)
    fig = new_figure(figsize=(11, 2.8 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, names) in zip(axes, panels):
        for k, name in enumerate(names):
            ax.plot(*log.series(name), lw=1, color=COLORS[k % len(COLORS)], label=name)
        for step, task in log.boundaries():
            ax.axvline(step, color="black", lw=0.6, ls=":")
            if ax is axes[0]:
                ax.annotate(task, (step, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=8)
        ax.set(title=title)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    axes[-1].set(xlabel="optimizer step")
    fig.suptitle(f"training log: {' → '.join(log.tasks)}", fontsize=10)
    save_png(fig, out)


def train_log_figure(log: TrainLog):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = _present(log)
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=[t for t, _ in panels],
                        vertical_spacing=0.08)
    for row, (_, names) in enumerate(panels, start=1):
        for k, name in enumerate(names):
            steps, values = log.series(name)
            fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=name, line=dict(color=COLORS[k % len(COLORS)], width=1),
                                     hovertemplate=f"{name}<br>step %{{x}}: %{{y:.5g}}<extra></extra>"), row, 1)
    for step, task in log.boundaries():
        fig.add_vline(x=step, line=dict(color="black", width=1, dash="dot"), annotation_text=task,
                      annotation_position="top right")
    fig.update_xaxes(title_text="optimizer step", row=len(panels), col=1)
    fig.update_layout(title=f"training log: {' → '.join(log.tasks)}", template="plotly_white", height=300 * len(panels))
    return fig


def train_log_html(log: TrainLog, out: str | Path) -> None:
    write_html(train_log_figure(log), out)
