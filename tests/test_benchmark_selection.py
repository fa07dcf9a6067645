"""benchmarks/continual.py's selection bookkeeping on fake runs (no training): one lr grid and seed set for every
method, at most 3 own-option values, the winner's interior check and the grid's extension, the schema it writes into
continual.json, the controlled pair, and that finished runs are skipped and foreign ones refused."""
import importlib.util
import json
import math
import shlex
import shutil
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("bench_continual", "continual.py")
sel = sys.modules["benchmarks.continual_selection"]


def flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def fake_score(cmd) -> float:
    """er peaks inside the grid (lr 1e-3), ilora climbs to the grid's top (an edge), agem learns nothing (flat)."""
    method, lr, seed = flag(cmd, "--method"), float(flag(cmd, "--lr")), int(flag(cmd, "--seed"))
    if method == "er":
        return 0.5 - 0.1 * abs(math.log10(lr) + 3) + 0.01 * (seed % 100)
    if method == "ilora":
        return 0.2 + 0.05 * math.log10(lr / 3e-4) + 0.01 * float(flag(cmd, "--ema")) + 0.01 * (seed % 100)
    return 0.0


class FakeRuns:
    """Stands in for run_all: writes what a finished run leaves (metrics.json with its command, sequence.json)."""

    def __init__(self):
        self.made = []

    def __call__(self, jobs, parallel):
        for cmd, out in jobs:
            if bench.finished(cmd, out):
                continue
            out.mkdir(parents=True)
            seed = int(flag(cmd, "--seed"))
            (out / "sequence.json").write_text(json.dumps({"name": flag(cmd, "--name"), "tasks": []}))
            ap = fake_score(cmd)
            (out / "metrics.json").write_text(json.dumps({
                "kind": "continual_metrics", "method": flag(cmd, "--method"), "AP": ap, "BWT": -0.1,
                "accuracy": [[ap, 0.0], [ap, ap]],
                "FWT": None, "memory_examples": 20 if "--buffer-fraction" in cmd else None,
                "made_by": {"command": bench.recorded_command(cmd), "settings": {"config": {"seed": seed}}}}))
            self.made.append((cmd, out))


