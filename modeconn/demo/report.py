"""The demo's report.html: the figures of ``run_demo``'s results, each with a few sentences saying what it shows."""
from __future__ import annotations

from ..continual.config import EMBEDDED_TRAINING
from ..continual.metrics import signed
from ..plots.page import Section, render, table_html, write_report
from ..provenance import settings_line


def _pairs_figure(result):
    """Joint gap of each consecutive pair: every method's straight path, and seq's fitted curves."""
    import plotly.graph_objects as go

    from ..plots.style import COLORS

    fig = go.Figure()
    series = [(f"{m}, line", s.consecutive("linear")) for m, s in result.sweeps.items()]
    series.insert(1, ("seq, Bézier curve", result.sweeps["seq"].consecutive("bezier")))
    for k, (label, rows) in enumerate(series):
        fig.add_trace(go.Bar(x=[f"{r['from']} → {r['to']}" for r in rows], y=[r["joint_gap"] for r in rows], name=label,
                             marker_color=COLORS[k % len(COLORS)],
                             hovertemplate=f"{label}<br>%{{x}}: joint gap %{{y:.4f}}<extra></extra>"))
    fig.update_layout(barmode="group", template="plotly_white", height=420, yaxis_title="joint gap (loss)",
                      title="joint gap between consecutive task minima, per method")
    return fig


def _forgetting(result) -> Section:
    from ..plots.kinds import figure

    m, cfg = result.metrics, result.config
    order = " → ".join(next(iter(m.values())).tasks)
    top = max(r.ap for r in m.values())
    best = " and ".join(k for k, r in m.items() if abs(r.ap - top) < 1e-9)
    bwt_text = ", ".join(f"{k} BWT {r.bwt:+.3f}" for k, r in m.items())
    return Section("Forgetting: the accuracy matrix of each method", (
        f"Each heatmap is R[i][j], the exact-match accuracy on task j's test split ({cfg.eval_limit} examples) after "
        f"training task i, for the sequence {order}. The diagonal is what each task reached when it was learned; the "
        "last row is what is left at the end. seq is plain sequential LoRA; er replays stored examples of earlier "
        "tasks; ilora (I-LoRA) trains a fast adapter with replay and a consistency loss, and evaluates a slow adapter "
        "that follows it by interpolation.\n\n"
        "AP is the mean of the last row; BWT is the mean change of each earlier task from its diagonal value to the "
        f"last row (negative: forgetting). Here: {bwt_text}; highest AP: {best} ({top:.3f})."),
        figure(m), [f"runs/{k}/metrics.json" for k in m] + ["methods/accuracy.png"])


def _consecutive_barriers(result) -> Section:
    from ..plots.kinds import figure

    sweep, cfg = result.sweeps["seq"], result.config
    lines, curves = sweep.consecutive("linear"), sweep.consecutive("bezier")
    pairs_text = "; ".join(f"{r['from']} → {r['to']} {r['joint_gap']:.3f} → {c['joint_gap']:.3f}" for r, c in zip(lines, curves))
    lowered = sum(c["joint_gap"] < r["joint_gap"] for r, c in zip(lines, curves))
    verdict = (f"The fitted curve lowers the joint gap on {lowered} of {len(lines)} pairs: "
               + ("the minima that sequential training reaches are joined by paths of low loss for both tasks even "
                  "where the straight path between them is not." if lowered == len(lines) else
                  "where it does not, the two minima are not joined by a low curve of this kind."))
    return Section("Barriers between consecutive seq minima: straight line against fitted Bézier curve", (
        "Top row: the joint gap of each consecutive pair of seq adapters — along the path, the best point's excess "
        "loss over the better endpoint, on the worse of the pair's two tasks (0: some point of the path is as good as "
        "both minima on both tasks). Lower rows: each task's interpolation barrier on every pair's path (the loss "
        "above the straight line between its endpoint losses).\n\n"
        f"Joint gap, line → fitted curve ({cfg.curve_steps} steps on {cfg.limit} training examples per task): "
        f"{pairs_text}. {verdict}"),
        figure(sweep), ["sweep-seq/sweep.json", "sweep-seq/sweep.png"], settings=settings_line(sweep.made_by))


def _best_joint(path, pair: tuple[str, str]) -> tuple[float, list[float]]:
    """The point of the path where the worse of the pair's two accuracies is highest: its t and both accuracies."""
    acc = [[path.tasks[t].accuracy[i] for t in pair] for i in range(len(path.t))]
    i = max(range(len(acc)), key=lambda i: min(acc[i]))
    return path.t[i], acc[i]


