"""Pictures of a curvature result: the top Hessian (and GGN) eigenvalue of each task per adapter, or along the path; and
the report's scatter of each task minimum's sharpness against its forgetting."""
from __future__ import annotations

from pathlib import Path

from ..analysis.curvature import CurvatureResult
from .style import COLORS, caption_html, new_figure, save_png, write_html


def _series(result: CurvatureResult) -> tuple[list, dict]:
    """The x positions (t, or adapter names) and, per task, its points in that order."""
    xs = sorted({p.t for p in result.points}) if result.along else list(dict.fromkeys(p.adapter for p in result.points))
    tasks: dict = {}
    for p in result.points:
        tasks.setdefault(p.task, {})[p.t if result.along else p.adapter] = p
    return xs, tasks


def _title(result: CurvatureResult) -> str:
    if result.along:
        a, b = (Path(result.along[k]).name for k in ("from", "to"))
        return f"curvature along the straight path {a} → {b} ({result.along['space']} space)"
    return "curvature of each task's loss at each adapter" + (f" (run {Path(result.run).name})" if result.run else "")


def curvature_png(result: CurvatureResult, out: str | Path) -> None:
    xs, tasks = _series(result)
    fig = new_figure(figsize=(10, 4.6))
    ax = fig.subplots()
    at = (lambda x: x) if result.along else (lambda x: xs.index(x))
    for i, (task, points) in enumerate(tasks.items()):
        color = COLORS[i % len(COLORS)]
        keys = [x for x in xs if x in points]
        ax.plot([at(x) for x in keys], [points[x].hessian[0] for x in keys], "o-", color=color, label=f"{task}: λ_max Hessian")
        if all(points[x].ggn for x in keys):
            ax.plot([at(x) for x in keys], [points[x].ggn[0] for x in keys], "s--", color=color, lw=1, ms=3,
                    label=f"{task}: λ_max GGN")
    if not result.along:
        ax.set_xticks(range(len(xs)), [Path(x).name for x in xs], rotation=20, fontsize=8)
    ax.set(xlabel="t" if result.along else "adapter", ylabel="largest eigenvalue", title=_title(result))
    values = [v for p in result.points for v in (p.hessian[0], *(p.ggn or [])[:1])]
    if min(values) > 0 and max(values) > 30 * min(values):
        ax.set_yscale("log")
    elif min(values) > 0:
        ax.set_ylim(0, 1.08 * max(values))  # from 0, with room above the top marker (autoscale left it half cut)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_png(fig, out, result.made_by)


def curvature_figure(result: CurvatureResult):
    import plotly.graph_objects as go

    xs, tasks = _series(result)
    fig = go.Figure()
    for i, (task, points) in enumerate(tasks.items()):
        keys = [x for x in xs if x in points]
        x = keys if result.along else [Path(k).name for k in keys]
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=x, y=[points[k].hessian[0] for k in keys], name=f"{task}: λ_max Hessian",
                                 mode="lines+markers", line=dict(color=color)))
        if all(points[k].ggn for k in keys):
            fig.add_trace(go.Scatter(x=x, y=[points[k].ggn[0] for k in keys], name=f"{task}: λ_max GGN",
                                     mode="lines+markers", line=dict(color=color, dash="dash")))
    fig.update_layout(title=_title(result), xaxis_title="t" if result.along else "adapter", yaxis_title="largest eigenvalue",
                      template="plotly_white", margin=dict(b=90))
    caption_html(fig, result.made_by)
    return fig


def curvature_html(result: CurvatureResult, out: str | Path) -> None:
    write_html(curvature_figure(result), out)


def sharpness_figure(rows: list[dict]):
    """Each task minimum's top Hessian eigenvalue against its forgetting (a_{T,i} − a_{i,i}), one colour per run."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
        mine = [r for r in rows if r["run"] == run and r["forgetting"] is not None]
        fig.add_trace(go.Scatter(x=[r["hessian"] for r in mine], y=[r["forgetting"] for r in mine], mode="markers+text",
                                 text=[r["task"] for r in mine], textposition="top center", name=run,
                                 marker=dict(size=10, color=COLORS[i % len(COLORS)])))
    fig.update_layout(xaxis_title="sharpness: λ_max of the Hessian at the task's minimum", xaxis_type="log",
                      yaxis_title="forgetting: a(T, i) − a(i, i)", title="sharpness against forgetting",
                      template="plotly_white")
    return fig


def sharpness_png(rows: list[dict], out: str | Path) -> None:
    from matplotlib.ticker import FuncFormatter

    fig = new_figure(figsize=(8, 4.6))
    ax = fig.subplots()
    for i, run in enumerate(dict.fromkeys(r["run"] for r in rows)):
        mine = [r for r in rows if r["run"] == run and r["forgetting"] is not None]
        ax.scatter([r["hessian"] for r in mine], [r["forgetting"] for r in mine], color=COLORS[i % len(COLORS)], label=run)
        for r in mine:
            ax.annotate(r["task"], (r["hessian"], r["forgetting"]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(xlabel="sharpness: λ_max of the Hessian at the task's minimum", ylabel="forgetting: a(T, i) − a(i, i)",
           xscale="log", title="sharpness against forgetting")
    # 20, not 2×10¹, and 2, 3 and 5 of each decade labelled: the minima often span less than a decade
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, out)
