"""`modeconn train` end to end on a tiny slice of the embedded sequence, and its bad input."""
import json

import pytest
import torch

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir

SEQ = str(checkpoints_dir() / "seq")
DATA = checkpoints_dir() / "data"
TINY = ["--order", "news,gloss", "--max-train", "16", "--epochs", "1", "--batch-size", "8", "--rank", "4",
        "--target-modules", "q_proj,v_proj", "--eval-limit", "6", "--seed", "1"]


def refused(args, capsys, match):
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("modeconn: error:") and match in err[0], err


@pytest.mark.slow
def test_train_ilora_writes_adapters_metrics_and_both_learners(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--method", "ilora", "--tasks", SEQ, "--out", str(out), "--buffer-size", "8", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "AP" in printed and "BWT" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ilora" and metrics["tasks"] == ["news", "gloss"]
    assert len(metrics["accuracy"]) == 2 and all(len(r) == 2 for r in metrics["accuracy"])
    assert metrics["BWT"] == pytest.approx(metrics["accuracy"][1][0] - metrics["accuracy"][0][0])
    by_task = metrics["seconds_per_step_by_task"]  # both tasks take equally many steps here
    assert list(by_task) == ["news", "gloss"] and sum(by_task.values()) / 2 == pytest.approx(metrics["seconds_per_step"])
    for sub in ("news", "gloss", "fast/news", "slow/gloss"):
        assert (out / sub / "adapter_model.safetensors").is_file()
    assert main(["barrier", str(out / "news"), str(out / "gloss"), "--points", "2", "--limit", "3", "--no-accuracy",
                 "--out", str(tmp_path / "b")]) == 0
    refused(["train", "--tasks", SEQ, "--out", str(out), *TINY], capsys, "finished run")


@pytest.mark.slow
def test_config_file_values_and_flags(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: er\nrank: 2\nalpha: 4\nbuffer_size: 4\nepochs: 1\nmax_train: 8\nbatch_size: 8\n")
    out = tmp_path / "run"
    assert main(["train", "--method", "er", "--config", str(cfg), "--tasks", str(DATA), "--order", "gloss",
                 "--target-modules", "q_proj", "--eval-limit", "4", "--out", str(out)]) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["rank"] == 2 and saved["target_modules"] == ["q_proj"] and saved["max_train"] == 8


def test_unknown_method(tmp_path, capsys):
    refused(["train", "--method", "nope", "--tasks", SEQ, "--out", str(tmp_path / "o")], capsys, "--method must be one of")


def test_task_folder_without_train_json(tmp_path, capsys):
    (tmp_path / "data" / "t1").mkdir(parents=True)
    refused(["train", "--tasks", str(tmp_path / "data"), "--out", str(tmp_path / "o")], capsys, "no train.json")


def test_empty_task(tmp_path, capsys):
    (tmp_path / "data" / "t1").mkdir(parents=True)
    (tmp_path / "data" / "t1" / "train.json").write_text("[]")
    (tmp_path / "data" / "t1" / "test.json").write_text('[{"prompt": "a", "answer": "b"}]')
    refused(["train", "--tasks", str(tmp_path / "data"), "--out", str(tmp_path / "o")], capsys, "train.json")


def test_unknown_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"rnak": 4}')
    refused(["train", "--config", str(cfg), "--tasks", SEQ, "--out", str(tmp_path / "o")], capsys, "rnak")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ilora", "ewc"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, capsys, method):
    """Stop mid-task (and once at a task boundary), rerun the same command: same metrics and adapters as one run."""
    from safetensors.torch import load_file

    args = ["train", "--method", method, "--tasks", SEQ, "--buffer-size", "8", *TINY, "--resume"]
    if method == "ewc":
        args.remove("--buffer-size"), args.remove("8")
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    part = ["--out", str(tmp_path / "part")]
    assert main(args + part + ["--stop-after-steps", "3"]) == 0  # 2 steps per task: stops inside task 2
    assert (tmp_path / "part" / ".state").is_dir() and not (tmp_path / "part" / "metrics.json").exists()
    refused([a for a in args if a != "--resume"] + part, capsys, "--resume")
    refused(args + part + ["--lr", "0.5"], capsys, "config")
    assert main(args + part) == 0
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "part"))
    assert resumed["accuracy"] == whole["accuracy"]
    flat = lambda m: [x for row in m for x in row]  # noqa: E731
    assert flat(resumed["loss"]) == pytest.approx(flat(whole["loss"]), abs=1e-6)
    for task in ("news", "gloss"):
        a = load_file(tmp_path / "whole" / task / "adapter_model.safetensors")
        b = load_file(tmp_path / "part" / task / "adapter_model.safetensors")
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (tmp_path / "part" / ".state").exists()


@pytest.mark.slow
def test_training_and_analysis_use_one_input_length(tmp_path, capsys):
    """metrics.json's R[i][i] loss is what `modeconn barrier --split test` gives at that endpoint: one max length."""
    out = tmp_path / "run"
    assert main(["train", "--tasks", SEQ, "--out", str(out), *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    used = metrics["made_by"]["settings"]["max_length_used"]
    assert used == 256  # the shared default 1024, capped by the tiny base's 256 positions
    assert main(["barrier", str(out / "news"), str(out / "gloss"), "--split", "test", "--limit", "6", "--points", "2",
                 "--no-accuracy", "--out", str(tmp_path / "b")]) == 0
    barrier = json.loads((tmp_path / "b" / "barrier.json").read_text())
    assert barrier["made_by"]["settings"]["max_length"] == used
    assert barrier["tasks"]["news"]["loss"][0] == pytest.approx(metrics["loss"][0][0], abs=1e-5)
    assert barrier["tasks"]["gloss"]["loss"][1] == pytest.approx(metrics["loss"][1][1], abs=1e-5)


def test_long_prompts_are_cut_and_counted_and_long_answers_refused(tmp_path, capsys):
    news, gloss = str(checkpoints_dir() / "seq" / "news"), str(checkpoints_dir() / "seq" / "gloss")
    args = ["barrier", news, gloss, "--limit", "5", "--points", "2", "--no-accuracy"]
    assert main(args + ["--max-length", "24", "--out", str(tmp_path / "a")]) == 0
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("modeconn")]
    assert len(err) == 1 and "prompts cut from the left to fit max_length: news 5, gloss" in err[0], err
    record = json.loads((tmp_path / "a" / "barrier.json").read_text())
    assert record["tasks"]["news"]["cut_prompts"] == 5 and record["made_by"]["settings"]["max_length"] == 24
    assert main(args + ["--max-length", "3", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "answers do not fit --max-length 3" in err[0] and "of 5" in err[0], err
    assert "raise the --max-length 3" in err[0]
    assert not (tmp_path / "b").exists()