def _largest_pair(result) -> list[Section]:
    from ..plots.kinds import figure

    big, (a, b) = result.largest(), result.pair
    line, curve = result.paths["linear"], result.paths["bezier"]
    t_line, acc_line = _best_joint(line, result.pair)
    t_curve, acc_curve = _best_joint(curve, result.pair)
    return [
        Section(f"The largest barrier: {a} → {b} along the straight line", (
            f"Loss (left) and accuracy (right) of every task along the straight path in LoRA factor space from the {a} "
            f"adapter (t = 0) to the {b} adapter (t = 1) of the seq run; dashed lines join each task's endpoint losses. "
            f"The joint gap is {big['linear_joint_gap']:.3f}. The point of the line best at the two together "
            f"(t = {t_line:.1f}) scores {acc_line[0]:.2f} on {a} and {acc_line[1]:.2f} on {b}."),
            figure(line), ["path-linear/barrier.json", "path-linear/barrier.png"], settings=settings_line(line.made_by)),
        Section("The same pair along the fitted Bézier curve", (
            f"The same two adapters joined by the quadratic Bézier curve fitted between them. The joint gap falls to "
            f"{big['bezier_joint_gap']:.3f} (from {big['linear_joint_gap']:.3f} on the line); the point of the curve best "
            f"at the two together (t = {t_curve:.1f}) scores {acc_curve[0]:.2f} on {a} and {acc_curve[1]:.2f} on {b}. "
            "The curve was fitted on the two tasks' training data; it is a picture of the landscape between the minima, "
            "not a continual method."),
            figure(curve), ["path-bezier/barrier.json", "path-bezier/barrier.png"], settings=settings_line(curve.made_by)),
    ]


def _plane(result) -> Section:
    from ..plots.kinds import figure

    plane, grid, (a, b) = result.plane, result.config.grid, result.pair
    return Section("The plane through the two minima and the curve's control point", (
        f"log10 loss of each task, and of their mean, on a {grid}×{grid} grid over the plane through the {a} "
        f"adapter, the {b} adapter and the fitted control point; the dashed line is the straight path and the orange "
        "line the fitted curve; the white points are the two minima and the control point. Grid minimum of the mean "
        f"loss: {min(min(row) for row in plane.mean_loss()):.3f}."),
        figure(plane), ["plane/plane.json", "plane/plane.png"], settings=settings_line(plane.made_by))


def _methods(result) -> Section:
    mean_gap = lambda rows: sum(r["joint_gap"] for r in rows) / len(rows)  # noqa: E731
    gaps_text = "; ".join([f"{k} line {mean_gap(s.consecutive('linear')):.3f}" for k, s in result.sweeps.items()]
                          + [f"seq curve {mean_gap(result.sweeps['seq'].consecutive('bezier')):.3f}"])
    return Section("Consecutive minima of each method", (
        "The joint gap of each consecutive pair of task adapters, on every method's own straight paths, beside the "
        f"fitted curves of seq. Mean joint gap over the consecutive pairs: {gaps_text}."),
        _pairs_figure(result), [f"sweep-{k}/sweep.json" for k in result.sweeps])


def write_demo_report(result) -> None:
    """Write ``report.html`` into the demo's folder from its results alone (so a finished folder can be redrawn)."""
    m, cfg = result.metrics, result.config
    names = next(iter(m.values())).tasks
    order = " → ".join(names)
    sections = [_forgetting(result), _consecutive_barriers(result), *_largest_pair(result), _plane(result), _methods(result)]
    summary = table_html(["method", "AP", "BWT", "FWT", "accuracy per task after the last (" + order + ")"],
                         [[k, f"{r.ap:.3f}", signed(r.bwt), signed(r.fwt),
                           "  ".join(f"{v:.2f}" for v in r.accuracy[-1])] for k, r in m.items()])
    intro = (f"modeconn on its embedded default: a small pretrained LLaMA, LoRA (rank {EMBEDDED_TRAINING['rank']}) on the "
             f"{len(names)}-task sequence {order}, {cfg.max_train} training examples per task, {cfg.epochs} epochs, seed "
             f"{cfg.seed}. Made by `modeconn demo` in {result.seconds / 60:.1f} minutes.")
    footer = ("Every number on this page is in the JSON files beside it (demo.json gathers the summary); every figure "
              "is also a PNG in its folder, and `modeconn plot FOLDER/*.json` redraws it.")
    write_report(result.out / "report.html", render("modeconn: forgetting and mode connectivity in continual LoRA",
                                                     intro, sections, summary, footer=footer))
