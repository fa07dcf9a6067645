"""`modeconn barrier` end to end on the embedded default, and every bad input: one line, exit code 2, nothing written."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir

SEQ = checkpoints_dir() / "seq"
A, B = str(SEQ / "news"), str(SEQ / "gloss")
FAST = ["--points", "3", "--limit", "8"]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(args, capsys, out_dir, match):
    capsys.readouterr()
    code, _, err = run(args + ["--out", str(out_dir)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modeconn: error:"), err
    assert "Traceback" not in err
    assert match in lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.slow
def test_barrier_on_the_first_two_embedded_tasks(tmp_path, capsys):
    code, out, err = run(["barrier", A, B, *FAST, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".modeconn.owned.json", "barrier.html", "barrier.json", "barrier.png"]
    result = json.loads((tmp_path / "barrier.json").read_text())
    assert result["path"] == "linear" and result["space"] == "factor" and result["t"] == [0.0, 0.5, 1.0]
    assert set(result["tasks"]) == {"news", "gloss"}
    for task in result["tasks"].values():
        assert {"loss", "accuracy", "barrier", "barrier_t", "barrier_max_endpoint"} <= set(task)
        assert len(task["loss"]) == len(task["accuracy"]) == 3
    assert result["adapters"] == [A, B] and result["base_model"] == "tiny-llama"
    assert "barrier" in out and "news" in out
    assert (tmp_path / "barrier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in (tmp_path / "barrier.html").read_text()[:200000]


@pytest.mark.slow
def test_barrier_with_data_file_in_delta_space_and_json(tmp_path, capsys):
    data = checkpoints_dir() / "data" / "fortune" / "eval.json"
    code, out, _ = run(["barrier", A, B, "--data", str(data), "--no-manifest-data", "--space", "delta", "--points", "2",
                        "--limit", "4", "--no-accuracy", "--json", "--out", str(tmp_path)], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["space"] == "delta" and list(result["tasks"]) == ["fortune"]
    assert result["tasks"]["fortune"]["accuracy"] is None


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "modeconn", "barrier", str(tmp_path / "missing"), B, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such adapter folder" in proc.stderr


def test_missing_path(tmp_path, capsys):
    assert_refused(["barrier", str(tmp_path / "nope"), B], capsys, tmp_path / "out", "no such adapter folder")


def test_not_an_adapter(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert_refused(["barrier", str(tmp_path / "folder"), B], capsys, tmp_path / "out", "not a peft adapter folder")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_different_base_models(tmp_path, capsys):
    other = _copy(A, tmp_path / "other")
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "someone/other-model"
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    assert_refused(["barrier", str(other), B], capsys, tmp_path / "out", "different base models")


def _peft_adapter(folder, **lora):
    from peft import LoraConfig, get_peft_model

    from modeconn.evaluator.models import load_base

    model, _ = load_base("tiny-llama")
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **lora))
    peft_model.peft_config["default"].base_model_name_or_path = "tiny-llama"  # as the embedded adapters name it
    peft_model.save_pretrained(folder, save_embedding_layers=False)
    return str(folder)


def test_different_target_modules(tmp_path, capsys):
    other = _peft_adapter(tmp_path / "qv", r=8, target_modules=["q_proj", "v_proj"])
    assert_refused(["barrier", other, B], capsys, tmp_path / "out", "different modules")


def test_factor_space_with_different_ranks_suggests_delta(tmp_path, capsys):
    cfg = json.loads((SEQ / "news" / "adapter_config.json").read_text())
    other = _peft_adapter(tmp_path / "r4", r=4, target_modules=cfg["target_modules"])
    assert_refused(["barrier", other, B], capsys, tmp_path / "out", "--space delta")


def test_pickle_adapter_without_allow_pickle(tmp_path, capsys):
    other = _copy(A, tmp_path / "bin")
    torch.save(load_file(other / "adapter_model.safetensors"), other / "adapter_model.bin")
    (other / "adapter_model.safetensors").unlink()
    assert_refused(["barrier", str(other), B], capsys, tmp_path / "out", "--allow-pickle")


def test_nan_weights(tmp_path, capsys):
    other = _copy(A, tmp_path / "nan")
    tensors = load_file(other / "adapter_model.safetensors")
    next(iter(tensors.values()))[0, 0] = float("nan")
    save_file(tensors, other / "adapter_model.safetensors")
    assert_refused(["barrier", str(other), B], capsys, tmp_path / "out", "non-finite")


@pytest.mark.parametrize("content,match", [("", "empty"), ("{not json", "not readable"), ('[{"question": "x"}]', "lack"),
                                           ("[]", "no records")])
def test_bad_data_file(tmp_path, capsys, content, match):
    data = tmp_path / "task.json"
    data.write_text(content)
    assert_refused(["barrier", A, B, "--data", str(data)], capsys, tmp_path / "out", match)


def test_one_point_is_refused(tmp_path, capsys):
    assert_refused(["barrier", A, B, "--points", "1"], capsys, tmp_path / "out", "--points")


def test_unknown_option_is_one_line(tmp_path, capsys):
    assert_refused(["barrier", A, B, "--bogus"], capsys, tmp_path / "out", "--bogus")
