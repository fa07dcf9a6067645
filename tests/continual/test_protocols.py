"""`modeconn train --protocol trace` on a generated miniature TRACE tree (LLMCL's layout and folder names, a few rows
per task, MeetingBank-long prompts), and `--protocol embedded`."""
import json

import pytest

from modeconn.cli import main
from modeconn.continual.options import resolve
from modeconn.continual.protocols import TRACE_METRICS, TRACE_ORDER
from modeconn.evaluator.data import load_split

# LLMCL's own folder names for the two added tasks (evaluation.py), and a TRACE task outside the protocol
FOLDERS = ["C-STANCE", "FOMC", "MeetingBank", "ScienceQA", "NumGLUE-cm", "20Minuten", "medmcqa", "jecqa", "Py150"]


def _rows(task: str, n: int, split: str) -> list[dict]:
    rows = []
    for i in range(n):
        if task == "MeetingBank":  # thousands of tokens: cut from the left to --max-length
            prompt = "Summarize the meeting. " + " ".join(f"Speaker {j} moved item {i * j}." for j in range(400))
            answer = f"The council approved item {i}."
        elif task == "20Minuten":
            prompt, answer = f"Vereinfache: Der Gemeinderat hat die Vorlage {i} angenommen.", f"Ja zu Vorlage {i}."
        elif task == "NumGLUE-cm":
            prompt, answer = f"What is {i} plus 2? Answer:", str(i + 2)
        elif task == "ScienceQA":
            prompt, answer = f"Question {i}. A. x B. y Answer:", "AB"[i % 2] + "\nBecause it is."
        else:
            prompt, answer = f"{split} item {i} of {task}. Choose A, B, C or D.", "ABCD"[i % 4]
        rows.append({"prompt": prompt, "answer": answer})
    return rows


@pytest.fixture(scope="module")
def trace_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    for task in FOLDERS:
        (root / task).mkdir()
        for split, n in (("train", 6), ("eval", 3), ("test", 7)):
            (root / task / f"{split}.json").write_text(json.dumps(_rows(task, n, split)))
    return root


def test_trace_preset_order_metrics_and_test_rows(trace_root):
    request = resolve({"protocol": "trace", "tasks": str(trace_root), "epochs": 1})
    assert [t for t, _ in request.tasks] == list(TRACE_ORDER)
    assert dict(request.tasks)["MedMCQA"].name == "medmcqa" and dict(request.tasks)["JEC-QA"].name == "jecqa"
    assert request.metrics == TRACE_METRICS
    assert request.config.max_train == 5000 and request.eval_limit == 500 and request.eval_rows == "last"
    assert (request.config.rank, request.config.alpha, request.config.dropout) == (8, 32, 0.1)
    assert request.config.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert request.config.epochs == 1  # the user's value wins
    assert request.protocol["name"] == "trace" and request.protocol["overridden"] == ["epochs"]
    last = load_split(trace_root / "FOMC", "test", 3, "last")
    assert [e.prompt for e in last] == [f"test item {i} of FOMC. Choose A, B, C or D." for i in (4, 5, 6)]


@pytest.mark.slow
def test_miniature_trace_run_records_its_protocol(trace_root, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--protocol", "trace", "--tasks", str(trace_root), "--base", "tiny-llama", "--max-train", "4",
                 "--epochs", "1", "--batch-size", "2", "--eval-limit", "3", "--lr", "1e-3", "--max-length", "256",
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == list(TRACE_ORDER) and len(metrics["accuracy"]) == 8
    protocol = metrics["made_by"]["settings"]["protocol"]
    assert protocol["name"] == "trace" and protocol["metrics"]["20Minuten"] == "sari"
    assert set(protocol["overridden"]) == {"batch_size", "epochs", "eval_limit", "lr", "max_length", "max_train"}
    assert metrics["made_by"]["settings"]["eval_rows"] == "last"
    manifest = json.loads((out / "sequence.json").read_text())
    assert {t["name"]: t["metric"] for t in manifest["tasks"]} == TRACE_METRICS


def test_missing_trace_tasks_are_named_in_one_line(trace_root, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for task in ("C-STANCE", "FOMC"):
        (partial / task).symlink_to(trace_root / task)
    code = main(["train", "--protocol", "trace", "--tasks", str(partial), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "6 task folder(s) missing" in err and "MeetingBank" in err and "JEC-QA" in err
    assert not (tmp_path / "run").exists()


def test_trace_needs_its_tasks_named(capsys, tmp_path):
    assert main(["train", "--protocol", "trace", "--out", str(tmp_path / "run")]) == 2
    assert "--tasks PATH_TO_TRACE" in capsys.readouterr().err


def test_embedded_protocol_fills_in_the_embedded_stream():
    request = resolve({"protocol": "embedded", "max_train": 8})
    assert [t for t, _ in request.tasks] == ["news", "gloss", "fortune", "stdlib"]
    assert request.base == "tiny-llama" and request.config.max_train == 8 and request.eval_limit == 100
    assert request.protocol["overridden"] == ["max_train"]
