"""Every user-caused error, for every command (peft's TEST_CASES style): exit code 2, one line on stderr naming the
offending input, no traceback, nothing new outside --out and nothing changed inside it.

Case classes: bad adapters, bad data, bad options, bad configs, bad manifests, bad --out, a busy --out, bad base
models, bad result files, a damaged training state. Kills, leftovers and non-finite numbers have their own tests
below the table."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir
from modeconn.outdir import record_owned

EMBEDDED = checkpoints_dir()
SEQ, DATA = EMBEDDED / "seq", EMBEDDED / "data"
NEWS, GLOSS, FORTUNE = (str(SEQ / t) for t in ("news", "gloss", "fortune"))


def _adapter(root, name, edit_config=None, edit_tensors=None, pickle=False):
    folder = root / name
    shutil.copytree(SEQ / "news", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    if edit_config is not None:
        config = edit_config(config)
        (folder / "adapter_config.json").write_text(json.dumps(config))
    tensors = load_file(folder / "adapter_model.safetensors")
    if edit_tensors is not None:
        edit_tensors(tensors)
        save_file(tensors, folder / "adapter_model.safetensors")
    if pickle:
        torch.save(tensors, folder / "adapter_model.bin")
        (folder / "adapter_model.safetensors").unlink()
    return str(folder)


def _manifest(root, name, tasks, base="tiny-llama"):
    folder = root / name
    folder.mkdir()
    entries = [{"name": t, "data": str(DATA / "news"), "adapter": str(SEQ / "news")} for t in tasks] if isinstance(tasks, list) else tasks
    (folder / "sequence.json").write_text(json.dumps({"name": name, "base_model": base, "tasks": entries}))
    return str(folder)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Every malformed input the cases below use, made once."""
    root = tmp_path_factory.mktemp("inputs")
    b = {}
    b["missing"] = str(root / "nowhere")
    (root / "empty_folder").mkdir()
    b["not_adapter"] = str(root / "empty_folder")
    b["config_list"] = _adapter(root, "config_list", lambda c: [c])
    b["alpha_string"] = _adapter(root, "alpha_string", lambda c: {**c, "lora_alpha": "sixteen"})
    b["alpha_nan"] = _adapter(root, "alpha_nan", lambda c: {**c, "lora_alpha": float("nan")})
    b["dora"] = _adapter(root, "dora", lambda c: {**c, "use_dora": True})
    b["other_base"] = _adapter(root, "other_base", lambda c: {**c, "base_model_name_or_path": "someone/else"})
    b["nan_weights"] = _adapter(root, "nan_weights", edit_tensors=lambda t: next(iter(t.values())).fill_(float("nan")))
    b["pickle"] = _adapter(root, "pickle", pickle=True)
    b["few_modules"] = _adapter(root, "few_modules", edit_tensors=lambda t: [t.pop(k) for k in list(t) if "q_proj" in k])
    b["rank4"] = _adapter(root, "rank4", lambda c: {**c, "r": 4},
                          lambda t: t.update({k: (v[:4] if "lora_A" in k else v[:, :4]).contiguous() for k, v in list(t.items())}))
    evil = root / "evil"
    shutil.copytree(SEQ / "news", evil)
    (evil / "adapter_model.safetensors").unlink()
    (evil / "adapter_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that runs a command
    b["evil"] = str(evil)
    # data
    for name, content in {"empty.json": "", "broken.json": "{not json", "fields.json": '[{"question": "x"}]',
                          "nolist.json": "[]", "numbers.json": '[{"prompt": "a", "answer": [3]}]'}.items():
        (root / name).write_text(content)
        b[name] = str(root / name)
    (root / "task_no_eval").mkdir()
    (root / "task_no_eval" / "train.json").write_text('[{"prompt": "a", "answer": "b"}]')
    b["task_no_eval"] = str(root / "task_no_eval")
    # sequence manifests
    b["seq_broken"] = str(root / "seq_broken")
    (root / "seq_broken").mkdir()
    (root / "seq_broken" / "sequence.json").write_text("{")
    b["seq_twice"] = _manifest(root, "seq_twice", ["news", "news"])
    b["seq_escape"] = _manifest(root, "seq_escape", ["../victim", "gloss"])
    b["seq_absolute"] = _manifest(root, "seq_absolute", ["/tmp/victim", "gloss"])
    b["seq_nested"] = _manifest(root, "seq_nested", ["sub/dir", "gloss"])
    b["seq_metric"] = _manifest(root, "seq_metric", [{"name": "news", "data": str(DATA / "news"), "adapter": str(SEQ / "news"),
                                                       "metric": "bleurt"}, {"name": "gloss", "data": str(DATA / "gloss"),
                                                                              "adapter": str(SEQ / "gloss")}])
    b["seq_notasks"] = _manifest(root, "seq_notasks", {"news": 1})
    loop = root / "seq_loop"
    loop.mkdir()
    (loop / "news").symlink_to(loop / "news")
    (loop / "sequence.json").write_text(json.dumps({"name": "l", "base_model": "tiny-llama", "tasks": [
        {"name": "news", "data": str(DATA / "news"), "adapter": "news"}, {"name": "gloss", "data": str(DATA / "gloss"),
                                                                          "adapter": str(SEQ / "gloss")}]}))
    b["seq_loop"] = str(loop)
    (root / "data_emptytrain" / "t1").mkdir(parents=True)
    (root / "data_emptytrain" / "t1" / "train.json").write_text("[]")
    b["data_emptytrain"] = str(root / "data_emptytrain")
    # config files
    for name, text in {"list.yaml": "- rank: 4\n", "unknown.yaml": "rnak: 4\n", "epochs.yaml": "epochs: 1.5\n",
                       "rank.yaml": "rank: eight\n", "lr.json": '{"lr": "fast"}', "lrnan.yaml": "lr: .nan\n",
                       "broken.yaml": "rank: [4\n", "other.yaml": "method: er\ngamma: 2.0\n", "split.yaml": "eval_split: dev\n",
                       "buffer.yaml": "method: er\nbuffer_size: -1\n"}.items():
        (root / name).write_text(text)
        b[name] = str(root / name)
    # base models
    pickle_base = root / "pickle_base"
    pickle_base.mkdir()
    shutil.copy(EMBEDDED / "base" / "config.json", pickle_base)
    torch.save(load_file(EMBEDDED / "base" / "model.safetensors"), pickle_base / "pytorch_model.bin")
    b["pickle_base"] = str(pickle_base)
    # damaged training states
    for name, (state_json, tensors) in {"damaged": ("{", b""), "truncated": ("", b"\x00" * 10)}.items():
        (root / name / ".state").mkdir(parents=True)
        (root / name / ".state" / "state.json").write_text(state_json or json.dumps(
            {"fingerprint": {}, "optimizer": {"param_groups": [], "state": {}}}))
        (root / name / ".state" / "state.safetensors").write_bytes(tensors)
        record_owned(root / name)  # as a run leaves it: modeconn's own state, damaged since
        b[name] = str(root / name)
    # result files for plot
    for name, text in {"notjson.json": "nope", "notresult.json": '{"a": 1}', "kind.json": '{"kind": "banana"}',
                       "barrier_types.json": '{"kind": "barrier", "path": "linear", "space": "factor", "t": "0..1", '
                                             '"tasks": [], "adapters": [], "base_model": "x"}'}.items():
        (root / name).write_text(text)
        b[name] = str(root / name)
    b.update(_more_bad(root))
    return b


# (command, case class, argv template, text the one line must contain). {x} is a bad input, {out} the output folder.
A2 = [NEWS, GLOSS]
CASES = [
    # --- barrier ---
    ("barrier", "adapter", ["barrier", "{missing}", GLOSS], "no such adapter folder"),
    ("barrier", "adapter", ["barrier", "{not_adapter}", GLOSS], "not a peft adapter folder"),
    ("barrier", "adapter", ["barrier", "{config_list}", GLOSS], "expected a JSON object"),
    ("barrier", "adapter", ["barrier", "{alpha_string}", GLOSS], "lora_alpha must be a number"),
    ("barrier", "adapter", ["barrier", "{alpha_nan}", GLOSS], "lora_alpha must be a finite number"),
    ("barrier", "adapter", ["barrier", "{dora}", GLOSS], "DoRA"),
    ("barrier", "adapter", ["barrier", "{other_base}", GLOSS], "different base models"),
    ("barrier", "adapter", ["barrier", "{nan_weights}", GLOSS], "non-finite"),
    ("barrier", "adapter", ["barrier", "{pickle}", GLOSS], "--allow-pickle"),
    ("barrier", "adapter", ["barrier", "{evil}", GLOSS, "--allow-pickle"], "refused or unreadable"),
    ("barrier", "adapter", ["barrier", "{few_modules}", GLOSS], "different modules"),
    ("barrier", "adapter", ["barrier", "{rank4}", GLOSS], "--space delta"),
    ("barrier", "data", ["barrier", *A2, "--data", "{empty.json}"], "empty"),
    ("barrier", "data", ["barrier", *A2, "--data", "{broken.json}"], "invalid JSON"),
    ("barrier", "data", ["barrier", *A2, "--data", "{fields.json}"], "lack"),
    ("barrier", "data", ["barrier", *A2, "--data", "{nolist.json}"], "no records"),
    ("barrier", "data", ["barrier", *A2, "--data", "{numbers.json}"], "non-string"),
    ("barrier", "data", ["barrier", *A2, "--data", "{task_no_eval}"], "no eval.json"),
    ("barrier", "data", ["barrier", *A2, "--data", "{missing}"], "not found"),
    ("barrier", "option", ["barrier", *A2, "--points", "1"], "--points"),
    ("barrier", "option", ["barrier", *A2, "--points", "1000000000"], "GiB"),
    ("barrier", "option", ["barrier", *A2, "--limit", "0"], "--limit"),
    ("barrier", "option", ["barrier", *A2, "--seed", str(2**64)], "--seed"),
    ("barrier", "option", ["barrier", *A2, "--seed", "-1"], "--seed"),
    ("barrier", "option", ["barrier", *A2, "--device", "bogus"], "bogus"),
    ("barrier", "option", ["barrier", *A2, "--device", "cuda"], "no CUDA"),
    ("barrier", "option", ["barrier", *A2, "--max-batch-tokens", "0"], "--max-batch-tokens"),
    ("barrier", "option", ["barrier", *A2, "--dtype", "float8"], "--dtype"),
    ("barrier", "option", ["barrier", *A2, "--path", "bezier"], "--control"),
    ("barrier", "option", ["barrier", *A2, "--max-length", "3"], "answers do not fit --max-length 3"),
    ("barrier", "option", ["barrier", *A2, "--max-length", "100000"], "positions"),
    ("barrier", "option", ["barrier", *A2, "--device-map", "balanced"], "--device-map"),
    ("barrier", "option", ["barrier", *A2, "--bogus"], "--bogus"),
    ("barrier", "base", ["barrier", *A2, "--base", "{pickle_base}"], "--allow-pickle"),
    ("barrier", "base", ["barrier", *A2, "--base", NEWS], "adapter folder, not a base model"),
    ("barrier", "base", ["barrier", *A2, "--base", "{missing}"], "not found"),
    # --- plane ---
    ("plane", "adapter", ["plane", NEWS, GLOSS, "{missing}"], "no such adapter folder"),
    ("plane", "adapter", ["plane", NEWS, GLOSS, "{nan_weights}"], "non-finite"),
    ("plane", "adapter", ["plane", NEWS, GLOSS, "{few_modules}"], "different modules"),
    ("plane", "adapter", ["plane", NEWS, GLOSS, GLOSS], "collinear"),
    ("plane", "adapter", ["plane", NEWS, NEWS, GLOSS], "identical"),
    ("plane", "data", ["plane", NEWS, GLOSS, FORTUNE, "--data", "{broken.json}"], "invalid JSON"),
    ("plane", "option", ["plane", NEWS, GLOSS, FORTUNE, "--grid", "1"], "--grid"),
    ("plane", "option", ["plane", NEWS, GLOSS, FORTUNE, "--grid", "100000"], "GiB"),
    ("plane", "option", ["plane", NEWS, GLOSS, FORTUNE, "--margin", "nan"], "--margin"),
    ("plane", "option", ["plane", NEWS, GLOSS, FORTUNE, "--margin", "-1"], "--margin"),
    ("plane", "option", ["plane", NEWS, GLOSS, FORTUNE, "--device", "cuda:3"], "CUDA"),
    ("plane", "base", ["plane", NEWS, GLOSS, FORTUNE, "--base", "{pickle_base}"], "--allow-pickle"),
    # --- landscape ---
    ("landscape", "adapter", ["landscape", "{missing}"], "no such adapter folder"),
    ("landscape", "adapter", ["landscape", "{dora}"], "DoRA"),
    ("landscape", "data", ["landscape", "{not_adapter}"], "not a peft adapter"),
    ("landscape", "data", ["landscape", NEWS, "--no-manifest-data"], "no evaluation data"),
    ("landscape", "option", ["landscape", NEWS, "--span", "inf"], "--span"),
    ("landscape", "option", ["landscape", NEWS, "--span", "0"], "--span"),
    ("landscape", "option", ["landscape", NEWS, "--grid", "100000"], "GiB"),
    ("landscape", "option", ["landscape", NEWS, "--dimensions", "3"], "--dimensions"),
    ("landscape", "base", ["landscape", NEWS, "--base", GLOSS], "adapter folder, not a base model"),
    # --- sweep ---
    ("sweep", "manifest", ["sweep", "{missing}"], "no sequence manifest"),
    ("sweep", "manifest", ["sweep", "{seq_broken}"], "malformed sequence manifest"),
    ("sweep", "manifest", ["sweep", "{seq_twice}"], "'news' is listed twice"),
    ("sweep", "manifest", ["sweep", "{seq_escape}"], "cannot be a folder name"),
    ("sweep", "manifest", ["sweep", "{seq_metric}"], "bleurt"),
    ("sweep", "manifest", ["sweep", "{seq_notasks}"], "malformed sequence manifest"),
    ("sweep", "manifest", ["sweep", "{seq_loop}"], "news"),
    ("sweep", "option", ["sweep", str(SEQ), "--points", "1"], "--points"),
    ("sweep", "option", ["sweep", str(SEQ), "--points", "1000000000"], "GiB"),
    ("sweep", "option", ["sweep", str(SEQ), "--curve-steps", "0"], "--curve-steps"),
    ("sweep", "option", ["sweep", str(SEQ), "--seed", str(2**40)], "--seed"),
    ("sweep", "option", ["sweep", str(SEQ), "--device", "bogus"], "bogus"),
    ("sweep", "option", ["sweep", str(SEQ), "--max-length", "3"], "answers do not fit --max-length 3"),
    ("sweep", "base", ["sweep", str(SEQ), "--base", "{pickle_base}"], "--allow-pickle"),
    # --- curve ---
    ("curve", "adapter", ["curve", "{missing}", GLOSS], "no such adapter folder"),
    ("curve", "adapter", ["curve", NEWS, "{rank4}"], "--space delta"),
    ("curve", "data", ["curve", NEWS, GLOSS, "--no-manifest-data"], "no training data"),
    ("curve", "data", ["curve", NEWS, GLOSS, "--data", "{fields.json}"], "lack"),
    ("curve", "option", ["curve", *A2, "--steps", "0"], "--steps"),
    ("curve", "option", ["curve", *A2, "--lr", "nan"], "--lr"),
    ("curve", "option", ["curve", *A2, "--lr", "inf"], "--lr"),
    ("curve", "option", ["curve", *A2, "--seed", "-5"], "--seed"),
    ("curve", "option", ["curve", *A2, "--max-length", "3"], "answers do not fit --max-length 3"),
    ("curve", "base", ["curve", *A2, "--base", "{pickle_base}"], "--allow-pickle"),
    # --- train ---
    ("train", "manifest", ["train", "--tasks", "{seq_escape}"], "cannot be a folder name"),
    ("train", "manifest", ["train", "--tasks", "{seq_absolute}"], "cannot be a folder name"),
    ("train", "manifest", ["train", "--tasks", "{seq_nested}"], "cannot be a folder name"),
    ("train", "manifest", ["train", "--tasks", "{seq_twice}"], "listed twice"),
    ("train", "manifest", ["train", "--tasks", "{seq_broken}"], "malformed"),
    ("train", "manifest", ["train", "--tasks", str(SEQ), "--order", "news,news"], "listed twice"),
    ("train", "manifest", ["train", "--tasks", str(SEQ), "--order", "news,nope"], "nope"),
    ("train", "data", ["train", "--tasks", "{data_emptytrain}"], "train.json"),
    ("train", "data", ["train", "--tasks", "{missing}"], "no such task sequence"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--lr", "nan"], "--lr"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--lr", "inf"], "--lr"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--alpha", "nan"], "--alpha"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--epochs", "0"], "--epochs"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--method", "ewc", "--ewc-lambda", "nan"], "ewc_lambda"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--method", "er", "--buffer-size", "-1"], "buffer_size"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--method", "er", "--gamma", "2"], "not of method 'er'"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--method", "ilora", "--ema", "1"], "ema"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--seed", str(2**64)], "--seed"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--device", "bogus"], "bogus"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--device", "cuda"], "no CUDA"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--max-train", "0"], "--max-train"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--eval-limit", "0"], "--eval-limit"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--stop-after-steps", "0"], "--stop-after-steps"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--target-modules", "qq_proj", "--max-train", "8"], "qq_proj"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--max-length", "100000", "--max-train", "8"], "positions"),
    ("train", "option", ["train", "--tasks", str(SEQ), "--max-length", "3", "--max-train", "8"], "do not fit --max-length 3"),
    ("train", "option", ["train"], "no tasks"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{list.yaml}"], "mapping"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{unknown.yaml}"], "rnak"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{epochs.yaml}"], "epochs must be a whole number"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{rank.yaml}"], "rank must be a whole number"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{lr.json}"], "lr must be a number"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{lrnan.yaml}"], "lr must be a finite number"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{broken.yaml}"], "not valid YAML"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{other.yaml}"], "gamma"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{split.yaml}"], "eval_split"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{buffer.yaml}"], "buffer_size"),
    ("train", "config", ["train", "--tasks", str(SEQ), "--config", "{missing}"], "config file not found"),
    ("train", "base", ["train", "--tasks", str(SEQ), "--base", "{pickle_base}"], "--allow-pickle"),
    ("train", "base", ["train", "--tasks", str(SEQ), "--base", NEWS], "adapter folder, not a base model"),
    ("train", "state", ["train", "--tasks", str(SEQ), "--resume", "--out", "{damaged}"], "damaged"),
    ("train", "state", ["train", "--tasks", str(SEQ), "--resume", "--out", "{truncated}"], "damaged"),
    ("train", "state", ["train", "--tasks", str(SEQ), "--out", "{damaged}"], "--resume"),
    # --- plot ---
    ("plot", "result", ["plot", "{notjson.json}"], "not a JSON file"),
    ("plot", "result", ["plot", "{notresult.json}"], "not a modeconn result"),
    ("plot", "result", ["plot", "{kind.json}"], "banana"),
    ("plot", "result", ["plot", "{barrier_types.json}"], "malformed barrier result"),
    ("plot", "result", ["plot", "{missing}"], "no such result file"),
    ("plot", "result", ["plot", "{not_adapter}"], "a folder"),
    # --- demo ---
    ("demo", "option", ["demo", "--methods", "seq,nope"], "nope"),
    ("demo", "option", ["demo", "--max-train", "0"], "--max-train"),
    ("demo", "option", ["demo", "--seed", "-1"], "--seed"),
    ("demo", "option", ["demo", "--methods", "er"], "seq"),
]
# the --out checks apply to every command that writes
WRITERS = {"barrier": [*A2], "plane": [NEWS, GLOSS, FORTUNE], "landscape": [NEWS], "sweep": [str(SEQ)], "curve": [*A2],
           "train": ["--tasks", str(SEQ)], "demo": []}
