"""The report's best point per path: the t where the worse of a consecutive pair's two accuracies is highest."""
from types import SimpleNamespace as NS

import pytest

from modeconn.analysis.sweep import KEEPS, PairResult, best_points


def path(t, a, b, rank=False):
    field = "rank_accuracy" if rank else "accuracy"
    task = lambda s: NS(**{field: s, ("accuracy" if rank else "rank_accuracy"): None})  # noqa: E731
    return NS(t=t, tasks={"news": task(a), "gloss": task(b)})


def sweep(paths: dict):
    return NS(pairs=[PairResult(0, 1, paths)], tasks=["news", "gloss"], paths=lambda: list(paths))


def test_the_best_point_is_where_the_worse_task_is_highest_by_hand():
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    # news: 0.8 at its minimum (t=0); gloss 0.9 at its own (t=1); min over the two: .1 .4 .6 .5 .2 -> t = 0.5
    line = path(t, [0.8, 0.78, 0.76, 0.6, 0.3], [0.1, 0.4, 0.6, 0.5, 0.9])
    curve = path(t, [0.8, 0.79, 0.78, 0.77, 0.3], [0.1, 0.5, 0.88, 0.89, 0.9])
    out = {row["path"]: row for row in best_points(sweep({"linear": line, "bezier": curve}))}
    assert out["linear"]["t"] == 0.5 and out["linear"]["at"] == (0.76, 0.6)
    assert out["linear"]["endpoints"] == (0.8, 0.9) and not out["linear"]["keeps_both"]  # gloss lost 0.3 > KEEPS
    assert out["bezier"]["t"] == 0.5 and out["bezier"]["at"] == (0.78, 0.88)  # min .78 beats .77 at t = 0.75
    assert out["bezier"]["keeps_both"] and 0.8 - 0.78 <= KEEPS and out["bezier"]["by"] == "accuracy"


def test_ties_go_to_the_point_nearest_the_middle_and_rank_accuracy_stands_in():
    t = [0.0, 0.25, 0.5, 0.75, 1.0]
    flat = path(t, [0.5] * 5, [0.5] * 5, rank=True)
    (row,) = best_points(sweep({"linear": flat}))
    assert row["t"] == 0.5 and row["by"] == "rank accuracy" and row["keeps_both"]


def test_both_definitions_give_their_own_rows_where_both_were_scored():
    t = [0.0, 0.5, 1.0]
    both = path(t, [0.8, 0.6, 0.2], [0.1, 0.6, 0.9])
    both.tasks["news"].rank_accuracy, both.tasks["gloss"].rank_accuracy = [0.9, 0.88, 0.5], [0.5, 0.86, 0.9]
    rows = best_points(sweep({"linear": both}))
    assert [r["by"] for r in rows] == ["accuracy", "rank accuracy"]
    assert rows[0]["at"] == (0.6, 0.6) and not rows[0]["keeps_both"]  # exact match loses 0.2 and 0.3
    assert rows[1]["at"] == (0.88, 0.86) and rows[1]["keeps_both"]  # rank keeps both within 0.05


@pytest.mark.parametrize("missing", ["accuracy", "task"])
def test_a_pair_without_accuracy_gives_no_row(missing):
    t = [0.0, 1.0]
    unscored = path(t, None, None)
    if missing == "task":
        unscored.tasks.pop("gloss")
    assert best_points(sweep({"linear": unscored})) == []
