"""`modeconn compare` on hand-made run folders: groups by NAME-seedN, means with t-intervals, paired differences."""
import json

import pytest

from modeconn.cli import main
from modeconn.continual.compare import compare, read_runs


def fake_run(folder, name, ap, bwt, seed, method="er"):
    folder.mkdir(parents=True)
    (folder / "sequence.json").write_text(json.dumps({"name": name, "base_model": "x", "tasks": []}))
    (folder / "metrics.json").write_text(json.dumps({"kind": "continual_metrics", "method": method, "AP": ap, "BWT": bwt,
                                                      "FWT": None, "made_by": {"settings": {"config": {"seed": seed}}}}))


@pytest.fixture()
def runs(tmp_path):
    for seed, (a, b) in enumerate([(0.5, 0.4), (0.7, 0.5)]):
        fake_run(tmp_path / "runs" / f"ilora-seed{seed}", f"ilora-seed{seed}", a, -0.1, seed, "ilora")
        fake_run(tmp_path / "runs" / f"er-seed{seed}", f"er-seed{seed}", b, -0.2 - 0.1 * seed, seed)
    fake_run(tmp_path / "runs" / "ilora-seed7", "ilora-seed7", 0.9, 0.0, 7, "ilora")  # no er partner: not paired
    return tmp_path / "runs"


def test_paired_differences_and_intervals_by_hand(runs):
    result = compare(read_runs([str(runs)]), baseline="er")
    assert result.groups["ilora"]["seeds"] == [0, 1, 7] and result.groups["er"]["seeds"] == [0, 1]
    ap = result.summary["er"]["AP"]  # mean 0.45, s = 0.0707, t(0.975, 1) = 12.706: half width 0.635
    assert ap["mean"] == pytest.approx(0.45) and ap["high"] - ap["mean"] == pytest.approx(12.7062 * 0.070711 / 2**0.5, rel=1e-4)
    paired = result.paired["ilora"]
    assert paired["seeds"] == [0, 1] and paired["AP"]["mean"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert paired["AP"]["low"] == pytest.approx(0.15 - 12.7062 * 0.070711 / 2**0.5, rel=1e-4)
    assert paired["BWT"]["mean"] == pytest.approx(0.15) and paired["FWT"] is None
    assert result.relative_ap_gain["ilora"] == pytest.approx(0.15 / 0.45)
    assert "paired difference from er" in result.table()


def test_the_command_writes_json_png_html_and_refuses_a_missing_baseline(runs, tmp_path, capsys):
    assert main(["compare", str(runs), "--baseline", "er", "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["compare.html", "compare.json", "compare.png"]
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["paired"]["ilora"]["AP"]["n"] == 2
    assert main(["plot", str(tmp_path / "c" / "compare.json")]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs), "--baseline", "seq", "--out", str(tmp_path / "d")]) == 2
    assert "no runs of the baseline 'seq'" in capsys.readouterr().err


@pytest.mark.slow
def test_mtl_is_one_joint_run_over_every_task(tmp_path):
    from modeconn.continual import TrainConfig, get_method, train_sequence
    from modeconn.evaluator.models import checkpoints_dir

    data = checkpoints_dir() / "data"
    config = TrainConfig(rank=4, alpha=8, dropout=0.0, target_modules=("q_proj",), epochs=2, batch_size=8, max_train=8)
    run = train_sequence("tiny-llama", [("news", data / "news"), ("gloss", data / "gloss")], get_method("mtl"), config,
                         tmp_path / "mtl", eval_limit=2, progress=False)
    log = [json.loads(line) for line in (tmp_path / "mtl" / "train_log.jsonl").read_text().splitlines()]
    assert [r["task"] for r in log] == ["gloss"] * 4  # nothing before the last task; then 16 examples × 2 epochs / 8
    assert run.metrics.bwt is None and run.metrics.fwt is None and run.metrics.joint


def test_forest_plot_rows_stay_with_their_method_when_one_lacks_a_measure(runs, tmp_path, monkeypatch):
    """mtl has no BWT: its BWT row stays empty and every other method's BWT is drawn on that method's own row (an
    earlier version drew them from a list without mtl, shifting each one onto the row of the method above it)."""
    import modeconn.plots.compare as plot

    for seed in (0, 1):
        fake_run(runs / f"mtl-seed{seed}", f"mtl-seed{seed}", 0.8, None, seed, "mtl")
        fake_run(runs / f"seq-seed{seed}", f"seq-seed{seed}", 0.1, -0.6, seed, "seq")
    result = compare(read_runs([str(runs)]), baseline="er")
    assert plot.row_order(result) == ["mtl", "ilora", "seq"]  # largest AP difference first
    drawn = {}
    monkeypatch.setattr(plot, "save_png", lambda fig, out: drawn.setdefault("fig", fig))
    plot.compare_png(result, tmp_path / "c.png")
    assert all(ax.yaxis_inverted() for ax in drawn["fig"].axes)  # row 0, the largest difference, on top
    for ax, measure in zip(drawn["fig"].axes, plot.SHOWN):
        ticks = {t.get_text(): y for t, y in zip(drawn["fig"].axes[0].get_yticklabels(), ax.get_yticks())}
        markers = {line.get_ydata()[0]: line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o"}
        expected = {label: m[measure]["mean"] for label, m in result.paired.items() if m.get(measure)}
        assert {label: markers[ticks[label]] for label in expected} == pytest.approx(expected)
        assert ("mtl" in expected) == (measure == "AP") and len(markers) == len(expected)
    figure = plot.compare_figure(result)
    bwt = figure.data[1]
    assert dict(zip(bwt.y, bwt.x)) == pytest.approx({"ilora": 0.15, "seq": -0.6 - (-0.25)})
    assert list(figure.layout.yaxis.categoryarray) == ["mtl", "ilora", "seq"]
