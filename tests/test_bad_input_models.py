"""Bad base models and adapters, as a careless or hostile user brings them: exit code 2, one line on stderr (transformers'
load report, torch's pickle warnings folded in), no traceback, nothing written. The style of tests/test_bad_input.py,
with stderr captured at the file descriptor, where library loggers write, and every warning recorded."""
from __future__ import annotations

import json
import re
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir

EMBEDDED = checkpoints_dir()
SEQ, DATA = EMBEDDED / "seq", EMBEDDED / "data"
NEWS, GLOSS = str(SEQ / "news"), str(SEQ / "gloss")
QUICK = ["--points", "2", "--limit", "2", "--no-accuracy"]


def _base(root, name, config=None, tensors=None, weights=None):
    """A copy of the embedded base with its config.json edited, its tensors edited, or its weights file replaced."""
    folder = root / name
    shutil.copytree(EMBEDDED / "base", folder)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config(json.loads((folder / "config.json").read_text()))))
    if tensors is not None:
        save_file(tensors(load_file(folder / "model.safetensors")), folder / "model.safetensors", metadata={"format": "pt"})
    if weights is not None:
        (folder / "model.safetensors").unlink()
        file_name, content = weights
        (folder / file_name).write_bytes(content)
    return str(folder)


def _adapter(root, name, config=None, tensors=None, pickle=False, source=NEWS):
    folder = root / name
    shutil.copytree(source, folder)
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config(json.loads((folder / "adapter_config.json").read_text()))))
    if tensors is not None:
        save_file(tensors(load_file(folder / "adapter_model.safetensors")), folder / "adapter_model.safetensors")
    if pickle:
        (folder / "adapter_model.safetensors").unlink()
        (folder / "adapter_model.bin").write_bytes(pickle)
    return str(folder)


def _hostile(marker) -> bytes:
    """A pickle that, if it ever ran, would create ``marker``."""
    return b"\x80\x04cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def _vocab(tensors, rows=1000):
    return {k: (v[:rows].contiguous() if "embed_tokens" in k or "lm_head" in k else v) for k, v in tensors.items()}