@pytest.fixture()
def driver(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(ROOT / "benchmarks" / "results" / "continual.json", results / "continual.json")  # today's, kept
    monkeypatch.setattr(bench, "RESULTS", results)
    fake = FakeRuns()
    monkeypatch.setattr(bench, "run_all", fake)
    monkeypatch.setattr(sys, "argv", ["continual.py", "select"])
    args = Namespace(base="tiny-llama", tasks=["news", "gloss"], data=tmp_path / "data", max_train=8, epochs=1,
                     batch_size=4, eval_limit=4, seeds=[0, 1, 2], methods=["er", "ilora", "agem"], select_seeds=[100, 101],
                     selection="tiny-llama", runs=tmp_path / "runs", jobs=1, lr_grid=None, variants=["er", "ilora"])
    return args, fake, results


def test_select_writes_every_configuration_the_winner_and_whether_it_is_interior(driver):
    args, fake, results = driver
    bench.select(args)
    record = json.loads((results / "continual.json").read_text())
    base = record["bases"]["tiny-llama"]
    assert "comparison" in base and "ablations" in base  # today's committed results stay
    selection = base["selection"]
    assert set(selection) == {"er", "ilora", "agem"}
    for entry in selection.values():
        assert {"configs", "seeds", "selected", "lr_grid", "interior"} <= set(entry)
        assert entry["lr_grid"] == sel.LR_GRID and entry["seeds"] == [100, 101]
        assert all(len(c["eval_AP"]) == 2 for c in entry["configs"])
    assert len(selection["er"]["configs"]) == len(sel.LR_GRID) and len(selection["ilora"]["configs"]) == 3 * len(sel.LR_GRID)
    er = selection["er"]
    assert er["selected"]["lr"] == 1e-3 and er["interior"] and er["edge"] is None
    best = next(c for c in er["configs"] if c["lr"] == 1e-3)
    assert best["eval_AP"] == pytest.approx([0.50, 0.51]) and er["selected"]["eval_AP_mean"] == pytest.approx(0.505)
    ilora = selection["ilora"]
    assert ilora["selected"] == {"lr": 1e-2, "ema": 0.99, "eval_AP_mean": pytest.approx(ilora["selected"]["eval_AP_mean"])}
    assert not ilora["interior"] and ilora["edge"] == "high"
    assert selection["agem"]["flat"] and selection["agem"]["selected"]["lr"] == min(sel.LR_GRID)
    settings = base["selection_settings"]
    assert settings["next_lr_grid"] == sel.LR_GRID + [3e-2] and any("ilora" in n for n in settings["edges"])
    agem_cmds = [cmd for cmd, _ in fake.made if flag(cmd, "--method") == "agem"]
    assert all(flag(c, "--optimizer") == "sgd" and flag(c, "--buffer-fraction") for c in agem_cmds)
    assert len(fake.made) == 2 * (4 + 12 + 4)

    # the grid grew: a select run for er alone would leave ilora and agem on the old grid, and is refused
    args.methods = ["er"]
    with pytest.raises(SystemExit, match="same lr grid"):
        bench.select(args)
    args.methods = ["er", "ilora", "agem"]
    before = len(fake.made)
    bench.select(args)
    assert len(fake.made) - before == 2 * (1 + 3 + 1)  # only the new lr 3e-2 was run; the rest were skipped
    selection = json.loads((results / "continual.json").read_text())["bases"]["tiny-llama"]["selection"]
    assert selection["ilora"]["lr_grid"] == sel.LR_GRID + [3e-2] and selection["er"]["interior"]


def test_a_finished_run_of_another_command_is_refused_not_reused(driver):
    args, fake, results = driver
    args.methods = ["er"]
    bench.select(args)
    out = fake.made[0][1]
    record = json.loads((out / "metrics.json").read_text())
    record["made_by"]["command"] += " --epochs 9"
    (out / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="finished by another command"):
        bench.select(args)


def test_report_and_the_controlled_pair_use_the_selected_settings(driver):
    args, fake, results = driver
    bench.select(args)
    selection = bench.stored_selection("tiny-llama")
    assert bench.settings_of(selection, "agem") == ("agem", {"optimizer": "sgd"}, 3e-4)
    assert bench.settings_of(selection, "ilora-gamma0") == ("ilora", {"ema": 0.99, "gamma": 0.0}, 1e-2)
    bench.report(args)
    base = json.loads((results / "continual.json").read_text())["bases"]["tiny-llama"]
    assert base["memory"] == {"er": 20, "ilora": 20}
    main = json.loads((results / "continual_tiny-llama" / "compare.json").read_text())
    assert main["primary"] == "ilora" and main["made_by"]["settings"]["primary"] == "ilora"
    bench.controlled(args)
    er_runs = [cmd for cmd, _ in fake.made if flag(cmd, "--eval-split") == "test" and flag(cmd, "--method") == "er"]
    assert len(er_runs) == 3  # the controlled pair reuses the report's er runs
    controlled = json.loads((results / "continual.json").read_text())["bases"]["tiny-llama"]["controlled"]
    assert controlled["lr"] == 1e-3 and controlled["ilora_selected_lr"] == 1e-2 and controlled["seeds"] == [0, 1, 2]
    ilora_runs = [cmd for cmd, out in fake.made if out.parent.name == "controlled-tiny-llama"]
    assert len(ilora_runs) == 3 and all(flag(c, "--lr") == "0.001" and flag(c, "--ema") == "0.99" for c in ilora_runs)
    comparison = controlled["comparison"]
    assert comparison["primary"] == "ilora" and comparison["groups"]["er"]["seeds"] == [0, 1, 2]
    assert (results / "controlled_tiny-llama" / "compare.png").is_file()


def test_the_budget_check_refuses_unequal_budgets():
    plan = {"lr_grid": [1e-3, 3e-3, 1e-2], "seeds": [100, 101], "own": {}}
    sel.check_budget({"er": plan, "ewc": {**plan, "own": {"ewc_lambda": [1e3, 1e4, 1e5]}}})
    for other, says in [({**plan, "lr_grid": [1e-3, 3e-3]}, "same lr grid"), ({**plan, "seeds": [100]}, "same selection seeds"),
                        ({**plan, "own": {"ema": [0.9, 0.95, 0.99, 0.995]}}, "at most 3"),
                        ({**plan, "own": {"ema": [0.9], "gamma": [1.0]}}, "at most one option"),
                        ({**plan, "own": {"lr": [1e-1]}}, "besides lr")]:
        with pytest.raises(sel.BudgetError, match=says):
            sel.check_budget({"er": plan, "x": other})
    with pytest.raises(sel.BudgetError, match="two different seeds"):
        sel.check_budget({"er": {**plan, "seeds": [100, 100]}})
    assert all(len(v) <= sel.MAX_OWN and len(own) == 1 for own in bench.OWN.values() for v in own.values())


def test_edges_extend_the_grid_and_ties_go_to_the_smaller_lr():
    grid = [3e-4, 1e-3, 3e-3, 1e-2]
    low = sel.summarize([{"lr": lr, "eval_AP": [1.0 - lr, 1.0 - lr]} for lr in grid], [1, 2], grid)
    assert low["edge"] == "low" and not low["interior"]
    tie = sel.summarize([{"lr": lr, "eval_AP": [0.3 if lr in (1e-3, 3e-3) else 0.1] * 2} for lr in grid], [1, 2], grid)
    assert tie["selected"]["lr"] == 1e-3 and tie["interior"] and not tie["flat"]
    flat = sel.summarize([{"lr": lr, "eval_AP": [0.0, 0.0]} for lr in grid], [1, 2], grid)
    assert flat["flat"] and sel.next_grid(grid, {"l2p": flat}) == (grid, [])
    extended, notes = sel.next_grid(grid, {"a": low})
    assert extended == [1e-4] + grid and "low edge" in notes[0]
    assert sel._beyond(1e-2, True) == 3e-2 and sel._beyond(3e-2, True) == 1e-1 and sel._beyond(1e-4, False) == 3e-5
    assert sel.next_grid([1.0, 3.0], {"a": sel.summarize([{"lr": 3.0, "eval_AP": [1, 1]}, {"lr": 1.0, "eval_AP": [0, 0]}],
                                                          [1, 2], [1.0, 3.0])})[0] == [1.0, 3.0]  # past LR_BOUNDS


def test_commands_skip_finished_runs_and_resume_interrupted_ones(tmp_path):
    args = Namespace(data=tmp_path, tasks=["news"], base="tiny-llama", epochs=1, batch_size=4, max_train=8, eval_limit=4)
    cmd = bench.train_args(args, "gem", {"optimizer": "sgd", "margin": 0.5}, 1e-3, 0, "eval", tmp_path / "r", "r")
    assert "--resume" in cmd and flag(cmd, "--optimizer") == "sgd" and flag(cmd, "--gem-margin") == "0.5"
    assert shlex.split(bench.recorded_command(cmd))[:2] == ["modeconn", "train"]
    assert not bench.finished(cmd, tmp_path / "r")


def test_summary_reads_todays_results_and_keeps_what_select_stored(driver):
    args, fake, results = driver
    committed = ROOT / "benchmarks" / "results"
    for name in ("continual_tiny-llama/compare.json", "continual_tiny-llama/seconds.json",
                 "continual_tiny-llama/commands.txt", "ablations_tiny-llama/compare.json", "selection_tiny-llama.json"):
        (results / name).parent.mkdir(exist_ok=True)
        shutil.copy(committed / name, results / name)
    args.methods = ["er"]
    bench.select(args)
    bench.summary(args)
    record = json.loads((results / "continual.json").read_text())
    base = record["bases"]["tiny-llama"]
    assert base["comparison"]["groups"]["er"]["seeds"] == list(range(8)) and base["selection"]["er"]["interior"]
    assert record["selection"]["tiny-llama"]["er"]["lr"] == 1e-3  # the earlier protocol's choice, still readable
    text = (results / "continual.md").read_text()
    assert "| ilora | 8 |" in text and "one budget" in text and "before the one-budget protocol" in text
