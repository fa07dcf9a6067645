"""The main job end to end on a tiny budget: every file of the report folder, numbers that agree with each other."""
import json
import re

import pytest

from modeconn.cli import main
from modeconn.demo.config import DemoConfig, load_demo
from modeconn.demo.run import run_demo
from modeconn.demo.report import write_demo_report

TINY = DemoConfig(methods=("seq", "ilora"), max_train=16, epochs=1, eval_limit=6, limit=6, points=3, curve_steps=3,
                  grid=3, tasks=3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, TINY, progress=False)


def test_demo_writes_the_report_folder(demo):
    out = demo.out
    for name in ("seq", "ilora"):
        assert (out / "runs" / name / "metrics.json").is_file() and (out / f"sweep-{name}" / "sweep.png").is_file()
        assert (out / "runs" / name / "news" / "adapter_model.safetensors").is_file()
    for folder, stem in (("path-linear", "barrier"), ("path-bezier", "barrier"), ("plane", "plane")):
        assert {p.name for p in (out / folder).iterdir()} == {f"{stem}.json", f"{stem}.png", f"{stem}.html"}
    assert (out / "methods" / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "curves").iterdir()) == ["gloss-fortune", "news-gloss"]
    page = (out / "report.html").read_text()
    assert page.count("<h2>") == 6 and page.count('class="plotly-graph-div"') == 6
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # plotly.js inlined once
    assert not re.search(r"<script[^>]*\ssrc=", page)  # no external script: the page opens offline
    assert not [p for p in out.rglob(".*") if p.name not in (".state", ".modeconn.owned.json")]  # no temporary files left


def test_demo_numbers_agree_with_the_runs_and_the_sweep(demo):
    record = json.loads((demo.out / "demo.json").read_text())
    for name in ("seq", "ilora"):
        metrics = json.loads((demo.out / "runs" / name / "metrics.json").read_text())
        assert record["methods"][name]["AP"] == pytest.approx(metrics["AP"])
        assert record["methods"][name]["BWT"] == pytest.approx(metrics["BWT"])
    rows = demo.sweeps["seq"].consecutive("linear")
    largest = record["largest"]
    assert largest["linear_joint_gap"] == pytest.approx(max(r["joint_gap"] for r in rows))
    curve = {(r["from"], r["to"]): r["joint_gap"] for r in demo.sweeps["seq"].consecutive("bezier")}
    assert largest["bezier_joint_gap"] == pytest.approx(curve[largest["from"], largest["to"]])
    # the pair's standalone paths are the sweep's paths, now scored with accuracy: the same losses
    pair = next(p for p in demo.sweeps["seq"].pairs if demo.sweeps["seq"].tasks[p.a] == largest["from"])
    assert demo.paths["linear"].tasks[largest["from"]].loss == pytest.approx(pair.linear.tasks[largest["from"]].loss, abs=1e-5)
    lines = demo.summary_lines()
    # a line per method, then the largest linear barrier and its curve (five lines for the three default methods)
    assert len(lines) == len(TINY.methods) + 2 and lines[0].startswith("seq")
    assert f"{largest['linear_joint_gap']:.3f}" in lines[-2] and f"{largest['bezier_joint_gap']:.3f}" in lines[-1]


def test_the_report_is_redrawn_from_the_json_alone(demo):
    before = (demo.out / "report.html").read_text()
    again = load_demo(demo.out)
    assert again.summary_lines() == demo.summary_lines()
    write_demo_report(again)
    assert (demo.out / "report.html").read_text() == before


def test_demo_rejects_bad_options_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--methods", "seq,nope"]) == 2
    assert main(["demo", "--out", str(tmp_path / "d"), "--max-train", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nope" in err[0] and "--max-train" in err[1]
    assert not (tmp_path / "d").exists()


def test_plot_draws_a_training_runs_accuracy_matrix(demo, tmp_path):
    assert main(["plot", str(demo.out / "runs" / "seq" / "metrics.json"), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".modeconn.owned.json", "accuracy.html", "accuracy.png"]
