"""benchmarks/continual.py's selection bookkeeping on fake runs (no training): one lr grid and seed set for every
method, at most 3 own-option values, the winner's interior check and the grid's extension, the schema it writes into
continual.json, the controlled pair, and that finished runs are skipped and foreign ones refused."""
import importlib.util
import json
import math
import shlex
import shutil
import subprocess
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
        return 0.2 + 0.05 * math.log10(lr / 3e-4) + 0.01 * float(flag(cmd, "--ema") or 0.9) + 0.01 * (seed % 100)
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


# the driver's options besides the run sizes, as its command line leaves them by default
EMBEDDED = {"protocol": "embedded", "order": None, "precision": None, "max_length": None, "state_every": None,
            "grad_accum": None, "own": "searched", "dry_run": False}


@pytest.fixture()
def driver(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    record = json.loads((ROOT / "benchmarks" / "results" / "continual.json").read_text())  # the committed results,
    for entry in record["bases"].values():  # without their selection: select starts afresh on the fake runs
        for key in ("selection", "selection_settings"):
            entry.pop(key, None)
    (results / "continual.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench, "RESULTS", results)
    fake = FakeRuns()
    monkeypatch.setattr(bench, "run_all", fake)
    monkeypatch.setattr(sys, "argv", ["continual.py", "select"])
    args = Namespace(base="tiny-llama", tasks=["news", "gloss"], data=tmp_path / "data", max_train=8, epochs=1,
                     batch_size=4, eval_limit=4, seeds=[0, 1, 2], methods=["er", "ilora", "agem"], select_seeds=[100, 101],
                     selection="tiny-llama", runs=tmp_path / "runs", jobs=1, lr_grid=None, sgd_lr_grid=None, variants=["er", "ilora"],
                     **EMBEDDED)
    return args, fake, results


def test_select_writes_every_configuration_the_winner_and_whether_it_is_interior(driver):
    args, fake, results = driver
    bench.select(args)
    record = json.loads((results / "continual.json").read_text())
    base = record["bases"]["tiny-llama"]
    committed = json.loads((ROOT / "benchmarks" / "results" / "continual.json").read_text())["bases"]["tiny-llama"]
    assert "comparison" in base and {k: v for k, v in base.items() if not k.startswith("selection")} == \
        {k: v for k, v in committed.items() if not k.startswith("selection")}  # the committed results stay
    selection = base["selection"]
    assert set(selection) == {"er", "ilora", "agem"}
    for entry in selection.values():
        assert {"configs", "seeds", "selected", "lr_grid", "interior"} <= set(entry)
        assert entry["lr_grid"] == sel.LR_GRIDS[entry["optimizer"]] and entry["seeds"] == [100, 101]
        assert all(len(c["eval_AP"]) == 2 for c in entry["configs"])
    assert len(selection["er"]["configs"]) == len(sel.LR_GRID) and len(selection["ilora"]["configs"]) == 3 * len(sel.LR_GRID)
    er = selection["er"]
    assert er["selected"]["lr"] == 1e-3 and er["interior"] and er["edge"] is None
    best = next(c for c in er["configs"] if c["lr"] == 1e-3)
    assert best["eval_AP"] == pytest.approx([0.50, 0.51]) and er["selected"]["eval_AP_mean"] == pytest.approx(0.505)
    ilora = selection["ilora"]
    assert ilora["selected"] == {"lr": 1e-2, "ema": 0.99, "eval_AP_mean": pytest.approx(ilora["selected"]["eval_AP_mean"])}
    assert not ilora["interior"] and ilora["edge"] == "high"
    # A-GEM trains with SGD: its own grid, of as many points (SGD's lr is not AdamW's step size)
    assert selection["agem"]["optimizer"] == "sgd" and selection["agem"]["lr_grid"] == [1e-2, 3e-2, 1e-1, 3e-1]
    assert selection["agem"]["flat"] and selection["agem"]["selected"]["lr"] == 1e-2
    settings = base["selection_settings"]
    # ilora's edge grows the AdamW grid; the SGD grid grows by one point too (its only method is flat: upward)
    assert settings["next_lr_grid"] == {"adamw": sel.LR_GRID + [3e-2], "sgd": [1e-2, 3e-2, 1e-1, 3e-1, 1.0]}
    assert any("ilora" in n for n in settings["edges"]) and any(n.startswith("sgd: adds lr 1") for n in settings["edges"])
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
    assert len(fake.made) - before == 2 * (1 + 3 + 1)  # only the new lrs (3e-2; SGD 1) were run; the rest skipped
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
    assert bench.settings_of(selection, "agem") == ("agem", {"optimizer": "sgd"}, 1e-2)  # the SGD grid's bottom
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
    assert not controlled["ilora_runs_are_the_report's"]


def test_the_controlled_pair_reuses_ilora_s_report_runs_when_its_lr_is_er_s(driver):
    args, fake, results = driver
    bench.select(args)
    record = json.loads((results / "continual.json").read_text())
    record["bases"]["tiny-llama"]["selection"]["ilora"]["selected"]["lr"] = 1e-3  # as er's
    (results / "continual.json").write_text(json.dumps(record))
    bench.report(args)
    made = len(fake.made)
    bench.controlled(args)
    assert len(fake.made) == made  # every run of the pair is a finished report run
    controlled = json.loads((results / "continual.json").read_text())["bases"]["tiny-llama"]["controlled"]
    assert controlled["ilora_runs_are_the_report's"] and controlled["lr"] == controlled["ilora_selected_lr"] == 1e-3
    assert controlled["comparison"]["groups"]["ilora"]["seeds"] == [0, 1, 2]
    assert not (args.runs / "one-budget" / "controlled-tiny-llama").exists()


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
    assert sel.next_grid([3.0, 10.0], {"a": sel.summarize([{"lr": 10.0, "eval_AP": [1, 1]}, {"lr": 3.0, "eval_AP": [0, 0]}],
                                                            [1, 2], [3.0, 10.0])})[0] == [3.0, 10.0]  # past LR_BOUNDS


def test_commands_skip_finished_runs_and_resume_interrupted_ones(tmp_path):
    args = Namespace(data=tmp_path, tasks=["news"], base="tiny-llama", epochs=1, batch_size=4, max_train=8, eval_limit=4,
                     **EMBEDDED)
    cmd = bench.train_args(args, "gem", {"optimizer": "sgd", "margin": 0.5}, 1e-3, 0, "eval", tmp_path / "r", "r")
    assert "--resume" in cmd and flag(cmd, "--optimizer") == "sgd" and flag(cmd, "--gem-margin") == "0.5"
    assert shlex.split(bench.recorded_command(cmd))[:2] == ["modeconn", "train"]
    assert not bench.finished(cmd, tmp_path / "r")


def test_summary_reads_committed_results_and_keeps_what_select_stored(driver):
    args, fake, results = driver
    committed = ROOT / "benchmarks" / "results" / "previous-protocol"  # the earlier protocol's, all of them at 8 seeds
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


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # the fake scores' paired differences are constant
def test_the_standard_cl_stream_has_its_own_runs_results_and_entry(driver):
    args, fake, results = driver
    args.__dict__.update(protocol="standard-cl", order="order1", base="smollm2-135m", data=Path("/data/cl"),
                         precision="auto", selection=None)
    embedded = json.loads((results / "continual.json").read_text())["bases"]
    bench.select(args)
    assert {out.parent.name for _, out in fake.made} == {"select-smollm2-135m_standard-cl-order1"}
    cmd = fake.made[0][0]
    assert (flag(cmd, "--protocol"), flag(cmd, "--order"), flag(cmd, "--tasks"), flag(cmd, "--precision"),
            flag(cmd, "--rank")) == ("standard-cl", "order1", "/data/cl", "auto", "8")
    assert flag(cmd, "--state-every") is None and flag(cmd, "--max-length") is None
    # more seeds for some variants: a second report call adds them to the same comparison
    bench.report(args)
    args.variants, args.seeds = ["er", "ilora"], [3, 4]
    bench.report(args)
    args.seeds = [0, 1, 2, 3, 4]
    bench.controlled(args)
    record = json.loads((results / "continual.json").read_text())
    stream = record["bases"]["smollm2-135m"]["streams"]["standard-cl-order1"]
    assert set(stream) == {"selection", "selection_settings", "memory", "controlled"}
    assert {k: v for k, v in record["bases"]["smollm2-135m"].items() if k != "streams"} == embedded["smollm2-135m"]
    assert record["bases"]["tiny-llama"] == embedded["tiny-llama"]
    folder = results / "continual_smollm2-135m_standard-cl-order1"
    groups = json.loads((folder / "compare.json").read_text())["groups"]
    assert {label: len(g["seeds"]) for label, g in groups.items()} == {"er": 5, "ilora": 5}
    assert (results / "controlled_smollm2-135m_standard-cl-order1" / "compare.json").is_file()
    bench.summary(args)
    summed = json.loads((results / "continual.json").read_text())["bases"]["smollm2-135m"]["streams"]["standard-cl-order1"]
    assert {"selection", "memory", "comparison", "controlled"} <= set(summed)
    assert "## smollm2-135m, standard-cl-order1" in (results / "continual.md").read_text()


def test_a_dry_run_prints_each_command_and_what_it_would_do_and_runs_nothing(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "continual.py"), "select", "--protocol", "standard-cl", "--order",
           "agnews,amazon", "--data", str(tmp_path / "cl"), "--base", "smollm2-135m", "--methods", "er",
           "--lr-grid", "0.001", "--runs", str(runs), "--results", str(results), "--dry-run"]
    folder = runs / "one-budget" / "select-smollm2-135m_standard-cl-agnews+amazon"
    (folder / "er-lr0.001-seed100" / ".state").mkdir(parents=True)
    (folder / "er-lr0.001-seed100" / ".state" / "state.json").write_text(json.dumps({"global_step": 7}))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# er-lr0.001-seed100: resumed from step 7" and lines[2] == "# er-lr0.001-seed101: started"
    assert shlex.split(lines[3])[3:9] == ["train", "--protocol", "standard-cl", "--method", "er", "--tasks"]
    assert flag(shlex.split(lines[3]), "--order") == "agnews,amazon"
    assert not results.exists() and not (folder / "er-lr0.001-seed101").exists()
    refused = subprocess.run([*cmd[:3], "--protocol", "standard-cl", "--dry-run"], capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode == 2 and "needs --order and --data" in refused.stderr


def test_unfinished_runs_resume_or_restart_and_finished_ones_match_without_resume(tmp_path):
    runs = sys.modules["benchmarks.continual_runs"]
    cmd = ["python", "-m", "modeconn", "train", "--out", str(tmp_path), "--resume"]
    assert runs.start_of(cmd, tmp_path) == ("started", cmd)
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "task": "a"}\n')
    how, again = runs.start_of(cmd, tmp_path)
    assert how.startswith("restarted") and again == cmd[:-1]
    (tmp_path / "metrics.json").write_text(json.dumps({"made_by": {"command": runs.recorded_command(again)}}))
    assert runs.finished(cmd, tmp_path)


def test_each_optimizer_has_its_grid_and_every_grid_as_many_points():
    adamw = {"lr_grid": [1e-3, 3e-3, 1e-2], "seeds": [100, 101], "own": {}}
    sgd = {**adamw, "lr_grid": [1e-2, 3e-2, 1e-1], "optimizer": "sgd"}
    sel.check_budget({"er": adamw, "gem": sgd, "agem": sgd})
    with pytest.raises(sel.BudgetError, match="every sgd method needs the same lr grid"):
        sel.check_budget({"er": adamw, "gem": sgd, "agem": {**sgd, "lr_grid": [3e-2, 1e-1, 3e-1]}})
    with pytest.raises(sel.BudgetError, match="same number of points"):
        sel.check_budget({"er": adamw, "gem": {**sgd, "lr_grid": [1e-2, 3e-2, 1e-1, 3e-1]}})


def test_a_grown_grid_grows_the_others_on_the_side_their_winners_lean_to():
    grids = {"adamw": [3e-4, 1e-3, 3e-3, 1e-2], "sgd": [1e-2, 3e-2, 1e-1, 3e-1]}

    def entry(optimizer, lr, grid):
        return {**sel.summarize([{"lr": x, "eval_AP": [1.0 if x == lr else 0.0] * 2} for x in grid], [1, 2], grid),
                "optimizer": optimizer}

    # an AdamW winner on the low edge adds 1e-4; the SGD winner sits one point from its grid's bottom, two from its
    # top: the SGD grid grows downward
    out, notes = sel.next_grids(grids, {"er": entry("adamw", 3e-4, grids["adamw"]),
                                        "gem": entry("sgd", 3e-2, grids["sgd"])})
    assert out == {"adamw": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "sgd": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1]}
    assert any("er" in n and "(adamw)" in n for n in notes) and any(n.startswith("sgd: adds lr 0.003") for n in notes)
    # both interior: nothing grows
    assert sel.next_grids(grids, {"er": entry("adamw", 1e-3, grids["adamw"]),
                                  "gem": entry("sgd", 3e-2, grids["sgd"])}) == (grids, [])
    # an older record's single grid is AdamW's
    assert sel.grids_of([1e-3, 3e-3])["adamw"] == [1e-3, 3e-3] and sel.grids_of(None) == sel.LR_GRIDS


