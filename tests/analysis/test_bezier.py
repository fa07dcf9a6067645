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


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_a_step_in_chunks_of_few_tokens_fits_the_same_curve_as_in_one_pass(setup, space):
    """The step's gradient is the sum of its chunks' (each chunk's backward before the next, so one chunk's
    activations are held): a 24-token budget, one sequence per chunk, fits what one pass of all 16 × 3 fits."""
    model, tokenizer, a, b, tasks = setup
    train = [e for examples in tasks.values() for e in examples]
    fits = [fit_bezier(model, tokenizer, a, b, train, space,
                       CurveConfig(steps=5, batch_size=16, points_per_step=3, max_batch_tokens=budget), progress=False)
            for budget in (None, 24)]
    assert fits[1].history == pytest.approx(fits[0].history, rel=1e-5)
    start = midpoint(a, b, space)  # where both fits began
    flat = lambda w: torch.cat([t.flatten() for m in sorted(w.factors) for t in w.factors[m]])  # noqa: E731
    moved, apart = flat(fits[0].control) - flat(start), flat(fits[1].control) - flat(fits[0].control)
    # float32 sums in another order move a near-zero gradient's Adam step a little; a chunk lost or counted twice
    # would move the point by a sizeable share of its whole path
    assert apart.norm() < 1e-3 * moved.norm(), (apart.norm(), moved.norm())
    assert fits[0].history[-1] < fits[0].history[0]


def test_one_chunk_per_sequence_is_what_a_tiny_budget_gives():
    from modeconn.evaluator.budget import batches
    from modeconn.evaluator.data import Encoded

    items = [Encoded((1,) * n, 1) for n in (5, 9, 7)]
    assert list(batches(items, lambda e: len(e.ids), 3, 1)) == [[0], [2], [1]]  # each alone, shortest first
    assert list(batches(items, lambda e: len(e.ids), 3, 3 * 2 * 9)) == [[0, 2], [1]]


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
