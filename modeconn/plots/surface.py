"""Pictures of planes and random-direction landscapes: contour maps per task (PNG), interactive contours or 3D
surfaces (HTML), and loss curves for 1D landscapes. Colours follow log loss, so valleys stay visible next to
the far-off corners of a plane."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.surface import SurfaceResult
from .style import COLORS, caption_html, new_figure, save_png, write_html


def _axis_names(result: SurfaceResult) -> tuple[str, str]:
    if result.kind == "plane":
        a, b, c = result.short_labels()[:3]  # further labelled points are marks placed on the plane
        return f"u: along {a} → {b} (distance in {result.space} space)", f"v: towards {c}, orthogonal to u"
    return "α (filter-normalised direction 1)", "β (filter-normalised direction 2)"


def _title(result: SurfaceResult) -> str:
    if result.kind == "plane":
        labels = result.short_labels()
        marks = f"; {', '.join(labels[3:])} placed on it" if len(labels) > 3 else ""
        return f"plane through {', '.join(labels[:3])}{marks} ({result.space} space)"
    return f"random-direction landscape around {result.short_labels()[0]}"


def _panels(result: SurfaceResult) -> list[tuple[str, np.ndarray]]:
    """One loss grid per task, and their mean (the joint objective a Bézier curve is fitted to) when there are several."""
    panels = [(name, np.asarray(st.loss, dtype=float)) for name, st in result.tasks.items()]
    if len(panels) > 1:
        panels.append((f"mean of {len(panels)} tasks", np.asarray(result.mean_loss(), dtype=float)))
    return panels


def surface_png(result: SurfaceResult, out: str | Path) -> None:
    from matplotlib.colors import LogNorm

    names = list(result.tasks)
    if result.one_dimensional:
        fig = new_figure(figsize=(6.5, 4.2))
        ax = fig.subplots()
        for i, name in enumerate(names):
            ax.plot(result.x, result.tasks[name].loss[0], "o-", ms=3, color=COLORS[i % len(COLORS)], label=name)
        ax.axvline(0, color="k", lw=0.8, ls=":")
        ax.set(xlabel=_axis_names(result)[0], ylabel="loss (mean NLL per answer token)", title=_title(result))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        panels = _panels(result)
        fig = new_figure(figsize=(4.8 * len(panels), 5.0))
        axes = fig.subplots(1, len(panels), squeeze=False)
        x, y = np.asarray(result.x), np.asarray(result.y)
        for ax, (name, z) in zip(axes[0], panels):
            if not np.isfinite(z).any():
                ax.set_title(f"{name}: no finite loss")
                continue
            levels = np.geomspace(max(np.nanmin(z[np.isfinite(z)]), 1e-6), np.nanmax(z[np.isfinite(z)]) * 1.0001, 24)
            z = np.where(np.isfinite(z), z, np.nan)
            filled = ax.contourf(x, y, z, levels=levels, norm=LogNorm(levels[0], levels[-1]), cmap="viridis")
            ax.contour(x, y, z, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.6)
            fig.colorbar(filled, ax=ax, label="loss (log colour scale)", format="%.2g")
            _draw_points(ax, result)
            ax.set(xlabel=_axis_names(result)[0], ylabel=_axis_names(result)[1], title=name)
            ax.set_aspect("equal" if result.kind == "plane" else "auto")
        fig.suptitle(_title(result), fontsize=10)
    save_png(fig, out, result.made_by)


def _draw_points(ax, result: SurfaceResult) -> None:
    pts = np.asarray(result.points)
    if result.kind == "plane":
        ax.plot(pts[:2, 0], pts[:2, 1], "--", color="white", lw=1, label="linear path")
    if result.curve:
        xy = np.asarray(result.curve["xy"])
        ax.plot(xy[:, 0], xy[:, 1], "-", color="#ff7f0e", lw=2, label="Bézier curve")
    middle = sum(ax.get_xlim()) / 2
    for (px, py), label, marker in zip(pts, result.short_labels(), "o^sD*Pvh"):
        ax.plot(px, py, marker, color="white", mec="black", ms=8)
        right = px <= middle  # a label runs inwards, so one near the right edge stays off the colour bar
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(6 if right else -6, 6), color="white",
                    fontsize=8, ha="left" if right else "right",
                    bbox=dict(boxstyle="round,pad=0.2", fc="black", alpha=0.5, lw=0))
    if result.kind == "plane":
        ax.legend(fontsize=7, loc="lower right")


def surface_figure(result: SurfaceResult, surface3d: bool = False):
    """The plotly figure of a plane or landscape: contour maps (or 3D surfaces) per task, or 1D curves."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(result.tasks)
    xname, yname = _axis_names(result)
    if result.one_dimensional:
        fig = go.Figure()
        for i, name in enumerate(names):
            fig.add_trace(go.Scatter(x=result.x, y=result.tasks[name].loss[0], mode="lines+markers", name=name,
                                     line=dict(color=COLORS[i % len(COLORS)]),
                                     hovertemplate=f"{name}<br>α=%{{x:.4f}}<br>loss=%{{y:.5f}}<extra></extra>"))
        fig.update_layout(xaxis_title=xname, yaxis_title="loss (mean NLL per answer token)")
    else:
        panels = _panels(result)
        names = [name for name, _ in panels]
        kind = "surface" if surface3d else "xy"
        fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, specs=[[{"type": kind}] * len(names)],
                            horizontal_spacing=0.14)
        for i, (name, z) in enumerate(panels):
            hover = f"{name}<br>x=%{{x:.4f}}<br>y=%{{y:.4f}}<br>loss=%{{customdata:.5f}}<extra></extra>"
            suffix = "" if i == 0 else str(i + 1)
            right = fig.layout[f"scene{suffix}"].domain.x[1] if surface3d else fig.layout[f"xaxis{suffix}"].domain[1]
            bar = dict(title="log10 loss", x=right + 0.005, len=0.8, thickness=14)
            if surface3d:
                fig.add_trace(go.Surface(x=result.x, y=result.y, z=z, customdata=z, colorscale="Viridis",
                                         surfacecolor=np.log10(z), colorbar=bar, hovertemplate=hover.replace("customdata", "z")),
                              1, i + 1)
                fig.layout[f"scene{suffix}"].update(xaxis_title="x", yaxis_title="y", zaxis_title="loss")
            else:
                fig.add_trace(go.Contour(x=result.x, y=result.y, z=np.log10(z), customdata=z, colorscale="Viridis",
                                         colorbar=bar, hovertemplate=hover, contours=dict(coloring="heatmap")), 1, i + 1)
                _html_points(fig, result, i + 1, show_legend=i == 0)
                fig.update_xaxes(title_text=xname, row=1, col=i + 1)
                fig.update_yaxes(title_text=yname, row=1, col=i + 1)
    fig.update_layout(title=_title(result), template="plotly_white", height=560, width=max(700, 560 * len(names)),
                      legend=dict(orientation="h", y=-0.2), margin=dict(b=120))
    caption_html(fig, result.made_by)
    return fig