def _rank0(tensors):
    return {k: (v[:0] if "lora_A" in k else v[:, :0]).contiguous() for k, v in tensors.items()}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    marker = root / "PWNED"
    b = {"marker": str(marker)}
    b["junk_base"] = _base(root, "junk_base", weights=("model.safetensors", b"this is not a safetensors file"))
    b["truncated_base"] = _base(root, "truncated_base", weights=(
        "model.safetensors", (EMBEDDED / "base" / "model.safetensors").read_bytes()[:5000]))
    b["vocab_base"] = _base(root, "vocab_base", lambda c: {**c, "vocab_size": 1000}, _vocab)
    b["more_layers"] = _base(root, "more_layers", lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] + 1})
    b["fewer_layers"] = _base(root, "fewer_layers", lambda c: {**c, "num_hidden_layers": c["num_hidden_layers"] - 1})
    b["wrong_shape"] = _base(root, "wrong_shape", lambda c: {**c, "intermediate_size": c["intermediate_size"] // 2})
    b["evil_base"] = _base(root, "evil_base", weights=("pytorch_model.bin", _hostile(marker)))
    b["junk_pickle_base"] = _base(root, "junk_pickle_base", weights=("pytorch_model.bin", b"not a pickle"))
    b["base_is_5"] = _adapter(root, "base_is_5", lambda c: {**c, "base_model_name_or_path": 5})
    b["base_is_5b"] = _adapter(root, "base_is_5b", lambda c: {**c, "base_model_name_or_path": 5}, source=GLOSS)
    b["base_is_list"] = _adapter(root, "base_is_list", lambda c: {**c, "base_model_name_or_path": ["tiny-llama"]})
    b["rank0"] = _adapter(root, "rank0", lambda c: {**c, "r": 0}, _rank0)
    b["rank_says_4"] = _adapter(root, "rank_says_4", lambda c: {**c, "r": 4})
    b["evil_adapter"] = _adapter(root, "evil_adapter", pickle=_hostile(marker))
    b["junk_pickle_adapter"] = _adapter(root, "junk_pickle_adapter", pickle=b"\x80\x04not really")
    b["alora"] = _adapter(root, "alora", lambda c: {**c, "alora_invocation_tokens": [5, 6]})
    b["pissa"] = _adapter(root, "pissa", lambda c: {**c, "init_lora_weights": "pissa_niter_4"})
    return b


DATA_NEWS = ["--data", f"news={DATA / 'news'}"]
CASES = [
    # --- bases ---
    ("junk safetensors", ["barrier", NEWS, GLOSS, "--base", "{junk_base}"], "SafetensorError"),
    ("truncated safetensors", ["barrier", NEWS, GLOSS, "--base", "{truncated_base}"], "cannot load base model"),
    ("tokenizer larger than the embedding", ["barrier", NEWS, GLOSS, "--base", "{vocab_base}"], "tokenizer has 4096 tokens"),
    ("config with a layer more", ["barrier", NEWS, GLOSS, "--base", "{more_layers}"], "missing from its weights"),
    ("config with a layer less", ["barrier", NEWS, GLOSS, "--base", "{fewer_layers}"], "not in the model"),
    ("weights of another shape", ["barrier", NEWS, GLOSS, "--base", "{wrong_shape}"], "another shape"),
    ("hostile pickle base", ["barrier", NEWS, GLOSS, "--base", "{evil_base}", "--allow-pickle"], "os.system"),
    ("junk pickle base", ["barrier", NEWS, GLOSS, "--base", "{junk_pickle_base}", "--allow-pickle"], "cannot load base model"),
    ("train on a layer more", ["train", "--tasks", str(SEQ), "--base", "{more_layers}", "--max-train", "8"],
     "missing from its weights"),
    ("train on a hostile pickle", ["train", "--tasks", str(SEQ), "--base", "{evil_base}", "--allow-pickle", "--max-train", "8"],
     "os.system"),
    # --- adapters ---
    ("base name 5", ["barrier", "{base_is_5}", "{base_is_5b}", *DATA_NEWS], "base_model_name_or_path=5"),
    ("base name a list", ["barrier", "{base_is_list}", GLOSS], "a string"),
    ("rank 0", ["barrier", "{rank0}", GLOSS], "rank 0"),
    ("rank 0 in delta space", ["barrier", "{rank0}", GLOSS, "--space", "delta"], "rank 0"),
    ("config rank not the tensors'", ["barrier", "{rank_says_4}", GLOSS, "--space", "delta"], "rank 8 but its config says 4"),
    ("hostile pickle adapter", ["barrier", "{evil_adapter}", GLOSS, "--allow-pickle"], "os.system"),
    ("junk pickle adapter", ["barrier", "{junk_pickle_adapter}", GLOSS, "--allow-pickle"], "refused or unreadable"),
    ("aLoRA", ["barrier", "{alora}", GLOSS], "aLoRA"),
    ("PiSSA unconverted", ["landscape", "{pissa}"], "path_initial_model_for_weight_conversion"),
]


def _tree(root):
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else None)
            for p in root.rglob("*") if not p.is_symlink()}


@pytest.mark.parametrize("name,template,match", CASES, ids=[c[0].replace(" ", "-") for c in CASES])
def test_bad_model_is_one_line_exit_2_and_writes_nothing(name, template, match, bad, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    argv = [re.sub(r"\{(\w+)\}", lambda m: bad[m.group(1)], part) for part in template]
    argv += [*QUICK] if argv[0] == "barrier" else []
    argv += ["--out", str(tmp_path / "out")]
    before = _tree(tmp_path)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as shown:  # pytest would hold back the warnings the user sees
        warnings.simplefilter("always")
        code = main(argv)
    err = capfd.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert not shown, [str(w.message)[:200] for w in shown]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("modeconn: error:") and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert _tree(tmp_path) == before, "files were written or removed"
    assert not (tmp_path / bad["marker"]).exists(), "the hostile pickle ran"


def test_a_pickle_only_base_with_allow_pickle_equals_its_safetensors_original(tmp_path, capfd):
    """--allow-pickle reads a base's pytorch_model.bin where it has no safetensors file (weights_only=True)."""
    base = _base(tmp_path, "bin_base")
    torch.save(load_file(f"{base}/model.safetensors"), f"{base}/pytorch_model.bin")
    (tmp_path / "bin_base" / "model.safetensors").unlink()
    args = ["barrier", NEWS, GLOSS, *QUICK, *DATA_NEWS]
    assert main([*args, "--out", str(tmp_path / "st")]) == 0
    assert main([*args, "--base", base, "--allow-pickle", "--out", str(tmp_path / "bin")]) == 0
    capfd.readouterr()
    loss = [json.loads((tmp_path / out / "barrier.json").read_text())["tasks"]["news"]["loss"] for out in ("st", "bin")]
    assert loss[0] == loss[1]
