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
    """Lay the figure out, leaving a strip at the bottom for the result's settings as a small caption and one at the
    top for the title (strips in inches: a fraction of a tall figure is a gap, of a short one an overlap); write PNG."""
    caption = settings_line(made_by)
    height = fig.get_figheight()
    bottom = 0.3 / height if caption else 0.0
    engine = fig.get_layout_engine()
    if engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine":  # it makes room for a title itself
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    else:
        title = fig._suptitle  # no public getter; tight_layout lays the top row over it (seen in matplotlib 3.11)
        top = 1.0 if title is None else 1 - 0.32 / height
        if title is not None:
            title.set(y=1 - 0.08 / height, va="top")
        fig.tight_layout(rect=(0, bottom, 1, top))
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
