"""`modeconn report` on two tiny training runs: the page and report.json say what the results say, results made with
the same settings are read back, a flat row of barrier heatmaps becomes one sentence, and the page renders in
headless Chromium at desktop and phone widths without a console message."""
import json
import shutil
import subprocess

import pytest

from modeconn.cli import main
from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
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
        train_sequence(TrainRequest("tiny-llama", TASKS,
                                    get_method(name, seed=0, **({"buffer_size": 8} if name == "er" else {})), config,
                                    eval_limit=6),
                       root / f"{name}-seed0", progress=False)
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
    # each section prints its settings under its figure; the figure's own small copy is left out (not the plot's)
    assert '"name":"caption"' not in page and '"name":"caption"' in (out / "plane" / "plane.html").read_text()


@pytest.mark.slow
def test_results_with_the_same_settings_are_read_back_and_others_recomputed(runs):
    root, out = runs
    sweep = out / "seq-seed0" / "sweep" / "sweep.json"
    before = sweep.stat().st_mtime_ns
    assert main(["report", str(root / "seq-seed0"), str(root / "er-seed0"), "--out", str(out), *SMALL]) == 0
    assert len(json.loads((out / "report.json").read_text())["reused"]) == 3 and sweep.stat().st_mtime_ns == before
    assert not (out / "seq-seed0" / "kept").exists()  # each pair kept while the sweep ran, gone once it was saved
    assert (out / "seq-seed0" / "curves" / "news-gloss" / "curve.json").is_file()
    other = out.parent / "page-lines"
    assert main(["report", str(root / "seq-seed0"), "--out", str(other), "--no-curves", "--points", "2", "--limit", "4",
                 "--grid", "3"]) == 0
    record = json.loads((other / "report.json").read_text())
    assert record["reused"] == [] and list(record["runs"][0]["consecutive"]) == ["linear"]
    assert "fortune minimum" in record["plane"]  # no curve: the plane takes the next minimum as its third point
    assert main(["report", str(root / "seq-seed0"), "--out", str(other), "--no-curves", "--points", "2", "--limit", "4",
                 "--grid", "3", "--dtype", "bfloat16"]) == 0  # another precision: recomputed in it, and recorded
    record = json.loads((other / "report.json").read_text())
    assert record["reused"] == [] and record["config"]["loading"] == {"dtype": "bfloat16"}
    made_by = json.loads((other / "seq-seed0" / "sweep" / "sweep.json").read_text())["made_by"]
    assert made_by["settings"]["dtype"] == "bfloat16"


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


def test_a_negative_joint_gap_is_coloured_as_no_gap(runs):
    """A path point better than both minima (a negative joint gap) shows as pale as 0, not mid-scale."""
    from modeconn.plots.kinds import load_result
    from modeconn.plots.sweep import sweep_figure

    _, out = runs
    sweep = load_result(out / "seq-seed0" / "sweep" / "sweep.json")
    pair = sweep.pairs[0]
    for k in (pair.a, pair.b):  # a dip in the middle of the curve for both of its own tasks
        task = pair.get("bezier").tasks[sweep.tasks[k]]
        task.loss = [1.0 if i in (0, len(task.loss) - 1) else 0.5 for i in range(len(task.loss))]
    assert sweep.joint("bezier")[pair.a][pair.b] == -0.5
    for trace in sweep_figure(sweep).data:  # the joint-gap heatmaps and every task's barrier heatmap
        assert trace.zmin == 0.0 and trace.zmax > 0


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


@pytest.fixture(scope="module")
def wide(runs):
    """An ilora run beside seq's, reported in both spaces with accuracy along the paths."""
    root, _ = runs
    config = TrainConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=8, max_train=8,
                         seed=0, lr=3e-3)
    train_sequence(TrainRequest("tiny-llama", TASKS, get_method("ilora", seed=0, buffer_size=8), config, eval_limit=4),
                   root / "ilora-seed0", progress=False)
    out = root / "wide"
    assert main(["report", str(root / "seq-seed0"), str(root / "ilora-seed0"), "--out", str(out), "--space", "both",
                 "--accuracy", "--points", "2", "--limit", "3", "--curve-steps", "2", "--grid", "2"]) == 0
    return root, out, json.loads((out / "report.json").read_text())


def test_both_spaces_give_both_barrier_matrices_in_the_json_and_on_the_page(wide):
    _, out, record = wide
    from modeconn.plots.kinds import load_result

    page = (out / "report.html").read_text()
    for run in record["runs"]:
        assert list(run["spaces"]) == ["factor", "delta"] and run["consecutive"] == run["spaces"]["factor"]
        for space, folder in (("factor", "sweep"), ("delta", "sweep-delta")):
            assert list(run["spaces"][space]) == ["linear", "bezier"]
            assert load_result(out / run["label"] / folder / "sweep.json").space == space
            assert f"Barriers between consecutive minima: {run['label']}, {space} space" in page
            assert json.loads((out / run["label"] / folder / "request.json").read_text())["space"] == space
    assert record["runs"][0]["spaces"]["factor"] != record["runs"][0]["spaces"]["delta"]  # measured, not copied