def surface_html(result: SurfaceResult, out: str | Path, surface3d: bool = False) -> None:
    write_html(surface_figure(result, surface3d), out)


def _html_points(fig, result: SurfaceResult, col: int, show_legend: bool) -> None:
    import plotly.graph_objects as go

    pts = np.asarray(result.points)
    if result.curve:
        xy = np.asarray(result.curve["xy"])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", line=dict(color="#ff7f0e", width=3), name="Bézier curve",
                                 customdata=result.curve["t"], hovertemplate="curve t=%{customdata:.3f}<extra></extra>",
                                 showlegend=show_legend, legendgroup="curve"), 1, col)
    if result.kind == "plane":
        fig.add_trace(go.Scatter(x=pts[:2, 0], y=pts[:2, 1], mode="lines", line=dict(color="white", dash="dash"),
                                 name="linear path", hoverinfo="skip", showlegend=show_legend, legendgroup="line"), 1, col)
    fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers+text", text=result.short_labels(),
                             textposition="top right", marker=dict(color="white", size=10, line=dict(color="black", width=1)),
                             name="points", showlegend=show_legend, legendgroup="points", textfont=dict(color="white"),
                             hovertemplate="%{text}<br>x=%{x:.4f}<br>y=%{y:.4f}<extra></extra>"), 1, col)