for command, rest in WRITERS.items():
    CASES += [
        (command, "out", [command, *rest, "--out", "{a_file}"], "is a file"),
        (command, "out", [command, *rest, "--out", "{a_file}/sub"], "cannot"),
        (command, "out", [command, *rest, "--out", "{foreign}"], "modeconn did not write"),
        (command, "busy", [command, *rest, "--out", "{busy}"], "in use by another modeconn run"),
    ]
CASES += [("plot", "out", ["plot", str(SEQ / "metrics.json"), "--out", "{a_file}"], "is a file"),
          ("plot", "out", ["plot", str(SEQ / "metrics.json"), "--out", "{foreign}"], "modeconn did not write"),
          ("plot", "busy", ["plot", str(SEQ / "metrics.json"), "--out", "{busy}"], "in use")]

DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on it
NESTED = "[" * 500 + "]" * 500  # parses, but nests deeper than any file modeconn writes
_BARRIER = {"kind": "barrier", "path": "linear", "space": "factor", "t": [0.0, 1.0], "adapters": ["a", "b"], "base_model": "x",
            "tasks": {"news": {"loss": [1.0, 2.0], "accuracy": None, "examples": 2, "barrier": 0.0, "barrier_t": 0.0,
                               "barrier_mean_endpoint": 0.0, "barrier_max_endpoint": 0.0, "barrier_max_endpoint_t": 0.0}}}