def test_accuracy_along_the_paths_is_in_the_json_and_on_the_page(wide):
    _, out, record = wide
    from modeconn.plots.kinds import load_result
    from modeconn.plots.sweep import accuracy_figure

    for run in record["runs"]:
        rows = run["along_paths"]["delta"]
        assert {(r["from"], r["to"], r["path"]) for r in rows} == {(a, b, p) for a, b in (("news", "gloss"), (
            "gloss", "fortune")) for p in ("linear", "bezier")}
        sweep = load_result(out / run["label"] / "sweep-delta" / "sweep.json")
        line = next(p.linear for p in sweep.pairs if p.a == 0)
        row = next(r for r in rows if r["from"] == "news" and r["path"] == "linear")
        assert row["news"]["accuracy"] == line.tasks["news"].accuracy and len(row["gloss"]["accuracy"]) == 2
        assert all(0 <= v <= 1 for v in row["news"]["accuracy"] + row["gloss"]["accuracy"])
    assert "Accuracy along the paths: ilora-seed0, delta space" in (out / "report.html").read_text()
    for pair in sweep.pairs:  # rank accuracy, where a task has choices, is drawn dashed beside the task metric
        pair.linear.tasks["gloss"].rank_accuracy = [0.5, 1.0]
    figure = accuracy_figure(sweep)
    dashed = [t.name for t in figure.data if t.line.dash == "dash"]
    assert dashed and set(dashed) == {"gloss rank acc."}
    assert len([t for t in figure.data if t.line.dash == "solid"]) == 2 * 2 * 2  # two tasks, two pairs, two paths


def test_the_plane_marks_the_slow_and_fast_learners_of_an_ilora_run(wide):
    root, out, record = wide
    from modeconn.plots.kinds import load_result

    b = record["largest_joint_gap_pair"][2]
    marks = record["plane_marks"]
    assert set(marks) == {"ilora-seed0 slow", "ilora-seed0 fast"}
    assert marks["ilora-seed0 slow"]["adapter"] == str(root / "ilora-seed0" / "slow" / b)
    plane = load_result(out / "plane" / "plane.json")
    assert plane.space == "factor" and plane.labels[3:] == list(marks)
    assert len(plane.points) == 5  # a, b, the third point, the two marks
    if record["largest_joint_gap_pair"][0] == "ilora-seed0":  # its evaluated adapters are the slow learner's
        assert marks["ilora-seed0 slow"]["off_plane"] == pytest.approx(0, abs=1e-6)
    page = (out / "report.html").read_text()
    assert "Marked: ilora-seed0 slow at (" in page
    assert ("placed in factor space, where a point depends" in page) == (record["largest_joint_gap_pair"][0] != "ilora-seed0")


def test_rank_ap_stands_beside_ap_where_a_run_records_it(tmp_path):
    from modeconn.continual.metrics import ContinualMetrics
    from modeconn.report.gather import ReportConfig, ReportResults, RunEntry
    from modeconn.report.page import write_run_report

    entries = []
    for name, rank in (("ranked", [[0.5, 0.25], [0.75, 1.0]]), ("plain", None)):
        m = ContinualMetrics(["a", "b"], [[0.5, 0.0], [0.25, 0.5]], [[1.0, 2.0], [1.5, 1.0]], [0.0, 0.0], [2.0, 2.0],
                             rank_accuracy=rank)
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m.to_json()))
        entries.append(RunEntry(name, tmp_path / name, m, reason="one task only: no pair to measure"))
    results = ReportResults(tmp_path, ReportConfig(), entries)
    assert [r["rank_AP"] for r in results.to_json()["runs"]] == [0.875, None]
    page = write_run_report(results).read_text()
    assert "<th>rank AP</th>" in page and "<td>0.875</td>" in page and "ranked: AP 0.375, rank AP 0.875" in page


def test_a_standard_cl_run_gets_rank_accuracy_along_its_paths_and_rank_ap_beside_ap(tmp_path):
    bench = tmp_path / "olora" / "CL_Benchmark"
    for family, task, labels in (("SC", "amazon", ["bad", "very good"]), ("TC", "agnews", ["World", "Sports"])):
        (bench / family / task).mkdir(parents=True)
        (bench / family / task / "labels.json").write_text(json.dumps(labels))
        rows = [{"sentence": f"{task} row {i}.", "label": labels[i % 2]} for i in range(12)]
        for split in ("train", "dev", "test"):
            (bench / family / task / f"{split}.json").write_text(json.dumps(rows if split == "train" else rows[:2]))
    (bench.parent / "configs").mkdir()
    (bench.parent / "configs" / "instruction_config.json").write_text(json.dumps(
        {f: [{"instruction_type": "zero-shot", "instruction": f"Task {f}. Choose one from the option.\n"}]
         for f in ("SC", "TC")}))
    run = tmp_path / "seq-seed0"
    assert main(["train", "--protocol", "standard-cl", "--tasks", str(bench.parent), "--order", "amazon,agnews",
                 "--base", "tiny-llama", "--max-train", "4", "--batch-size", "2", "--grad-accum", "1", "--rank", "4",
                 "--target-modules", "q_proj,v_proj", "--eval-limit", "2", "--max-length", "200", "--out", str(run)]) == 0
    out = tmp_path / "page"
    assert main(["report", str(run), "--out", str(out), "--accuracy", "--no-curves", "--points", "2",
                 "--limit", "2"]) == 0
    record = json.loads((out / "report.json").read_text())
    (row,) = record["runs"][0]["along_paths"]["factor"]
    for task in ("amazon", "agnews"):
        assert len(row[task]["rank_accuracy"]) == 2 and all(v in (0, 0.5, 1) for v in row[task]["rank_accuracy"])
        assert row[task]["metric"] == "olora_exact_match" and len(row[task]["accuracy"]) == 2
    rank_ap = json.loads((run / "metrics.json").read_text())["rank_AP"]
    assert rank_ap is not None and record["runs"][0]["rank_AP"] == rank_ap
    assert f"<td>{rank_ap:.3f}</td>" in (out / "report.html").read_text()
