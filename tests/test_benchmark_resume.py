"""benchmarks/continual.py survives a stop: its process group killed while a run trains (before the run's first saved
state, and past it, mid-task), the same driver command finishes the experiment, restarting the first run and resuming
the second, with every number equal to an uninterrupted call's and each run's log holding every step once; a call on
finished runs runs nothing. Real training on the embedded base, two tasks, a few steps."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

STEPS_PER_TASK, STATE_EVERY = 12, 10  # 24 examples, batch 2; the first state is saved at step 10, mid-task
SEEDS = (100, 101)
TIMEOUT = 600  # overall, per wait: the machine may be loaded; nothing here waits a fixed time


def driver(work: Path) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "continual.py"), "select", "--methods", "er", "--lr-grid", "0.003",
            "--select-seeds", *map(str, SEEDS), "--tasks", "news", "gloss", "--max-train", str(2 * STEPS_PER_TASK),
            "--epochs", "1", "--batch-size", "2", "--eval-limit", "4", "--state-every", str(STATE_EVERY), "--jobs", "1",
            "--runs", str(work / "runs"), "--results", str(work / "results")]


def run_folder(work: Path, seed: int) -> Path:
    return work / "runs" / "one-budget" / "select-tiny-llama" / f"er-lr0.003-seed{seed}"


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def call(work: Path) -> list[dict]:
    """One driver call to its end; the run lines it printed."""
    (work / "results").mkdir(parents=True, exist_ok=True)
    done = subprocess.run(driver(work), env=ENV, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"run"')]


def logged_steps(out: Path) -> list[int]:
    steps = []
    try:
        lines = (out / "train_log.jsonl").read_text().splitlines()
    except OSError:
        return steps
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            break  # a line being written
    return steps


def saved_step(out: Path) -> int | None:
    try:
        return json.loads((out / ".state" / "state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):  # none yet, or being swapped in
        return None


def before_state(out: Path) -> bool:
    """Steps logged, no state saved yet."""
    return bool(logged_steps(out)) and saved_step(out) is None


def past_state(out: Path) -> bool:
    """A state saved, and steps logged past it."""
    saved = saved_step(out)
    return saved is not None and max(logged_steps(out), default=0) > saved


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def call_and_kill(work: Path, out: Path, ready) -> None:
    """Start a driver call in its own process group and kill the group (driver and its train process) as soon as
    ``ready(out)``; the run must not have finished by then."""
    (work / "results").mkdir(parents=True, exist_ok=True)
    with open(work / "killed.log", "a") as log:
        proc = subprocess.Popen(driver(work), env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ready(out):
            assert proc.poll() is None, f"the driver ended before the kill point: {(work / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, "no training progress within the timeout"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    while _group_alive(proc.pid):  # the train process, now init's, is gone once init has reaped it
        assert time.monotonic() < deadline, "the killed train process is still there"
        time.sleep(0.01)
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """An uninterrupted driver call, and the same command stopped twice and continued, then called once more."""
    reference, stopped = tmp_path_factory.mktemp("reference"), tmp_path_factory.mktemp("stopped")
    first, second = run_folder(stopped, SEEDS[0]), run_folder(stopped, SEEDS[1])
    calls = {"reference": call(reference)}
    call_and_kill(stopped, first, before_state)
    calls["before_state"] = {"log": logged_steps(first), "state": saved_step(first)}
    call_and_kill(stopped, second, past_state)
    calls["killed_output"] = (stopped / "killed.log").read_text()  # what both killed calls printed
    calls["past_state"] = {"log": logged_steps(second)}  # killed with steps past its saved state
    calls["resume"] = call(stopped)
    calls["again"] = call(stopped)
    return reference, stopped, calls


def comparable(out: Path) -> dict:
    """metrics.json without what differs between equal runs (wall times, the command with its --out)."""
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith("seconds_per_step") and k != "made_by"}


def test_a_stopped_experiment_continues_to_the_same_numbers(experiment):
    reference, stopped, calls = experiment
    assert calls["before_state"]["state"] is None and calls["before_state"]["log"]
    starts = {line["run"]: line["start"] for line in calls["resume"] if "start" in line}
    assert list(starts) == [f"er-lr0.003-seed{SEEDS[1]}"] and starts[f"er-lr0.003-seed{SEEDS[1]}"].startswith("resumed")
    resumed_from = int(starts[f"er-lr0.003-seed{SEEDS[1]}"].rsplit(" ", 1)[1])
    assert STATE_EVERY <= resumed_from <= max(calls["past_state"]["log"]) < 2 * STEPS_PER_TASK
    for seed in SEEDS:
        ours, theirs = run_folder(stopped, seed), run_folder(reference, seed)
        assert comparable(ours) == comparable(theirs)
        assert logged_steps(ours) == list(range(1, 2 * STEPS_PER_TASK + 1))
        mine = [json.loads(line) for line in (ours / "train_log.jsonl").read_text().splitlines()]
        ref = [json.loads(line) for line in (theirs / "train_log.jsonl").read_text().splitlines()]
        assert [(r["loss"], r["grad_norm"]) for r in mine] == [(r["loss"], r["grad_norm"]) for r in ref]
        assert not (ours / ".state").exists()
    selection = [json.loads((work / "results" / "continual.json").read_text())["bases"]["tiny-llama"]["selection"]["er"]
                 for work in (reference, stopped)]
    assert selection[0]["configs"] == selection[1]["configs"]


def test_a_run_stopped_before_its_first_state_restarts_and_is_then_taken_as_done(experiment):
    _, stopped, calls = experiment
    assert f'"run": "er-lr0.003-seed{SEEDS[0]}", "start": "restarted' in calls["killed_output"]
    made = json.loads((run_folder(stopped, SEEDS[0]) / "metrics.json").read_text())["made_by"]["command"]
    assert "--resume" not in made.split()  # restarted without it; still the same run for the driver


def test_a_call_on_finished_runs_runs_nothing(experiment):
    calls = experiment[2]
    assert calls["again"] == []
    assert not any(line.get("start") for line in calls["resume"] if line["run"].endswith(f"seed{SEEDS[0]}"))


def test_runs_kept_in_the_ledger_are_restored_and_taken_as_done(experiment, tmp_path):
    """A session that loses its runs folder keeps the ledger (benchmarks/continual_ledger.py): restored into the same
    path, every finished run is skipped again and the selection read from them is the same."""
    import shutil

    from benchmarks.continual_ledger import main as ledger

    reference = experiment[0]
    before = json.loads((reference / "results" / "continual.json").read_text())["bases"]["tiny-llama"]["selection"]
    ledger(["save", "--runs", str(reference / "runs"), "--ledger", str(tmp_path / "ledger")])
    kept = sorted(p.relative_to(tmp_path / "ledger").as_posix() for p in (tmp_path / "ledger").rglob("*")
                  if p.is_file())
    names = [f"one-budget/select-tiny-llama/er-lr0.003-seed{seed}" for seed in SEEDS]
    assert kept == sorted(f"{n}{end}" for n in names for end in (".seconds", "/metrics.json", "/sequence.json"))
    shutil.rmtree(reference / "runs")
    ledger(["restore", "--runs", str(reference / "runs"), "--ledger", str(tmp_path / "ledger")])
    assert call(reference) == []
    after = json.loads((reference / "results" / "continual.json").read_text())["bases"]["tiny-llama"]["selection"]
    assert after["er"]["configs"] == before["er"]["configs"] and after["er"]["seconds"] == before["er"]["seconds"]