def _edited(record: dict, *path_and_value) -> str:
    """``record`` as JSON with the value at ``path`` (keys and indices) replaced."""
    import copy

    data = copy.deepcopy(record)
    *path, last, value = path_and_value
    target = data
    for key in path:
        target = target[key]
    target[last] = value
    return json.dumps(data)


def _more_bad(root) -> dict:
    """The inputs of issue 23's silent values and tracebacks: duplicate keys, deep nesting, results of wrong types."""
    b = {}
    metrics = json.loads((SEQ / "metrics.json").read_text())
    files = {"dup.yaml": "rank: 4\nrank: 8\n", "dup.json": '{"rank": 4, "rank": 8}', "dash.yaml": "batch-size: 4\nbatch_size: 8\n",
             "deep.json": DEEP, "deep.yaml": DEEP, "nested.json": NESTED,
             "res_deep.json": DEEP, "res_nested.json": '{"kind": "barrier", "t": ' + NESTED + "}",
             "res_dupkey.json": '{"kind": "plane", "kind": "barrier"}',
             "bar_strloss.json": _edited(_BARRIER, "tasks", "news", "loss", 1, "high"),
             "bar_t.json": _edited(_BARRIER, "t", 1, 2.0), "bar_acc.json": _edited(_BARRIER, "tasks", "news", "accuracy", [0.5, 1.5]),
             "bar_down.json": _edited(_BARRIER, "t", [1.0, 0.0]),
             "met_strloss.json": _edited(metrics, "loss", 0, 0, "high"), "met_acc.json": _edited(metrics, "accuracy", 0, 0, 7),
             "met_init.json": _edited(metrics, "initial_accuracy", ["x"] * 4),
             "plane_str.json": json.dumps({"kind": "plane", "space": "factor", "x": [0, 1], "y": [0, 1], "points": [[0, 0]],
                                           "labels": ["a"], "adapters": ["a"], "base_model": "x", "tasks": {"news": {
                                               "loss": [[1, 2], [3, "x"]], "accuracy": None, "at_points": [1], "examples": 2}}}),
             "sweep_bool.json": json.dumps({"kind": "sweep", "sequence": "s", "tasks": ["news", "gloss"], "adapters": ["a", "b"],
                                            "space": "factor", "base_model": "x", "pairs": [{"a": 0, "b": True,
                                                                                            "linear": _BARRIER}]}),
             "log.jsonl": '{"step": 1, "task": "news", "loss": "high"}\n'}
    for name, text in files.items():
        (root / name).write_text(text)
        b[name] = str(root / name)
    b["seq_deep"] = _manifest(root, "seq_deep", {})
    (root / "seq_deep" / "sequence.json").write_text(DEEP)
    b["seq_dupkey"] = _manifest(root, "seq_dupkey", ["news", "gloss"])
    text = (root / "seq_dupkey" / "sequence.json").read_text()
    (root / "seq_dupkey" / "sequence.json").write_text(text[:-1] + ', "tasks": []}')
    for name, file in {"deep_config": "adapter_config.json", "deep_curve": "curve.json"}.items():
        b[name] = _adapter(root, name)
        (root / name / file).write_text(DEEP)
    for name, broken in {"run_broken": '{"kind": "continual_metrics", "tasks": [', "run_deep": DEEP,
                         "run_strloss": _edited(metrics, "loss", 1, 1, "high")}.items():
        b[name] = _manifest(root, name, ["news", "gloss"])
        (root / name / "metrics.json").write_text(broken)
    return b


