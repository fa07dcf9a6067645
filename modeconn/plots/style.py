"""What every picture shares: the colour cycle, the self-contained HTML writer, and the settings caption."""
from __future__ import annotations

from pathlib import Path

from ..provenance import settings_line

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def new_figure(**kwargs):
    """A matplotlib Figure that needs no backend (no pyplot, no ``matplotlib.use``): a notebook's backend survives."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_png(fig, out: str | Path, made_by: dict | None = None, dpi: int = 130) -> None:
    """Lay the figure out, leaving a strip at the bottom for the result's settings as a small caption; write PNG."""
    caption = settings_line(made_by)
    bottom = 0.045 if caption else 0.0
    engine = fig.get_layout_engine()
    if engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine":
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    else:
        fig.tight_layout(rect=(0, bottom, 1, 1))
    if caption:
        fig.text(0.005, 0.005, caption, fontsize=6.5, color="#666666", ha="left", va="bottom")
    fig.savefig(out, dpi=dpi, format="png")


CAPTION = "caption"  # the name of a figure's settings annotation (a page that prints the settings drops it)


def caption_html(fig, made_by: dict | None) -> None:
    """The same caption under a plotly figure."""
    caption = settings_line(made_by)
    if caption:
        fig.add_annotation(text=caption, xref="paper", yref="paper", x=0, y=-0.16, xanchor="left", yanchor="top",
                           showarrow=False, font=dict(size=10, color="#666666"), name=CAPTION)


def write_html(fig, out: str | Path) -> None:
    """A self-contained page: plotly.js inline, so it opens offline."""
    fig.write_html(out, include_plotlyjs=True, full_html=True)
