"""`modeconn compare` on hand-made run folders: groups by NAME-seedN, means with t-intervals and prediction intervals,
paired differences with Holm-adjusted p-values (against a hand computation), records checked before use."""
import json
import math

import pytest

from modeconn.cli import main
from modeconn.continual.compare import compare, read_runs
from modeconn.continual.compare_check import NOT_LEARNED


def fake_run(folder, name, ap, bwt, seed, method="er", **extra):
    folder.mkdir(parents=True)
    (folder / "sequence.json").write_text(json.dumps({"name": name, "base_model": "x", "tasks": []}))
    (folder / "metrics.json").write_text(json.dumps({"kind": "continual_metrics", "method": method, "AP": ap, "BWT": bwt,
                                                      "FWT": None, "made_by": {"settings": {"config": {"seed": seed}}},
                                                      **extra}))


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
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")) == [
        "compare.html", "compare.json", "compare.png"]
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["paired"]["ilora"]["AP"]["n"] == 2
    assert main(["plot", str(tmp_path / "c" / "compare.json")]) == 0
    capsys.readouterr()
    assert main(["compare", str(runs), "--baseline", "seq", "--out", str(tmp_path / "d")]) == 2
    assert "no runs of the baseline 'seq'" in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.slow
def test_mtl_is_one_joint_run_over_every_task(tmp_path):
    from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
    from modeconn.evaluator.models import checkpoints_dir

    data = checkpoints_dir() / "data"
    config = TrainConfig(rank=4, alpha=8, dropout=0.0, target_modules=("q_proj",), epochs=2, batch_size=8, max_train=8)
    run = train_sequence(TrainRequest("tiny-llama", [("news", data / "news"), ("gloss", data / "gloss")],
                                      get_method("mtl"), config, eval_limit=2),
                         tmp_path / "mtl", progress=False)
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


# a small fixed table: AP per seed 0..3 of the baseline and three methods
TABLE = {"er": [0.30, 0.35, 0.32, 0.40], "ilora": [0.36, 0.38, 0.40, 0.45], "seq": [0.10, 0.12, 0.09, 0.15],
         "one": [0.31, 0.37, 0.31, 0.43]}


def hand_holm(p):
    """Holm by hand: sort, multiply the k-th smallest (from 0) by m − k, carry the running maximum, cap at 1."""
    labels = sorted(p, key=p.get)
    out, top = {}, 0.0
    for k, label in enumerate(labels):
        top = max(top, min(1.0, (len(p) - k) * p[label]))
        out[label] = top
    return out


def hand_t(values):
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    q = t.ppf(0.975, n - 1)
    return mean, q * s / math.sqrt(n), q * s * math.sqrt(1 + 1 / n), mean / (s / math.sqrt(n)), n - 1


@pytest.fixture()
def table_runs(tmp_path):
    for label, aps in TABLE.items():
        for seed, ap in enumerate(aps):
            fake_run(tmp_path / "t" / f"{label}-seed{seed}", f"{label}-seed{seed}", ap, -0.1 + 0.01 * seed, seed, label)
    return read_runs([str(tmp_path / "t")])


@pytest.mark.parametrize("primary", [None, "ilora"])
def test_prediction_intervals_and_holm_against_a_hand_computation(table_runs, primary):
    from scipy.stats import t

    result = compare(table_runs, baseline="er", primary=primary, seed=3, resamples=999)
    mean, ci, pi, _, _ = hand_t(TABLE["one"])
    entry = result.summary["one"]["AP"]
    assert (entry["mean"], entry["low"], entry["high"]) == pytest.approx((mean, mean - ci, mean + ci))
    assert (entry["pi_low"], entry["pi_high"]) == pytest.approx((mean - pi, mean + pi))
    p = {}
    for label in ("ilora", "seq", "one"):
        diffs = [a - b for a, b in zip(TABLE[label], TABLE["er"])]
        mean, ci, pi, tstat, df = hand_t(diffs)
        entry = result.paired[label]["AP"]
        assert (entry["low"], entry["high"], entry["pi_low"], entry["pi_high"]) == pytest.approx(
            (mean - ci, mean + ci, mean - pi, mean + pi))
        p[label] = 2 * t.sf(abs(tstat), df)
        assert entry["p"] == pytest.approx(p[label])
    family = {k: v for k, v in p.items() if k != primary}
    expected = hand_holm(family)
    assert set(result.holm) == set(family) and result.primary == primary
    assert {k: v["p_holm"] for k, v in result.holm.items()} == pytest.approx(expected)
    assert {k: v["survives"] for k, v in result.holm.items()} == {k: v < 0.05 for k, v in expected.items()}
    assert "PI [" in result.table() and "p_holm" in result.table()


