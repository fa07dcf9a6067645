"""What every picture shares: the colour cycle, the self-contained HTML writer, and the settings caption."""
from __future__ import annotations

from pathlib import Path

from ..provenance import settings_line

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def new_figure(**kwargs):
    """A matplotlib Figure that needs no backend (no pyplot, no ``matplotlib.use``): a notebook's backend survives."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


CAPTION_POINTS = 6.5  # the caption's font size


def save_png(fig, out: str | Path, made_by: dict | None = None, dpi: int = 130) -> None:
    """Lay the figure out, leaving a strip at the bottom for the result's settings as a small caption (wrapped to the
    figure's width) and one at the top for the title (strips in inches: a fraction of a tall figure is a gap, of a
    short one an overlap); write PNG."""
    height = fig.get_figheight()
    per_line = int(fig.get_figwidth() * 72 / (0.6 * CAPTION_POINTS))  # 0.6 em: wider than DejaVu Sans's mean glyph
    lines = _wrapped(settings_line(made_by), per_line)
    bottom = (0.12 + 0.11 * len(lines)) / height if lines else 0.0
    engine = fig.get_layout_engine()
    if engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine":  # it makes room for a title itself
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    else:
        title, top = fig._suptitle, 1.0  # no public getter; tight_layout lays the top row over it (matplotlib 3.11)
        if title is not None:
            top = 1 - 0.32 / height
            title.set(y=1 - 0.08 / height, va="top")
        fig.tight_layout(rect=(0, bottom, 1, top))
    if lines:
        fig.text(0.005, 0.05 / height, "\n".join(lines), fontsize=CAPTION_POINTS, color="#666666", ha="left",
                 va="bottom", linespacing=1.2)
    fig.savefig(out, dpi=dpi, format="png")


def _wrapped(caption: str, width: int) -> list[str]:
    """The caption in lines of at most ``width`` characters, broken between settings (never inside ``max length 1024``)."""
    lines: list[str] = []
    for part in caption.split(" · ") if caption else []:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


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
