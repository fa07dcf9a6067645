"""Two CPU processes under `accelerate launch`: the world size really is 2 and both ranks end with the same weights."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeconn.evaluator.models import checkpoints_dir


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="accelerate CLI missing")
@pytest.mark.parametrize("method", ["ilora", "ewc"])  # the slow adapter and the replay buffers; the Fisher penalty
def test_two_process_run(tmp_path, method):
    launcher = Path(sys.executable).parent / "accelerate"
    # `--cpu --num_processes 2` silently runs one process; this form gives DistributedType.MULTI_CPU
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", "29531", "-m", "modeconn", "train", "--method", method,
           "--tasks", str(checkpoints_dir() / "seq"), "--order", "news,gloss", "--max-train", "16", "--epochs", "1",
           "--batch-size", "8", "--rank", "4", "--target-modules", "q_proj,v_proj", "--eval-limit", "6",
           *(["--buffer-size", "8"] if method == "ilora" else []), "--out", str(tmp_path / "run")]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["ranks_in_sync"] is True  # every adapter identical on both ranks
    assert all(0.0 <= a <= 1.0 for row in metrics["accuracy"] for a in row) and len(metrics["accuracy"]) == 2
    for sub in ("news", "gloss") + (("slow/news", "fast/gloss") if method == "ilora" else ()):
        assert (tmp_path / "run" / sub / "adapter_model.safetensors").is_file()
    assert proc.stdout.count("AP ") == 1  # only the main process reports
