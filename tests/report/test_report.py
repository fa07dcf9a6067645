"""`modeconn report` on two tiny training runs: the page and report.json say what the results say, results made with
the same settings are read back, a flat row of barrier heatmaps becomes one sentence, and the page renders in
headless Chromium at desktop and phone widths without a console message."""
import json
import shutil
import subprocess

import pytest

from modeconn.cli import main
from modeconn.continual import TrainConfig, get_method, train_sequence
from modeconn.evaluator.models import checkpoints_dir

DATA = checkpoints_dir() / "data"
TASKS = [(t, DATA / t) for t in ("news", "gloss", "fortune")]
SMALL = ["--points", "3", "--limit", "4", "--curve-steps", "3", "--grid", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    config = TrainConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=8, max_train=16,
                         seed=0, lr=3e-3)
    for name in ("seq", "er"):
        train_sequence("tiny-llama", TASKS, get_method(name, seed=0, **({"buffer_size": 8} if name == "er" else {})),
                       config, root / f"{name}-seed0", eval_limit=6, progress=False)
    out = root / "page"
    assert main(["report", str(root / "seq-seed0"), str(root / "er-seed0"), "--out", str(out), *SMALL]) == 0
    return root, out


@pytest.mark.slow
def test_the_report_holds_every_section_and_names_the_largest_barrier(runs):
    root, out = runs
    record = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in record["runs"]] == ["seq-seed0", "er-seed0"]
    gaps = [(r["consecutive"]["linear"][k]["joint_gap"], r["label"], r["consecutive"]["linear"][k]["from"])
            for r in record["runs"] for k in range(2)]
    top = max(gaps)
    assert record["largest_joint_gap_pair"][:2] == [top[1], top[2]]
    for run in ("seq-seed0", "er-seed0"):  # the AP shown is the run's own
        assert next(r for r in record["runs"] if r["label"] == run)["AP"] == json.loads(
            (root / run / "metrics.json").read_text())["AP"]
    page = (out / "report.html").read_text()
    for heading in ("Accuracy matrices", "Barriers between consecutive minima: seq-seed0", "largest joint gap",
                    "Method comparison", "Settings"):
        assert heading in page
    assert (out / "plane" / "plane.json").is_file() and (out / "comparison" / "compare.json").is_file()


@pytest.mark.slow
def test_results_with_the_same_settings_are_read_back_and_others_recomputed(runs):
    root, out = runs
    sweep = out / "seq-seed0" / "sweep" / "sweep.json"
    before = sweep.stat().st_mtime_ns
    assert main(["report", str(root / "seq-seed0"), str(root / "er-seed0"), "--out", str(out), *SMALL]) == 0
    assert len(json.loads((out / "report.json").read_text())["reused"]) == 3 and sweep.stat().st_mtime_ns == before
    other = out.parent / "page-lines"
    assert main(["report", str(root / "seq-seed0"), "--out", str(other), "--no-curves", "--points", "2", "--limit", "4",
                 "--grid", "3"]) == 0
    record = json.loads((other / "report.json").read_text())
    assert record["reused"] == [] and list(record["runs"][0]["consecutive"]) == ["linear"]
    assert "fortune minimum" in record["plane"]  # no curve: the plane takes the next minimum as its third point


def test_a_flat_row_of_barriers_is_one_sentence(runs):
    from modeconn.report.gather import RunEntry
    from modeconn.plots.kinds import load_result
    from modeconn.report.page import _barriers
    from modeconn.plots.sweep import flat_paths, sweep_figure

    _, out = runs
    sweep = load_result(out / "seq-seed0" / "sweep" / "sweep.json")
    for pair in sweep.pairs:  # every task's barrier along both paths set to zero
        for path in ("linear", "bezier"):
            for task in pair.get(path).tasks.values():
                task.barrier = 0.0
    assert flat_paths(sweep) == ["linear", "bezier"]
    assert len(sweep_figure(sweep, hide_flat=True).data) == 2  # the joint-gap heatmaps only
    assert len(sweep_figure(sweep).data) == 2 + 2 * 3
    section = _barriers(RunEntry("seq-seed0", out, None, sweep), curves=True)
    assert "No per-task barrier on any pair along the linear or the bezier paths" in section.text


def test_bad_runs_are_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a run or task sequence" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt install chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_renders_without_console_messages(runs, width, tmp_path):
    _, out = runs
    shot = tmp_path / f"report-{width}.png"
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", f"--window-size={width},2400", f"--screenshot={shot}",
                           (out / "report.html").resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 20_000  # a drawn page, not a blank one
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]  # console.log/error, uncaught errors
    assert console == []


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt install chromium)")
def test_the_console_check_sees_a_script_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--screenshot={tmp_path / 'bad.png'}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert any(":CONSOLE" in line and "boom" in line for line in done.stderr.splitlines())