def test_paired_bootstrap_is_a_reproducible_bca_cross_check_and_the_json_records_what_made_it(table_runs, tmp_path):
    a = compare(table_runs, baseline="er", seed=5, resamples=999)
    b = compare(table_runs, baseline="er", seed=5, resamples=999)
    entry = a.paired["ilora"]["AP"]
    assert entry["boot_low"] == b.paired["ilora"]["AP"]["boot_low"] and entry["boot_low"] < entry["mean"] < entry["boot_high"]
    assert abs(entry["boot_low"] - entry["low"]) < 0.05  # the two 95% intervals agree roughly on this table
    made = a.made_by
    assert made["settings"]["seed"] == 5 and made["settings"]["primary"] is None and "scipy" in made["versions"]
    assert main(["compare", str(tmp_path / "t"), "--primary", "ilora", "--seed", "2", "--out", str(tmp_path / "c")]) == 0
    written = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert written["made_by"]["command"].startswith("modeconn compare") and written["made_by"]["settings"]["seed"] == 2
    assert written["primary"] == "ilora" and "ilora" not in written["holm"]
    assert written["paired"]["seq"]["AP"]["boot_high"] is not None


def test_a_method_that_learned_no_task_is_shown_greyed_unranked_without_bwt(tmp_path, capsys):
    from types import SimpleNamespace

    import modeconn.plots.compare as plot
    from modeconn.report.page import _comparison

    for seed in range(3):
        fake_run(tmp_path / "r" / f"er-seed{seed}", f"er-seed{seed}", 0.3 + 0.01 * seed, -0.1, seed, learned=[True, True])
        fake_run(tmp_path / "r" / f"l2p-seed{seed}", f"l2p-seed{seed}", 0.0, 0.0, seed, "l2p", learned=[False, False])
        fake_run(tmp_path / "r" / f"one-seed{seed}", f"one-seed{seed}", 0.4 - 0.02 * seed, -0.2, seed, "one",
                 learned=[False, True])
    fake_run(tmp_path / "r" / "seq-seed0", "seq-seed0", 0.0, 0.0, 0, "seq", learned=[False, False])
    fake_run(tmp_path / "r" / "seq-seed1", "seq-seed1", 0.0, 0.0, 1, "seq")  # one seed says nothing: not marked
    result = compare(read_runs([str(tmp_path / "r")]), baseline="er")
    assert result.not_learned == ["l2p"] and "l2p" not in result.holm and "one" in result.holm
    table = result.table()
    row = next(line for line in table.splitlines() if line.split()[1:2] == ["l2p"])
    assert row.split()[0] == "—" and NOT_LEARNED in row and "-0.000" not in row and "+0.000 [" not in row.split(NOT_LEARNED)[1]
    assert table.splitlines()[2].split()[:2] == ["1", "one"]
    assert plot.row_order(result)[-1] == "l2p" and "l2p" not in [label for _, label, _ in plot.forest_rows(result, "BWT")]
    assert plot.compare_figure(result).layout.yaxis.categoryarray[-1] == f"l2p ({NOT_LEARNED})"
    section = _comparison(SimpleNamespace(comparison=result))
    assert f"<tr style='color:#999'><td>l2p ({NOT_LEARNED})</td>" in section.table
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["not_learned"] == ["l2p"]


