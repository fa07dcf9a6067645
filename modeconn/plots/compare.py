"""The picture of a method comparison: a forest plot of each method's paired difference from the baseline (AP and
BWT), the point at the mean over seeds, the thick bar its 95% interval of the mean and the thin one its 95% prediction
interval for one new seed; a thick bar that crosses 0 cannot tell them apart. A method that learned no task is drawn
grey at the bottom, unranked, without its BWT."""
from __future__ import annotations

from pathlib import Path

from ..continual.compare import Comparison
from ..continual.compare_check import NOT_LEARNED
from .style import COLORS, new_figure, save_png, write_html

SHOWN = ("AP", "BWT")
GREY = "#bbbbbb"


def row_order(result: Comparison) -> list[str]:
    """The compared methods top to bottom, largest AP difference first, those that learned no task last (unranked);
    one order for every panel."""
    def key(label: str) -> tuple[bool, float]:
        entry = result.paired[label].get("AP")
        return label in result.not_learned, -entry["mean"] if entry else float("inf")

    return sorted(result.paired, key=key)


def tick_label(result: Comparison, label: str) -> str:
    return f"{label} ({NOT_LEARNED})" if label in result.not_learned else label


def forest_rows(result: Comparison, measure: str) -> list[tuple[int, str, dict]]:
    """(row, label, paired entry) of the methods with a ``measure`` difference: each keeps its row in
    ``row_order`` (mtl has no BWT; its row stays empty in that panel instead of shifting the ones below). The BWT of
    a method that learned no task is not shown."""
    return [(y, label, result.paired[label][measure]) for y, label in enumerate(row_order(result))
            if result.paired[label].get(measure) and not (measure == "BWT" and label in result.not_learned)]


def compare_png(result: Comparison, out: str | Path) -> None:
    labels = row_order(result)
    fig = new_figure(figsize=(11, 1.2 + 0.45 * max(1, len(labels))))
    axes = fig.subplots(1, len(SHOWN), sharey=True, squeeze=False)[0]
    for ax, measure in zip(axes, SHOWN):
        for y, label, entry in forest_rows(result, measure):
            low = entry["low"] if entry["low"] is not None else entry["mean"]
            high = entry["high"] if entry["high"] is not None else entry["mean"]
            color = GREY if label in result.not_learned else COLORS[0] if low > 0 else COLORS[1] if high < 0 else "#777777"
            if entry.get("pi_low") is not None:
                ax.plot([entry["pi_low"], entry["pi_high"]], [y, y], color=color, lw=0.8, alpha=0.7)
            ax.plot([low, high], [y, y], color=color, lw=2.5)
            ax.plot(entry["mean"], y, "o", color=color)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(labels)), [tick_label(result, label) for label in labels])
        for tick, label in zip(ax.get_yticklabels(), labels):
            if label in result.not_learned:
                tick.set_color(GREY)
        ax.set(title=f"{measure}: difference from {result.baseline}", xlabel=measure)
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()  # once: the panels share the y axis, a second call would flip it back
    fig.suptitle("paired by seed; thick: 95% CI of the mean, thin: 95% prediction interval for one new seed", fontsize=10)
    save_png(fig, out)


def compare_figure(result: Comparison):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    # the panels share one category axis by the same categoryarray, not by plotly's axis matching (plotly.js drops a
    # matched reversed category axis with a console warning)
    fig = make_subplots(rows=1, cols=len(SHOWN),
                        subplot_titles=[f"{m}: difference from {result.baseline}" for m in SHOWN])
    for col, measure in enumerate(SHOWN, start=1):
        rows = forest_rows(result, measure)
        means = [e["mean"] for _, _, e in rows]
        plus = [(e["high"] - e["mean"]) if e["high"] is not None else 0 for _, _, e in rows]
        minus = [(e["mean"] - e["low"]) if e["low"] is not None else 0 for _, _, e in rows]
        colors = [GREY if label in result.not_learned else COLORS[0] for _, label, _ in rows]
        fig.add_trace(go.Scatter(x=means, y=[tick_label(result, label) for _, label, _ in rows], mode="markers",
                                 marker=dict(size=9, color=colors),
                                 error_x=dict(type="data", array=plus, arrayminus=minus, color=COLORS[0]),  # one color: an
                                 name=measure,  # error bar takes no per-point color array (plotly.js warns)
                                 customdata=[[e.get("pi_low"), e.get("pi_high")] for _, _, e in rows],
                                 hovertemplate="%{y}: %{x:+.4f} (95% PI for one new seed: %{customdata[0]:+.3f} to "
                                               "%{customdata[1]:+.3f})<extra></extra>", showlegend=False), 1, col)
        fig.add_vline(x=0, line=dict(color="black", width=1), row=1, col=col)
    # categories in row_order on every panel (a panel's own trace may lack some of them)
    fig.update_yaxes(categoryorder="array", categoryarray=[tick_label(result, label) for label in row_order(result)],
                     autorange="reversed")
    for col in range(2, len(SHOWN) + 1):
        fig.update_yaxes(showticklabels=False, row=1, col=col)
    fig.update_layout(title=f"paired differences from {result.baseline} over seeds ({result.interval})", template="plotly_white",
                      height=200 + 40 * max(1, len(result.paired)))
    return fig


def compare_html(result: Comparison, out: str | Path) -> None:
    write_html(compare_figure(result), out)
