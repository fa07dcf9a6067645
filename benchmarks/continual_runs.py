"""The continual benchmark's runs as processes: which are done, how each left unfinished starts again (resumed from its
saved state, or restarted when it was stopped before its first one), and running them side by side, or printing them.

A run is finished when its metrics.json records this very command; ``--resume`` is left out of that comparison, since
a run stopped before its first saved state is restarted without it (`modeconn train --resume` refuses a folder whose
log has steps but no state: it would start over into the same log)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

STATE = ".state"
LOG = "train_log.jsonl"


def recorded_command(cmd: list[str]) -> str:
    """What a run made by ``cmd`` records as its command (``made_by.command`` of its metrics.json)."""
    return shlex.join(["modeconn", *cmd[3:]])


def _same(made: str | None, cmd: list[str]) -> bool:
    if made is None:
        return False
    return [a for a in shlex.split(made) if a != "--resume"] == [a for a in shlex.split(recorded_command(cmd))
                                                                  if a != "--resume"]


def finished(cmd: list[str], out: Path) -> bool:
    """The run is done, and by this very command; a run finished by another command is refused, never reused."""
    if not (out / "metrics.json").is_file():
        return False
    made = json.loads((out / "metrics.json").read_text()).get("made_by", {}).get("command")
    if not _same(made, cmd):
        sys.exit(f"continual.py: {out} was finished by another command ({made}); remove it, or pass another --runs")
    return True


def start_of(cmd: list[str], out: Path) -> tuple[str, list[str]]:
    """How an unfinished run starts and the command that starts it: ``resumed from step N`` (its saved state),
    ``restarted`` (steps logged, no state yet: run again without --resume, its log starts over) or ``started``."""
    state = out / STATE / "state.json"
    if state.is_file():
        return f"resumed from step {json.loads(state.read_text())['global_step']}", cmd
    log = out / LOG
    if log.is_file() and log.read_text(errors="replace").strip():
        return "restarted (stopped before its first saved state)", [a for a in cmd if a != "--resume"]
    return "started", cmd


def show(jobs: list[tuple[list[str], Path]]) -> None:
    """--dry-run: each run's command and what running it would do, nothing started."""
    for cmd, out in jobs:
        how, cmd = ("done", cmd) if finished(cmd, out) else start_of(cmd, out)
        print(f"# {out.name}: {how}\n{shlex.join(cmd)}", flush=True)


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the train commands, ``parallel`` at a time, each a single-thread process; skip finished ones, resume or
    restart unfinished ones (a line says which). Each run's wall time goes to ``<run>.seconds`` beside its log (the
    attempt that finished it); its log keeps every attempt. Exits if any run failed."""
    todo = [(cmd, out) for cmd, out in jobs if not finished(cmd, out)]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    running: list[tuple[subprocess.Popen, Path, float]] = []
    failed = []
    while todo or running:
        while todo and len(running) < parallel:
            cmd, out = todo.pop(0)
            how, cmd = start_of(cmd, out)
            print(json.dumps({"run": out.name, "start": how}), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out.parent / f"{out.name}.log", "a") as log:
                running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), out, time.time()))
        time.sleep(0.5)
        for entry in list(running):
            proc, out, started = entry
            if proc.poll() is not None:
                running.remove(entry)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode}; see {out}.log)"
                seconds = round(time.time() - started, 1)
                if proc.returncode == 0:
                    (out.parent / f"{out.name}.seconds").write_text(f"{seconds}\n")
                else:
                    failed.append(out.name)
                print(json.dumps({"run": out.name, "status": status, "seconds": seconds}), flush=True)
    if failed:
        sys.exit(f"continual.py: {len(failed)} runs failed ({', '.join(failed)}); rerun the same command to resume them")
