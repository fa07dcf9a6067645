"""Bézier curves: the midpoint control reproduces the straight line; fitting lowers the loss along the curve and
touches nothing but the control point; `modeconn curve` feeds `modeconn barrier --path bezier`."""
import json

import pytest
import torch

from modeconn.lora.adapters import load_adapter
from modeconn.analysis.bezier import CurveConfig, fit_bezier, midpoint
from modeconn.cli import main
from modeconn.evaluator.data import load_split
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.evaluator.models import checkpoints_dir, load_base
from modeconn.lora.paths import bezier_path, linear_path

SEQ, DATA = checkpoints_dir() / "seq", checkpoints_dir() / "data"
QUIET = EvalConfig(accuracy=False, progress=False)


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = load_base("tiny-llama")
    a, b = load_adapter(SEQ / "news"), load_adapter(SEQ / "gloss")
    tasks = {t: load_split(DATA / t, "train", 16) for t in ("news", "gloss")}
    return model, tokenizer, a, b, tasks


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_midpoint_control_gives_the_straight_line(setup, space):
    model, tokenizer, a, b, tasks = setup
    ts = [0.0, 0.3, 0.5, 1.0]
    line = evaluate_path(model, tokenizer, linear_path(a, b, space), ts, tasks, QUIET)
    curve = evaluate_path(model, tokenizer, bezier_path(a, midpoint(a, b, space), b, space), ts, tasks, QUIET)
    for name in tasks:
        assert curve.tasks[name].loss == pytest.approx(line.tasks[name].loss, abs=1e-5)


@pytest.mark.slow
def test_fitting_lowers_the_loss_along_the_curve_and_only_moves_the_control(setup):
    model, tokenizer, a, b, tasks = setup
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    train = [e for examples in tasks.values() for e in examples]
    fit = fit_bezier(model, tokenizer, a, b, train, "factor", CurveConfig(steps=40, batch_size=8, lr=1e-2), progress=False)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    ts = [0.25, 0.5, 0.75]
    line = evaluate_path(model, tokenizer, linear_path(a, b, "factor"), ts, tasks, QUIET)
    curve = evaluate_path(model, tokenizer, bezier_path(a, fit.control, b, "factor"), ts, tasks, QUIET)
    mean = lambda ev: sum(sum(c.loss) for c in ev.tasks.values()) / (len(ts) * len(tasks))  # noqa: E731
    assert mean(curve) < 0.8 * mean(line)
    ends = evaluate_path(model, tokenizer, bezier_path(a, fit.control, b, "factor"), [0.0, 1.0], tasks, QUIET)
    reference = evaluate_path(model, tokenizer, linear_path(a, b, "factor"), [0.0, 1.0], tasks, QUIET)
    for name in tasks:
        assert ends.tasks[name].loss == pytest.approx(reference.tasks[name].loss, abs=1e-5)


@pytest.mark.slow
def test_curve_cli_then_barrier_along_it(tmp_path, capsys):
    out = tmp_path / "curve"
    assert main(["curve", str(SEQ / "news"), str(SEQ / "gloss"), "--steps", "3", "--train-limit", "8", "--out", str(out)]) == 0
    meta = json.loads((out / "curve.json").read_text())
    assert meta["space"] == "factor" and len(meta["history"]) == 3
    assert load_adapter(out).rank(load_adapter(out).modules[0]) == 8
    assert main(["barrier", str(SEQ / "news"), str(SEQ / "gloss"), "--path", "bezier", "--control", str(out),
                 "--points", "3", "--limit", "4", "--no-accuracy", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "barrier.json").read_text())["path"] == "bezier"
    capsys.readouterr()
    assert main(["barrier", str(SEQ / "news"), str(SEQ / "gloss"), "--path", "bezier", "--control", str(out),
                 "--space", "delta", "--out", str(tmp_path / "c")]) == 2
    assert "fitted in factor space" in capsys.readouterr().err


def test_curve_refuses_an_out_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert main(["curve", str(SEQ / "news"), str(SEQ / "gloss"), "--steps", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds files modeconn did not write there (keep.txt)" in err[0]
    assert (tmp_path / "keep.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
