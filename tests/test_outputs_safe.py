"""Nothing of the user's is ever lost: an output never overlaps an input, a folder is modeconn's to replace only by its
ownership record (not by name), no link under an output leads a write outside, and a run's state and log never mix.

Every refusal: exit 2, one line on stderr, no traceback, and every byte of the user's folder as it was."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir
from modeconn.outdir import RECORD

EMBEDDED = checkpoints_dir()
SEQ, DATA = EMBEDDED / "seq", EMBEDDED / "data"
NEWS, GLOSS = str(SEQ / "news"), str(SEQ / "gloss")
FAST = ["--points", "2", "--limit", "2", "--no-accuracy"]


def snapshot(root) -> dict:
    """Every entry under ``root`` with its bytes (a link: where it points): what must not change."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    found[key] = handle.read()
            else:
                found[key] = None
    return found


def refused(argv, capsys, match: str, *keep) -> None:
    """``argv`` exits 2 with one line containing ``match``, and leaves every folder in ``keep`` byte-identical."""
    before = [snapshot(k) for k in keep]
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("modeconn: error:") and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert [snapshot(k) for k in keep] == before, "the user's files changed"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A barrier result folder modeconn wrote (with its ownership record)."""
    out = tmp_path_factory.mktemp("made") / "barrier"
    assert main(["barrier", NEWS, GLOSS, *FAST, "--out", str(out)]) == 0
    return out


def _task(root, name, source="news"):
    shutil.copytree(DATA / source, root / name)
    return root / name


# --- 1. outputs never touch inputs ---

def test_train_into_a_copy_of_the_data_leaves_every_data_file(tmp_path, capsys):
    work = tmp_path / "W" / "data"
    shutil.copytree(DATA, work)
    refused(["train", "--tasks", SEQ, "--out", work], capsys, "modeconn did not write", tmp_path / "W")
    refused(["train", "--tasks", work, "--out", work], capsys, "input", tmp_path / "W")
    refused(["train", "--tasks", work, "--out", work / "news" / "run"], capsys, "lies inside the input", tmp_path / "W")


def test_curve_into_its_own_input_adapter_is_refused(tmp_path, capsys):
    work = tmp_path / "W"
    for name in ("news", "gloss"):
        shutil.copytree(SEQ / name, work / name)
    refused(["curve", work / "news", work / "gloss", "--steps", "1", "--out", work / "news"], capsys, "is the input", work)
    refused(["barrier", work / "news", work / "gloss", *FAST, "--out", work], capsys, "lies inside the output", work)


def test_sweep_curves_out_may_not_overlap_out_or_the_sequence(tmp_path, capsys):
    refused(["sweep", SEQ, "--bezier", "--out", tmp_path / "r", "--curves-out", tmp_path / "r" / "c"], capsys, "overlap",
            tmp_path)
    (tmp_path / "a_file").write_text("mine\n")
    refused(["sweep", SEQ, "--bezier", "--out", tmp_path / "r", "--curves-out", tmp_path / "a_file"], capsys, "is a file",
            tmp_path)
    refused(["sweep", SEQ, "--bezier", "--out", tmp_path / "r", "--curves-out", SEQ], capsys, "input", tmp_path, SEQ)


def test_plot_never_draws_over_its_own_json(tmp_path, capsys, result):
    (tmp_path / "barrier.png").write_bytes((result / "barrier.json").read_bytes())
    refused(["plot", tmp_path / "barrier.png"], capsys, "replace it", tmp_path)


# --- 2. ownership by record, not by name ---

def test_a_users_barrier_json_in_out_is_not_replaced(tmp_path, capsys):
    (tmp_path / "barrier.json").write_text('{"mine": true}\n')
    refused(["barrier", NEWS, GLOSS, *FAST, "--out", tmp_path], capsys, "barrier.json", tmp_path)


def test_a_result_edited_since_modeconn_wrote_it_is_the_users(tmp_path, capsys, result):
    mine = tmp_path / "r"
    shutil.copytree(result, mine)
    assert main(["barrier", NEWS, GLOSS, *FAST, "--out", str(mine)]) == 0  # its own record: replaced freely
    (mine / "barrier.png").write_bytes(b"my annotated figure")
    refused(["barrier", NEWS, GLOSS, *FAST, "--out", mine], capsys, "barrier.png (changed since modeconn wrote it)", mine)


def test_plot_beside_a_users_json_keeps_the_users_png(tmp_path, capsys, result):
    shutil.copy(result / "barrier.json", tmp_path / "barrier.json")
    (tmp_path / "barrier.png").write_bytes(b"my own figure")
    refused(["plot", tmp_path / "barrier.json"], capsys, "barrier.png", tmp_path)
    (tmp_path / "barrier.png").unlink()
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["plot", str(tmp_path / "barrier.json")]) == 0  # the user's other files are left alone
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and (tmp_path / "barrier.png").is_file()
    assert "notes.txt" not in json.loads((tmp_path / RECORD).read_text())["entries"]


def test_sweep_curves_out_holding_a_users_adapter_is_refused(tmp_path, capsys):
    shutil.copytree(SEQ / "news", tmp_path / "C" / "news-gloss")
    refused(["sweep", SEQ, "--bezier", "--out", tmp_path / "r", "--curves-out", tmp_path / "C"], capsys,
            "modeconn did not write", tmp_path)
    assert not (tmp_path / "r").exists()


def test_demo_never_deletes_a_users_file_in_runs(tmp_path, capsys):
    (tmp_path / "P" / "runs").mkdir(parents=True)
    (tmp_path / "P" / "runs" / "results.txt").write_text("a week of results\n")
    refused(["demo", "--out", tmp_path / "P"], capsys, "runs", tmp_path)


@pytest.mark.parametrize("method,name", [("seq", "train_log.jsonl"), ("seq", "metrics.json"), ("seq", "sequence.json"),
                                         ("ilora", "fast"), ("ilora", "slow")])
def test_a_task_named_like_a_file_the_run_writes_is_refused(tmp_path, capsys, method, name):
    tasks = tmp_path / "tasks"
    _task(tasks, name)
    _task(tasks, "gloss", "gloss")
    refused(["train", "--method", method, "--tasks", tasks, "--out", tmp_path / "run"], capsys, name, tmp_path)
    assert not (tmp_path / "run").exists()


def test_a_task_name_too_long_for_the_file_system_is_refused_before_training(tmp_path, capsys):
    long = "t" * 250
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "sequence.json").write_text(json.dumps({"name": "s", "base_model": "tiny-llama", "tasks": [
        {"name": "news", "data": str(DATA / "news"), "adapter": "news"},
        {"name": long, "data": str(DATA / "gloss"), "adapter": "g"}]}))
    refused(["train", "--tasks", seq, "--out", tmp_path / "run"], capsys, "shorten it", tmp_path)


# --- 3. no link leads outside ---

@pytest.mark.parametrize("where", ["train_log.jsonl", ".modeconn-old.ab", "news"])
def test_a_link_under_out_that_leads_outside_is_refused(tmp_path, capsys, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "diary.txt").write_text("private\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / where).symlink_to(outside / "diary.txt" if where.endswith(".jsonl") else outside)
    refused(["train", "--tasks", SEQ, "--order", "news", "--out", out], capsys, "link", tmp_path)


def test_curves_out_and_report_folders_through_links_are_refused(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "C").mkdir()
    (tmp_path / "C" / "news-gloss").symlink_to(outside)
    refused(["sweep", SEQ, "--bezier", "--out", tmp_path / "r", "--curves-out", tmp_path / "C"], capsys, "link", tmp_path)
    (tmp_path / "R").mkdir()
    (tmp_path / "R" / "seq").symlink_to(outside)
    refused(["report", SEQ, "--no-curves", "--out", tmp_path / "R"], capsys, "link", tmp_path)


def test_tracker_names_stay_one_harmless_component():
    from modeconn.continual.run_folder import tracker_name

    assert tracker_name("../../x") == "x" and tracker_name("/etc/passwd") == "etc_passwd"
    assert tracker_name("..") == "run" and tracker_name("seq-seed1") == "seq-seed1"


# --- 4. state that cannot mix ---

@pytest.mark.slow
def test_a_deleted_or_half_swapped_state_never_restarts_into_the_same_log(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--tasks", str(SEQ), "--order", "news", "--max-train", "8", "--batch-size", "2", "--epochs", "1",
            "--rank", "2", "--target-modules", "q_proj", "--eval-limit", "2", "--out", str(out)]
    assert main(args + ["--stop-after-steps", "3"]) == 0

    def steps():
        return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]

    assert steps() == [1, 2, 3]
    log = (out / "train_log.jsonl").read_bytes()
    os.replace(out / ".state", out / ".modeconn-.state.x1")  # a kill before the first state's rename (cleaned up)
    refused(args + ["--resume"], capsys, "run without --resume to start over")
    assert (out / "train_log.jsonl").read_bytes() == log
    refused(args + ["--resume"], capsys, "no saved state", out)  # as after the user deleted .state
    assert main(args) == 0
    assert steps() == [1, 2, 3, 4]  # a fresh start: the earlier run's steps are gone, not mixed in


def test_run_labels_are_unique_and_never_a_report_file():
    from pathlib import Path

    from modeconn.report.gather import labels_of

    labels = labels_of([Path("x/seq"), Path("y/seq"), Path("z/seq-2"), Path("w/plane")])
    assert len(set(labels)) == 4 and labels[2] == "seq-2" and "plane" not in labels


def test_report_read_back_keys_on_content(tmp_path):
    from modeconn.lora.sequence import load_sequence
    from modeconn.files import content_hash
    from modeconn.report.gather import _sequence_files

    shutil.copytree(SEQ, tmp_path / "seq")
    seq = load_sequence(tmp_path / "seq")
    before = content_hash(_sequence_files(seq))
    assert content_hash(_sequence_files(seq)) == before
    shutil.copy(SEQ / "gloss" / "adapter_model.safetensors", tmp_path / "seq" / "news" / "adapter_model.safetensors")
    assert content_hash(_sequence_files(seq)) != before  # an adapter replaced at the same path is measured again


def test_a_killed_runs_own_files_are_still_its_own_and_a_users_are_not(tmp_path):
    from modeconn.errors import OutputError
    from modeconn.outdir import LOCK, claim

    out = tmp_path / "out"
    held = claim(out)
    held.__enter__()  # killed while it holds the folder: its lock and open record stay behind
    (out / "barrier.json").write_text("{}")
    (out / LOCK).write_text("999999999\n")  # no such process
    with claim(out):  # taken over: what the killed run wrote is its own
        pass
    assert json.loads((out / RECORD).read_text())["entries"] == ["barrier.json"]
    (out / "barrier.json").write_text('{"edited": 1}')
    with pytest.raises(OutputError, match="changed since modeconn wrote it"):
        with claim(out):
            pass
    assert (out / "barrier.json").read_text() == '{"edited": 1}'


def test_a_folder_another_command_claimed_inside_out_is_modeconns(tmp_path, result):
    from modeconn.outdir import claim

    shutil.copytree(result, tmp_path / "P" / "report")  # `make demo`: modeconn report --out demo_out/report
    with claim(tmp_path / "P", owned=["report"]):
        pass
    (tmp_path / "P" / "report" / "notes.txt").write_text("mine\n")
    with pytest.raises(Exception, match="modeconn did not write there"):
        with claim(tmp_path / "P", owned=["report"]):
            pass