@pytest.mark.parametrize("field, value, says", [
    ("AP", True, "not a number"), ("AP", "high", "not a number"), ("AP", 1.5, "outside"), ("BWT", float("nan"), "not a number"),
    ("seed", 1.5, "not a whole number"), ("seed", -1, "not a whole number"), ("seed", True, "not a whole number"),
    ("accuracy", [["0.5", "0.4"]], "not a number"), ("accuracy", [0.5, 0.4], "list of rows"),
    ("learned", ["yes"], "learned"), ("made_by", [], "made_by"), ("record", [1, 2], "JSON object"),
    ("method_record", [1], "method_record"), ("method_record", {"other_learner": {"learner": "fast", "accuracy": [["x"]]}},
                                              "not a number"),
])
def test_compare_refuses_a_malformed_record_in_one_line_before_writing(runs, tmp_path, capsys, field, value, says):
    target = runs / "er-seed0" / "metrics.json"
    record = json.loads(target.read_text())
    if field == "seed":
        record["made_by"]["settings"]["config"]["seed"] = value
    elif field == "record":
        record = value
    else:
        record[field] = value
    target.write_text(json.dumps(record))
    assert main(["compare", str(runs), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and says in err and "er-seed0" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("edit", [
    lambda d: d["groups"]["er"].__setitem__("AP", ["x", 0.5]),
    lambda d: d["groups"]["er"].__setitem__("AP", [0.5]),
    lambda d: d["summary"]["er"].__setitem__("AP", {"mean": "high"}),
    lambda d: d["paired"]["ilora"]["AP"].__setitem__("low", [1]),
    lambda d: d.__setitem__("baseline", "nobody"),
    lambda d: d.__setitem__("holm", {"ilora": {"p": "small"}}),
    lambda d: d.__setitem__("groups", [1]),
])
def test_plot_refuses_a_malformed_compare_json_in_one_line(runs, tmp_path, capsys, edit):
    data = compare(read_runs([str(runs)]), baseline="er", resamples=99).to_json()
    edit(data)
    (tmp_path / "c").mkdir()
    target = tmp_path / "c" / "compare.json"
    target.write_text(json.dumps(data))
    assert main(["plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "malformed comparison" in err
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["compare.json"]


def test_a_primary_that_names_no_group_is_refused(runs, tmp_path, capsys):
    assert main(["compare", str(runs), "--primary", "er", "--out", str(tmp_path / "c")]) == 2
    assert "--primary 'er' names no compared group" in capsys.readouterr().err
    assert main(["compare", str(runs), "--primary", "mtl", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists()


def test_the_second_learner_is_judged_learned_or_not_from_its_own_matrix(runs, tmp_path):
    from types import SimpleNamespace

    from modeconn.report.page import _learned_nothing

    for seed in (0, 1):
        fake_run(runs / f"sure-seed{seed}", f"sure-seed{seed}", 0.5, -0.1, seed, "sure", tasks=["a", "b"],
                 accuracy=[[0.5, 0.0], [0.4, 0.6]], initial_accuracy=[0.0, 0.0], eval_examples=[100, 100],
                 learned=[True, True], method_record={"other_learner": {"learner": "fast",
                                                                        "accuracy": [[0.0, 0.0], [0.0, 0.0]]}})
    result = compare(read_runs([str(runs)]), baseline="er")
    assert result.not_learned == ["sure:fast"] and result.groups["sure:fast"]["learned"] == [[False, False]] * 2
    assert "sure" not in result.not_learned and "sure:fast" not in result.holm
    fake_run(tmp_path / "l2p", "l2p-seed0", 0.0, 0.0, 0, "l2p", learned=[False, False])
    assert _learned_nothing(SimpleNamespace(metrics=object(), folder=tmp_path / "l2p"))
    assert not _learned_nothing(SimpleNamespace(metrics=object(), folder=runs / "sure-seed0"))
    assert not _learned_nothing(SimpleNamespace(metrics=object(), folder=runs / "er-seed0"))  # unknown: not marked


def test_learned_is_recomputed_from_a_runs_rank_matrices(runs, tmp_path):
    """A run recorded with exact-match verdicts (true: the base scored 0) whose rank accuracy never left the base's is
    judged by rank on reading: it learned nothing; its second learner too, from its own rank rows."""
    from types import SimpleNamespace

    from modeconn.report.page import _learned_nothing

    chance = {"tasks": ["a", "b"], "initial_accuracy": [0.0, 0.0], "eval_examples": [64, 64],
              "initial_rank_accuracy": [0.5, 0.5], "rank_accuracy": [[0.5, 0.5], [0.5, 0.5]]}
    for seed in (0, 1):
        fake_run(runs / f"l2p-seed{seed}", f"l2p-seed{seed}", 0.5, 0.0, seed, "l2p", accuracy=[[0.5, 0.0], [0.5, 0.5]],
                 learned=[True, True], **chance)
        fake_run(runs / f"sure-seed{seed}", f"sure-seed{seed}", 0.6, 0.0, seed, "sure", accuracy=[[0.7, 0.0], [0.6, 0.7]],
                 learned=[True, True], **{**chance, "rank_accuracy": [[0.7, 0.5], [0.6, 0.7]]},
                 method_record={"other_learner": {"learner": "fast", "accuracy": [[0.5, 0.0], [0.5, 0.5]],
                                                  "rank_accuracy": [[0.5, 0.5], [0.5, 0.5]]}})
    result = compare(read_runs([str(runs)]), baseline="er")
    assert result.not_learned == ["l2p", "sure:fast"] and result.groups["l2p"]["learned"] == [[False, False]] * 2
    assert result.groups["sure"]["learned"] == [[True, True]] * 2
    assert _learned_nothing(SimpleNamespace(metrics=object(), folder=runs / "l2p-seed0"))
    assert not _learned_nothing(SimpleNamespace(metrics=object(), folder=runs / "sure-seed0"))


def test_rank_ap_is_summarised_and_paired_where_runs_record_it(tmp_path):
    """rank_AP and rank_BWT from metrics.json get the same means, intervals and paired differences as AP (by hand);
    a group without them has none, and a compare.json written before they were kept still reads."""
    from modeconn.continual.compare import Comparison

    for seed, (er, il) in enumerate([(0.5, 0.7), (0.6, 0.7)]):
        fake_run(tmp_path / f"er-seed{seed}", f"er-seed{seed}", 0.4, -0.1, seed, rank_AP=er, rank_BWT=-0.2)
        fake_run(tmp_path / f"ilora-seed{seed}", f"ilora-seed{seed}", 0.5, -0.1, seed, "ilora", rank_AP=il,
                 rank_BWT=-0.1)
        fake_run(tmp_path / f"seq-seed{seed}", f"seq-seed{seed}", 0.2, -0.3, seed, "seq")
    result = compare(read_runs([str(tmp_path)]), baseline="er")
    assert result.summary["er"]["rank_AP"]["mean"] == pytest.approx(0.55)
    paired = result.paired["ilora"]["rank_AP"]  # differences 0.2, 0.1: mean 0.15, s 0.0707, t(0.975, 1) 12.706
    assert paired["mean"] == pytest.approx(0.15) and paired["high"] == pytest.approx(0.15 + 12.7062 * 0.070711 / 2**0.5,
                                                                                    rel=1e-4)
    assert result.paired["ilora"]["rank_BWT"]["mean"] == pytest.approx(0.1)
    assert result.summary["seq"]["rank_AP"] is None and result.paired["seq"]["rank_AP"] is None
    assert "rank_AP" not in result.holm.get("ilora", {})  # the Holm family is AP's alone
    assert "by rank classification" in result.table() and "+0.150 [" in result.table()
    old = result.to_json()
    for group in old["groups"].values():
        del group["rank_AP"], group["rank_BWT"]
    for table in ("summary", "paired"):
        for measures in old[table].values():
            measures.pop("rank_AP", None), measures.pop("rank_BWT", None)
    assert "by rank classification" not in Comparison.from_fields(
        {k: v for k, v in old.items() if k != "kind"}).table()
