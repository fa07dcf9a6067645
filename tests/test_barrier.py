"""Barrier metrics against hand-worked numbers."""
import pytest

from modeconn.barrier import (accuracy_drop, loss_barrier, max_endpoint_barrier, mean_endpoint_barrier,
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