# issue 23: every silent value refused, every traceback one line (a deep JSON, a wrong type in a result file)
TRAIN = ["train", "--tasks", str(SEQ)]
CASES += [
    ("train", "config", [*TRAIN, "--config", "{dup.yaml}"], "key 'rank' appears twice"),
    ("train", "config", [*TRAIN, "--config", "{dup.json}"], "key 'rank' appears twice"),
    ("train", "config", [*TRAIN, "--config", "{dash.yaml}"], "'batch_size' is given twice"),
    ("train", "config", [*TRAIN, "--config", "{deep.json}"], "nested more than 100 levels"),
    ("train", "config", [*TRAIN, "--config", "{nested.json}"], "nested more than 100 levels"),
    ("train", "config", [*TRAIN, "--config", "{deep.yaml}"], "not valid YAML"),
    ("train", "manifest", ["train", "--tasks", "{seq_deep}"], "nested more than 100 levels"),
    ("train", "manifest", ["train", "--tasks", "{seq_dupkey}"], "key 'tasks' appears twice"),
    ("sweep", "manifest", ["sweep", "{seq_deep}"], "nested more than 100 levels"),
    ("sweep", "manifest", ["sweep", "{seq_dupkey}"], "key 'tasks' appears twice"),
    ("barrier", "option", ["barrier", *A2, "--control", FORTUNE], "--control has no effect without --path bezier"),
    ("barrier", "option", ["barrier", *A2, "--adaptive", "--points", "5"], "--points has no effect with --adaptive"),
    ("sweep", "option", ["sweep", str(SEQ), "--curves-out", "{a_file}"], "--curves-out has no effect without --bezier"),
    ("sweep", "option", ["sweep", str(SEQ), "--curve-steps", "5"], "--curve-steps has no effect without --bezier"),
    ("plot", "result", ["plot", "{res_deep.json}"], "nested more than 100 levels"),
    ("plot", "result", ["plot", "{res_nested.json}"], "nested more than 100 levels"),
    ("plot", "result", ["plot", "{res_dupkey.json}"], "key 'kind' appears twice"),
    ("plot", "result", ["plot", "{bar_strloss.json}"], "news.loss holds 'high', not a number"),
    ("plot", "result", ["plot", "{bar_t.json}"], "t holds 2.0, outside [0, 1]"),
    ("plot", "result", ["plot", "{bar_acc.json}"], "news.accuracy holds 1.5"),
    ("plot", "result", ["plot", "{bar_down.json}"], "t should rise"),
    ("plot", "result", ["plot", "{met_strloss.json}"], "loss row holds 'high'"),
    ("plot", "result", ["plot", "{met_acc.json}"], "accuracy row holds 7"),
    ("plot", "result", ["plot", "{met_init.json}"], "initial_accuracy holds 'x'"),
    ("plot", "result", ["plot", "{plane_str.json}"], "news.loss row holds 'x'"),
    ("plot", "result", ["plot", "{sweep_bool.json}"], "names no task"),
    ("plot", "result", ["plot", "{log.jsonl}"], "step 1: loss holds 'high'"),
    ("report", "result", ["report", "{run_broken}"], "not a JSON file"),
    ("report", "result", ["report", "{run_deep}"], "nested more than 100 levels"),
    ("report", "result", ["report", "{run_strloss}"], "loss row holds 'high'"),
    ("barrier", "adapter", ["barrier", "{deep_config}", GLOSS], "nested more than 100 levels"),
    ("barrier", "adapter", ["barrier", *A2, "--path", "bezier", "--control", "{deep_curve}"], "nested more than 100 levels"),
]


