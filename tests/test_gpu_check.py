"""`bash benchmarks/gpu_check.sh --dry-run`: every step of the GPU check at toy size on the CPU, in an environment of
the GPU image's packages and the carried wheels only, so that a missing import or a wrong path shows here and not in
a lent GPU minute."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["environment", "equivalence", "path_eval", "device_map", "ilora_step"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="the GPU check is a bash script")
def test_gpu_check_dry_run_passes_every_step(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MODECONN_TEST_DEVICE")}
    env["RESULTS"] = str(tmp_path)
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    if done.returncode == 3:  # the venv or the wheels need a package index that is not reachable here
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(name, "ok") for name in STEPS]
    assert summary["results"]["gpu_env.json"]["versions"]["datasets"]  # from the carried wheel, not an installed one
    assert summary["results"]["path_eval_cpu_toy_bf16.json"]["cases"][0]["losses_agree"]