def test_own_default_searches_only_the_lr_and_grad_accum_goes_into_each_command(driver):
    """``--own default``: every method at its defaults, the lr grid × the seeds and nothing else (ilora's λ_max is not
    searched); ``--grad-accum`` reaches every run's command (left out of it unless given)."""
    args, fake, results = driver
    args.own, args.grad_accum, args.methods = "default", 1, ["er", "ilora"]
    bench.select(args)
    grid = bench.LR_GRIDS["adamw"]
    assert len(fake.made) == 2 * len(grid) * 2
    assert all("--ema" not in cmd and flag(cmd, "--grad-accum") == "1" for cmd, _ in fake.made)
    selection = json.loads((results / "continual.json").read_text())["bases"]["tiny-llama"]["selection"]
    assert [len(selection[m]["configs"]) for m in ("er", "ilora")] == [len(grid)] * 2
    assert set(selection["ilora"]["selected"]) == {"lr", "eval_AP_mean"}


def test_the_markdown_table_has_rank_columns_only_where_runs_record_rank(tmp_path):
    from benchmarks.continual_tables import comparison_lines
    from modeconn.continual.compare import compare, read_runs
    from tests.continual.test_compare import fake_run

    for seed in (0, 1):
        fake_run(tmp_path / "a" / f"er-seed{seed}", f"er-seed{seed}", 0.4, -0.1, seed, rank_AP=0.5 + 0.1 * seed)
        fake_run(tmp_path / "a" / f"seq-seed{seed}", f"seq-seed{seed}", 0.2, -0.3, seed, "seq", rank_AP=0.4)
        fake_run(tmp_path / "b" / f"er-seed{seed}", f"er-seed{seed}", 0.4, -0.1, seed)
    ranked = comparison_lines(compare(read_runs([str(tmp_path / "a")])).to_json(), None)
    assert "rank AP − er (paired)" in ranked[0] and ranked[0].count("|") == ranked[1].count("|") == 12
    seq = next(line for line in ranked if line.startswith("| seq "))
    assert "| 0.400 [0.400, 0.400] PI [0.400, 0.400] | -0.150 [" in seq  # rank AP 0.4 twice; paired 0.4 − (0.5, 0.6)
    plain = comparison_lines(compare(read_runs([str(tmp_path / "b")])).to_json(), None)
    assert "rank AP" not in plain[0] and plain[0].count("|") == 10
