"""Analyses over several processes: `accelerate launch -m modeconn barrier|sweep` on two CPU processes (gloo) shares
the points (barrier) or the pairs (sweep), gathers them on the main process, which alone writes, and gives the same
JSON as one process. The launch is the README's."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeconn.cli import main
from helpers import free_port
from modeconn.evaluator.models import checkpoints_dir

SEQ = checkpoints_dir() / "seq"
LAUNCHER = Path(sys.executable).parent / "accelerate"


def launch(args: list[str], port: int) -> subprocess.CompletedProcess:
    # `--cpu --num_processes 2` silently runs one process; this form gives two gloo processes on CPUs
    cmd = [str(LAUNCHER), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "modeconn", *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def numbers(record: dict) -> dict:
    """The result without what legitimately differs between the runs: its provenance."""
    record = {k: v for k, v in record.items() if k != "made_by"}
    for pair in record.get("pairs", []):
        for path in ("linear", "bezier"):
            if pair.get(path):
                pair[path].pop("made_by", None)
    return record


def assert_close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-6), path
    else:
        assert a == b, path


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(LAUNCHER.parent)) is None, reason="accelerate CLI missing")
@pytest.mark.parametrize("command,args,stem", [
    ("barrier", [str(SEQ / "news"), str(SEQ / "gloss"), "--points", "5", "--limit", "6"], "barrier"),
    ("sweep", [str(SEQ), "--pairs", "consecutive", "--points", "3", "--limit", "4"], "sweep"),
])
def test_two_processes_give_the_one_process_result(tmp_path, command, args, stem):
    proc = launch([command, *args, "--out", str(tmp_path / "two")], free_port())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([command, *args, "--out", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "two" / f"{stem}.json").read_text())
    one = json.loads((tmp_path / "one" / f"{stem}.json").read_text())
    assert two["made_by"]["settings"]["processes"] == 2 and one["made_by"]["settings"]["processes"] == 1
    assert_close(numbers(one), numbers(two))
    assert proc.stdout.count("wrote ") == 1  # only the main process reports and writes
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [".modeconn.owned.json", f"{stem}.html", f"{stem}.json", f"{stem}.png"]