def messages(capsys) -> list[str]:
    """modeconn's own lines on stderr (progress bars, which also go there, left out)."""
    return [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("modeconn")]


def _tree(root):
    """Every file under ``root`` by its content's hash (folders as None): a byte changed anywhere shows."""
    import hashlib

    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in root.rglob("*") if not p.is_symlink()}


@pytest.mark.parametrize("command,kind,template,match", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(command, kind, template, match, bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("mine\n")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / ".modeconn.lock").write_text(f"{os.getpid()}\n")  # a live process holds it
    inputs = {**bad, "a_file": str(tmp_path / "a_file"), "foreign": str(tmp_path / "foreign"), "busy": str(tmp_path / "busy")}
    argv = [re.sub(r"\{([\w.]+)\}", lambda m: inputs[m.group(1)], part) for part in template]
    if "--out" not in argv and command != "plot":
        argv += ["--out", str(tmp_path / "out")]
    before, theirs = _tree(tmp_path), _tree(Path(bad["missing"]).parent)  # the user's folder, and the inputs' folder
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("modeconn: error:") and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert _tree(tmp_path) == before, "files were written or removed"
    assert _tree(Path(bad["missing"]).parent) == theirs, "an input was changed"


@pytest.mark.parametrize("space", ["factor"])
def test_a_killed_run_leaves_nothing_the_next_run_does_not_clean(tmp_path, capsys, space):
    """A SIGKILL during the final rename leaves a .modeconn-* folder, and a lock of a process that is gone; an
    adapter folder caught between the two renames of its swap sits aside. The next run cleans, restores and goes on."""
    out = tmp_path / "out"
    (out / ".modeconn-x1").mkdir(parents=True)
    (out / ".modeconn-x1" / "barrier.json").write_text('{"half": ')
    (out / ".modeconn.lock").write_text("999999999\n")  # no such process
    assert main(["barrier", NEWS, GLOSS, "--points", "2", "--limit", "2", "--no-accuracy", "--space", space,
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".modeconn.owned.json", "barrier.html", "barrier.json", "barrier.png"]

    from modeconn.outdir import claim

    run = tmp_path / "run"
    (run / ".modeconn-old.ab" / "news").mkdir(parents=True)  # the old adapter, moved aside
    (run / ".modeconn-old.ab" / "news" / "adapter_config.json").write_text("{}")
    (run / ".modeconn-news.cd").mkdir()  # its replacement, never moved in
    with claim(run, kind=None):
        pass
    assert sorted(p.name for p in run.iterdir()) == [".modeconn.owned.json", "news"]
    assert (run / "news" / "adapter_config.json").is_file()


def test_an_exception_during_the_final_rename_leaves_the_old_result(tmp_path, monkeypatch):
    import modeconn.files as files

    out = tmp_path / "out"
    args = ["barrier", NEWS, GLOSS, "--points", "2", "--limit", "2", "--no-accuracy", "--out", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = files.os.replace, []

    def dies_on_the_second_file(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user (or a signal) stops the command half-way through the renames
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", dies_on_the_second_file)
    assert main(args + ["--points", "3"]) == 130
    monkeypatch.setattr(files.os, "replace", real)
    assert [p.name for p in out.iterdir() if p.name.startswith(".modeconn")] == [".modeconn.owned.json"]  # no temp, no lock
    assert main(args) == 0 and {p.name: p.read_bytes() for p in out.iterdir()}.keys() == before.keys()


def test_a_diverging_run_stops_at_once_and_saves_nothing_non_finite(tmp_path, capsys):
    import warnings

    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:  # what would print above the error line
        warnings.simplefilter("always")
        code = main(["train", "--tasks", str(SEQ), "--order", "news,gloss", "--max-train", "16", "--batch-size", "8",
                     "--epochs", "1", "--lr", "1e30", "--eval-limit", "2", "--out", str(out)])
    err = messages(capsys)
    assert code == 2 and len(err) == 1 and "diverged" in err[0] and "task 'news', step" in err[0], err
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]  # peft's read of it, silenced
    assert not out.exists() or not [p for p in out.rglob("*.safetensors")]


def test_a_diverging_curve_fit_is_refused(tmp_path, capsys):
    code = main(["curve", NEWS, GLOSS, "--steps", "5", "--lr", "1e30", "--limit", "8", "--out", str(tmp_path / "c")])
    err = messages(capsys)
    assert code == 2 and len(err) == 1 and "diverged at step" in err[0], err
    assert not (tmp_path / "c").exists()


def test_non_finite_losses_are_written_as_null_with_a_warning(tmp_path, capsys):
    """An adapter scaled by 1e40 overflows float32: the result is written, its non-finite numbers as null."""
    from modeconn.plots.kinds import load_result

    huge = _adapter(tmp_path, "huge", edit_tensors=lambda t: [v.mul_(1e20) for v in t.values()])
    out = tmp_path / "out"
    code = main(["barrier", huge, GLOSS, "--data", f"news={DATA / 'news'}", "--points", "3", "--limit", "2", "--no-accuracy",
                 "--out", str(out)])
    err = messages(capsys)
    assert code == 0 and len(err) == 1 and err[0].startswith("modeconn: warning:") and "null" in err[0], err
    record = json.loads((out / "barrier.json").read_text())
    assert None in record["tasks"]["news"]["loss"]
    result = load_result(out / "barrier.json")
    assert any(v != v for v in result.tasks["news"].loss)  # NaN again in memory
    assert main(["plot", str(out / "barrier.json")]) == 0


def test_ctrl_c_during_training_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import modeconn.continual as continual

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(continual, "train_sequence", interrupted)
    code = main(["train", "--tasks", str(SEQ), "--out", str(tmp_path / "run")])
    err = messages(capsys)
    assert code == 130 and len(err) == 1 and "--resume" in err[0], err


def _api_cases():
    """Python calls with a wrong type (issue 23): each is one ModeconnError at the door, before any model loads."""
    import modeconn
    from modeconn.analysis.study import Study

    seq, config, news = modeconn.get_method("seq"), modeconn.TrainConfig(), [("news", DATA / "news")]
    return {
        "load_adapter allow_pickle='no'": (lambda o: modeconn.load_adapter(NEWS, allow_pickle="no"), "allow_pickle must be True or False"),
        "load_adapter(5)": (lambda o: modeconn.load_adapter(5), "location must be"),
        "measure_barrier data=str": (lambda o: modeconn.measure_barrier([NEWS, GLOSS], modeconn.StudySettings(data=str(DATA / "news"))),
                                     "single str"),
        "measure_barrier data=[5]": (lambda o: modeconn.measure_barrier([NEWS, GLOSS], modeconn.StudySettings(data=[5])), "5"),
        "measure_barrier settings={}": (lambda o: modeconn.measure_barrier([NEWS, GLOSS], {}),
                                        "settings must be a StudySettings"),
        "measure_barrier(a, b)": (lambda o: modeconn.measure_barrier(NEWS, GLOSS), "takes its adapters as one list"),
        "measure_barrier base=5": (lambda o: modeconn.measure_barrier([NEWS, GLOSS], modeconn.StudySettings(base=5)), "base must be"),
        "measure_barrier allow_pickle='no'": (lambda o: modeconn.StudySettings(allow_pickle="no"), "allow_pickle"),
        "measure_barrier control on a line": (lambda o: modeconn.measure_barrier([NEWS, GLOSS], control=FORTUNE),
                                              "control has no effect"),
        "measure_barrier b=5": (lambda o: modeconn.measure_barrier([NEWS, 5]), "adapters[1] must be"),
        "measure_barrier three adapters": (lambda o: modeconn.measure_barrier([NEWS, GLOSS, FORTUNE]), "must list 2 adapters"),
        "StudySettings prompt_field without data": (lambda o: modeconn.StudySettings(prompt_field="text"), "--data"),
        "Study.open([])": (lambda o: Study.open([]), "locations must list at least 1"),
        "Study.open(str)": (lambda o: Study.open(NEWS), "single str"),
        "sweep curves_out without a curve": (lambda o: modeconn.sweep_sequence(str(SEQ), curves_out=str(o)), "curves_out has no effect"),
        "sweep curve='yes'": (lambda o: modeconn.sweep_sequence(str(SEQ), curve="yes"), "curve must be a CurveConfig or None"),
        "measure_plane marks=str": (lambda o: modeconn.measure_plane([NEWS, GLOSS, FORTUNE], marks=NEWS), "single str"),
        "fit_curve config={}": (lambda o: modeconn.fit_curve([NEWS, GLOSS], config={}), "config must be a CurveConfig"),
        "evaluate_path(None, ...)": (lambda o: modeconn.evaluate_path(None, None, None, [0.0], {}), "model must be a model"),
        "evaluate_path tokenizer None": (lambda o: modeconn.evaluate_path(torch.nn.Linear(1, 1), None, None, [0.0], {}),
                                         "tokenizer must be"),
        "load_task_data(str)": (lambda o: modeconn.load_task_data(str(DATA / "news")), "single str"),
        "TrainRequest tasks=str": (lambda o: modeconn.TrainRequest("tiny-llama", str(SEQ), seq, config),
                                     "tasks must be a non-empty list of (task name, task folder) pairs"),
        "TrainRequest config={}": (lambda o: modeconn.TrainRequest("tiny-llama", news, seq, {}), "config must be a TrainConfig"),
        "TrainRequest base=5": (lambda o: modeconn.TrainRequest(5, news, seq, config), "base must be"),
        "train_sequence resume='no'": (lambda o: modeconn.train_sequence(modeconn.TrainRequest("tiny-llama", news, seq, config),
                                                                         o, resume="no"),
                                       "resume must be True or False"),
        "train_sequence request=str": (lambda o: modeconn.train_sequence("tiny-llama", o), "request must be a TrainRequest"),
        "TrainRequest method='seq'": (lambda o: modeconn.TrainRequest("tiny-llama", news, "seq", config),
                                        "method must be a continual method"),
    }


@pytest.mark.parametrize("case", list(_api_cases()))
def test_the_python_api_refuses_a_wrong_type_at_the_door(case, tmp_path, monkeypatch):
    from modeconn.errors import ModeconnError

    monkeypatch.chdir(tmp_path)
    call, match = _api_cases()[case]
    out = tmp_path / "out"
    with pytest.raises(ModeconnError) as raised:
        call(out)
    message = str(raised.value)
    assert match in message and "\n" not in message, message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_disk_too_small_for_the_plan_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """Free space is checked against what the command will write: a result's files, or a run's adapters, state and log
    (after the base is set up, before the first step), so a full disk is not met half-way."""
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("mine\n")
    before = _tree(tmp_path)
    for argv, need in ((["barrier", NEWS, GLOSS, "--points", "2", "--limit", "2", "--out", "r"], "writing the result"),
                       (["plot", str(SEQ / "metrics.json"), "--out", "p"], "drawing the result"),
                       (["train", "--tasks", str(SEQ), "--order", "news", "--max-train", "8", "--batch-size", "8", "--epochs",
                         "1", "--eval-limit", "2", "--out", "t"], "training 1 task ")):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("modeconn")]
        assert code == 2 and len(lines) == 1 and need in lines[0] and "1.0 MiB free" in lines[0], err
        assert "Traceback" not in err
    assert _tree(tmp_path) == before, "files were written or removed"


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_part_file(tmp_path, capsys, monkeypatch):
    import errno

    import modeconn.files as files

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "_fill", full)
    out = tmp_path / "out"
    code = main(["barrier", NEWS, GLOSS, "--points", "2", "--limit", "2", "--no-accuracy", "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("modeconn")]
    assert code == 2 and len(lines) == 1 and "the disk is full" in lines[0] and "Traceback" not in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.name.startswith(".modeconn-") or p.suffix in (".json", ".png", ".html")
                                    and p.name != ".modeconn.owned.json"]


def test_a_skipped_fp16_step_logs_null_not_nan(tmp_path):
    """An fp16 step the loss scaler skipped has an infinite gradient norm: train_log.jsonl stays JSON (null, named in
    not_finite), and the log reads back and plots."""
    from types import SimpleNamespace

    from modeconn.continual.run_folder import LOG
    from modeconn.continual.step import StepResult
    from modeconn.continual.train_log import TrainLog
    from modeconn.continual.trainer import _log
    from modeconn.plots.kinds import load_result

    lines = []
    folder = SimpleNamespace(log_step=lambda record: lines.append(json.dumps(record, allow_nan=False)))
    for step, norm in ((1, float("inf")), (2, 0.5)):
        run = SimpleNamespace(accelerator=SimpleNamespace(is_main_process=True, log_with=None), world=1,
                              run=SimpleNamespace(global_step=step, epoch=0))
        _log(run, folder, StepResult(1.0, norm, 8, {}, skipped=norm != 0.5, loss_scale=65536.0), task="news", lr=1e-3,
             seconds=0.1)
    first = json.loads(lines[0])
    assert first["grad_norm"] is None and first["not_finite"] == ["grad_norm"] and first["skipped"] is True
    assert "not_finite" not in json.loads(lines[1])
    (tmp_path / LOG).write_text("".join(f"{line}\n" for line in lines))
    assert TrainLog.read(tmp_path / LOG).series("grad_norm") == ([2], [0.5])
    assert isinstance(load_result(tmp_path / LOG), TrainLog)
