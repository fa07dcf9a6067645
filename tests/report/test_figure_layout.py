"""save_png's layout: the figure title and the settings caption sit clear of every panel, on a tall figure (a sweep's
six rows, where a strip sized as a fraction of the height was a gap at the bottom and no room at the top) and on a
one-row one, and the caption, however many settings it lists, wraps within the page's width."""
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from modeconn.plots.style import new_figure, save_png


def panels_and_labels(rows: int, cols: int, tmp_path):
    fig = new_figure(figsize=(4.3 * cols, 4.0 * rows))
    for k, ax in enumerate(fig.subplots(rows, cols, squeeze=False).flat):
        ax.plot([0, 1], [k, k + 1])
        ax.set(title=f"panel {k}", xlabel="t", ylabel="loss")
    fig.suptitle("sweep over a → b → c (factor space)", fontsize=11)
    settings = {"space": "factor", "split": "eval", "base": "smollm2-135m", "limit": 8, "seed": 0, "device": "cpu",
                "max_length": 1024, "max_batch_tokens": 4096, "dtype": "bfloat16", "accuracy": True, "points": 7,
                "curve_steps": 30, "curve_points_per_step": 4, "curve_lr": 0.01, "curve_path": "bezier"}
    save_png(fig, tmp_path / "f.png", {"kind": "sweep", "settings": settings, "versions": {"modeconn": "0.1.0"}})
    renderer = FigureCanvasAgg(fig).get_renderer()
    caption = next(t for t in fig.texts if t is not fig._suptitle)
    return ([ax.get_tightbbox(renderer) for ax in fig.axes], fig._suptitle.get_window_extent(renderer),
            caption.get_window_extent(renderer), fig.bbox, fig.dpi)


@pytest.mark.parametrize("rows, cols", [(6, 4), (1, 3), (1, 1)])
def test_the_title_and_the_caption_overlap_no_panel(rows, cols, tmp_path):
    panels, title, caption, page, inch = panels_and_labels(rows, cols, tmp_path)
    for box in panels:
        assert not box.overlaps(title) and not box.overlaps(caption)
    assert title.y1 <= page.y1 and caption.y0 >= page.y0 and caption.x1 <= page.x1
    top_of_panels, bottom_of_panels = max(b.y1 for b in panels), min(b.y0 for b in panels)
    assert title.y0 - top_of_panels < 0.6 * inch  # and no band of white either
    assert bottom_of_panels - caption.y1 < 0.6 * inch
