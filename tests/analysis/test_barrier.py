"""Barrier metrics against hand-worked numbers."""
import json

import numpy as np
import pytest

from modeconn.analysis.barrier import (accuracy_drop, loss_barrier, max_endpoint_barrier, mean_endpoint_barrier,
                              min_endpoint_accuracy_drop, task_barrier)

T = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_hand_worked_loss_curve():
    loss = [1.0, 2.0, 3.5, 2.5, 2.0]
    # straight line: 1.0, 1.25, 1.5, 1.75, 2.0 → excess 0, 0.75, 2.0, 0.75, 0
    assert loss_barrier(T, loss).value == pytest.approx(2.0) and loss_barrier(T, loss).t == 0.5
    assert mean_endpoint_barrier(T, loss).value == pytest.approx(3.5 - 1.5)
    assert max_endpoint_barrier(T, loss).value == pytest.approx(1.5)


def test_interpolation_relative_barrier_differs_from_endpoint_ones():
    loss = [0.5, 1.0, 1.6, 2.2, 2.6]  # monotone; line 0.5, 1.025, 1.55, 2.075, 2.6 → excess peaks 0.125 at t = .75
    b = loss_barrier(T, loss)
    assert b.value == pytest.approx(0.125) and b.t == 0.75
    assert max_endpoint_barrier(T, loss).value == pytest.approx(0.0)
    assert mean_endpoint_barrier(T, loss).value == pytest.approx(2.6 - 1.55)


def test_constant_curve_has_zero_barriers():
    tb = task_barrier(T, [1.3] * 5, [0.7] * 5, 10)
    assert tb.barrier == tb.barrier_max_endpoint == tb.barrier_mean_endpoint == 0.0
    assert tb.accuracy_drop == tb.accuracy_drop_min_endpoint == 0.0


def test_accuracy_drop():
    acc = [0.9, 0.6, 0.2, 0.5, 0.7]  # line: .9 .85 .8 .75 .7
    assert accuracy_drop(T, acc).value == pytest.approx(0.6) and accuracy_drop(T, acc).t == 0.5
    assert min_endpoint_accuracy_drop(T, acc).value == pytest.approx(0.5)


def test_needs_both_endpoints():
    with pytest.raises(ValueError):
        loss_barrier([0.0, 0.5], [1.0, 2.0])


def _synthetic(bump_at: float, height: float):
    """Two tasks on a path: a smooth bump of known height over the endpoint line, and a monotone curve."""
    from modeconn.evaluator.evaluate import TaskCurve

    calls = []

    def evaluate(ts):
        calls.append(list(ts))
        t = np.asarray(ts)
        bump = 0.2 + 0.3 * t + height * np.exp(-((t - bump_at) / 0.18) ** 2)
        return {"bumpy": TaskCurve(bump.tolist(), None, 10), "smooth": TaskCurve((1.0 - 0.5 * t**2).tolist(), None, 10)}

    return evaluate, calls


@pytest.mark.parametrize("bump_at", [0.12, 0.31, 0.5, 0.83])
def test_adaptive_search_finds_the_barrier_within_one_percent_with_half_the_points(bump_at):
    from modeconn.analysis.search import SearchConfig, adaptive_evaluation

    evaluate, calls = _synthetic(bump_at, 0.4)
    dense = np.linspace(0, 1, 2001)
    truth = loss_barrier(dense, evaluate(dense.tolist())["bumpy"].loss).value
    grid = loss_barrier(np.linspace(0, 1, 21), evaluate(np.linspace(0, 1, 21).tolist())["bumpy"].loss).value
    calls.clear()
    found = adaptive_evaluation(evaluate, SearchConfig())
    value = loss_barrier(found.t, found.tasks["bumpy"].loss).value
    assert abs(value - truth) <= 0.01 * truth and abs(value - truth) <= abs(grid - truth) + 0.005 * truth
    assert len(found.t) <= 10 and sum(len(c) for c in calls) == len(found.t)
    assert found.t == sorted(found.t) and found.t[0] == 0.0 and found.t[-1] == 1.0


def test_a_barrier_result_records_and_round_trips_what_made_it(tmp_path, capsys):
    """Settings, versions and the command travel with barrier.json and come back from it."""
    from modeconn.analysis.measure import measure_barrier
    from modeconn.cli import main
    from modeconn.analysis.settings import StudySettings
    from modeconn.evaluator.models import checkpoints_dir
    from modeconn.plots.kinds import load_result
    from modeconn.provenance import PYTHON_CALL

    seq = checkpoints_dir() / "seq"
    result = measure_barrier([str(seq / "news"), str(seq / "gloss")],
                             StudySettings(limit=4, seed=5, accuracy=False, progress=False), space="delta", points=3)
    settings = result.made_by["settings"]
    assert {k: settings[k] for k in ("space", "points", "split", "limit", "max_length", "dtype", "max_batch_tokens", "seed")} == \
        {"space": "delta", "points": 3, "split": "eval", "limit": 4, "max_length": 256, "dtype": "float32",
         "max_batch_tokens": 4096, "seed": 5}
    assert set(result.made_by["versions"]) == {"modeconn", "torch", "transformers", "peft"}
    assert result.made_by["command"] == PYTHON_CALL
    (tmp_path / "barrier.json").write_text(result.dumps())
    assert load_result(tmp_path / "barrier.json").made_by == json.loads(result.dumps())["made_by"]

    args = ["barrier", str(seq / "news"), str(seq / "gloss"), "--points", "2", "--limit", "2", "--no-accuracy",
            "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    assert load_result(tmp_path / "cli" / "barrier.json").made_by["command"] == "modeconn " + " ".join(args)
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "cli" / "barrier.json")]) == 0
    printed = capsys.readouterr().out
    assert "made by: modeconn barrier" in printed and "points 2" in printed and "limit 2" in printed
