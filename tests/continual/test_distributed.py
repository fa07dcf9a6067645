"""Two CPU processes under `accelerate launch`: the world size really is 2 and both ranks end with the same weights."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import free_port
from modeconn.evaluator.models import checkpoints_dir


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="accelerate CLI missing")
# the slow adapter and the replay buffers; the Fisher penalty; O-LoRA's frozen past adapter added after DDP wraps
@pytest.mark.parametrize("method", ["ilora", "ewc", "olora"])
def test_two_process_run(tmp_path, method):
    launcher = Path(sys.executable).parent / "accelerate"
    # the shipped config (`--cpu --num_processes 2` silently runs one process): DistributedType.MULTI_CPU
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu_2_processes.yaml"
    cmd = [str(launcher), "launch", "--config_file", str(config), "--main_process_port", str(free_port()), "-m", "modeconn",
           "train", "--method", method,
           "--tasks", str(checkpoints_dir() / "seq"), "--order", "news,gloss", "--max-train", "16", "--epochs", "1",
           "--batch-size", "8", "--rank", "4", "--target-modules", "q_proj,v_proj", "--eval-limit", "6",
           *(["--buffer-size", "8"] if method == "ilora" else []), "--out", str(tmp_path / "run")]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["made_by"]["settings"]["engine"] == "MULTI_CPU"
    assert metrics["ranks_in_sync"] is True  # every adapter identical on both ranks
    assert all(0.0 <= a <= 1.0 for row in metrics["accuracy"] for a in row) and len(metrics["accuracy"]) == 2
    for sub in ("news", "gloss") + (("slow/news", "fast/gloss") if method == "ilora" else ()):
        assert (tmp_path / "run" / sub / "adapter_model.safetensors").is_file()
    assert proc.stdout.count("AP ") == 1  # only the main process reports


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="accelerate CLI missing")
def test_prompt_methods_refuse_several_processes_in_one_line(tmp_path):
    launcher = Path(sys.executable).parent / "accelerate"
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu_2_processes.yaml"
    cmd = [str(launcher), "launch", "--config_file", str(config), "--main_process_port", str(free_port()), "-m", "modeconn",
           "train", "--method", "pp", "--tasks", str(checkpoints_dir() / "seq"), "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode != 0
    # each rank's one line (the launcher adds its own report of the failed processes)
    assert proc.stderr.count("modeconn: error: method pp trains in one process") == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None, reason="accelerate CLI missing")
def test_two_process_stop_and_resume_equals_an_uninterrupted_two_process_run(tmp_path):
    """Each process's replay buffer and RNG are saved and restored: the resumed run ends with the same adapters."""
    from safetensors.torch import load_file

    launcher = Path(sys.executable).parent / "accelerate"
    base = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "modeconn", "train", "--method", "ilora",
            "--tasks", str(checkpoints_dir() / "seq"), "--order", "news,gloss", "--max-train", "16", "--epochs", "1",
            "--batch-size", "4", "--rank", "4", "--target-modules", "q_proj,v_proj", "--eval-limit", "4",
            "--buffer-size", "8", "--resume"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    def run(*extra):
        port = ["--main_process_port", str(free_port())]
        return subprocess.run(base[:2] + port + base[2:] + list(extra), capture_output=True, text=True, env=env, timeout=600)

    whole = run("--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    part = run("--out", str(tmp_path / "part"), "--stop-after-steps", "6")  # 4 steps per task: stops inside task 2
    assert part.returncode == 0 and (tmp_path / "part" / ".state").is_dir(), part.stderr[-3000:]
    state = json.loads((tmp_path / "part" / ".state" / "state.json").read_text())
    assert len(state["method_meta"]) == 2  # both processes' buffers
    again = run("--out", str(tmp_path / "part"))
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "part"))
    assert a["accuracy"] == b["accuracy"] and b["world_size"] == 2
    for task in ("news", "gloss"):
        x = load_file(tmp_path / "whole" / task / "adapter_model.safetensors")
        y = load_file(tmp_path / "part" / task / "adapter_model.safetensors")
        assert all(torch.allclose(x[k], y[k], atol=1e-6) for k in x)
