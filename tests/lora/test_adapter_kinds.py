"""Every adapter peft writes is analysed exactly or refused in one line (peft's TEST_CASES idea: one table of kinds).

Each field of peft's ``LoraConfig`` is decided in ``modeconn.lora.config_fields.FIELDS``; each supported kind is an
adapter written by plain peft on a tiny random LLaMA (GPT-2 for ``fan_in_fan_out``) whose endpoint losses equal peft's
own forward; each refused kind gives its one line."""
from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import peft
import pytest
import torch
from packaging.version import Version
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.config import (CordaConfig, EvaConfig, KasaConfig, LoftQConfig, LoraGAConfig, LoraRuntimeConfig,
                                     MontecloraConfig, VeloraConfig)
try:
    from peft.tuners.lora.config import AstraConfig  # peft 0.22 on
except ImportError:
    AstraConfig = None
from safetensors.torch import load_file

from helpers import MODEL_KINDS, peft_loss, tiny_model
from modeconn.cli import main
from modeconn.errors import CheckpointError
from modeconn.evaluator.data import Example
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora.adapters import load_adapter
from modeconn.lora.config_fields import CONVERT, FIELDS
from modeconn.lora.paths import linear_path

EXAMPLES = [Example("Which topic is this news story about?\nShares rose sharply on Monday\nTopic:", "business"),
            Example("a longer prompt " * 6, "tech and more words")]
SEQ = checkpoints_dir() / "seq"
README = Path(__file__).resolve().parents[2] / "README.md"
PEFT = Version(peft.__version__)
ADDED = {"astra_config": "0.22.0"}  # fields the table decides that an older installed peft lacks: field → first peft
INSTALLED = {f.name for f in dataclasses.fields(LoraConfig)}
ASTRA = {"astra_config": AstraConfig()} if AstraConfig else {}

# kind: (fields it exercises, model kind, LoraConfig options); the config is what peft itself writes
SUPPORTED = {
    "default": (["r", "target_modules", "lora_alpha"], "llama", {}),
    "init-false": (["init_lora_weights"], "llama", dict(init_lora_weights=False)),
    "init-gaussian": (["init_lora_weights"], "llama", dict(init_lora_weights="gaussian")),
    "init-eva": (["init_lora_weights", "eva_config"], "llama", dict(init_lora_weights="eva", eva_config=EvaConfig())),
    "init-orthogonal": (["init_lora_weights"], "llama", dict(init_lora_weights="orthogonal")),
    "init-mica": (["init_lora_weights"], "llama", dict(init_lora_weights="mica")),
    "use_rslora": (["use_rslora"], "llama", dict(use_rslora=True, lora_alpha=6)),
    "patterns": (["rank_pattern", "alpha_pattern"], "llama", dict(rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 10})),
    "rslora-patterns": (["use_rslora", "rank_pattern", "alpha_pattern"], "llama",
                        dict(use_rslora=True, rank_pattern={"q_proj": 2}, alpha_pattern={"down_proj": 3})),
    "layers_to_transform": (["layers_to_transform", "layers_pattern"], "llama", dict(layers_to_transform=[1], layers_pattern="layers")),
    "exclude_modules": (["exclude_modules"], "llama", dict(exclude_modules=["model.layers.0.self_attn.q_proj"])),
    "lora_dropout": (["lora_dropout"], "llama", dict(lora_dropout=0.3)),
    "fan_in_fan_out": (["fan_in_fan_out"], "gpt2", dict(fan_in_fan_out=True)),
    "velora": (["velora_config"], "llama", dict(velora_config=VeloraConfig(num_groups=4))),
    "metadata": (["task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
                  "inference_mode", "megatron_core", "qalora_group_size", "loftq_config", "corda_config", "lora_ga_config",
                  "runtime_config", "ensure_weight_tying", *ASTRA], "llama",
                 dict(task_type=None, revision="v1", inference_mode=True, megatron_core="megatron.x", qalora_group_size=32,
                      runtime_config=LoraRuntimeConfig(ephemeral_gpu_offload=True), ensure_weight_tying=True,
                      loftq_config=LoftQConfig(loftq_bits=4), corda_config=CordaConfig(), lora_ga_config=LoraGAConfig(),
                      **ASTRA)),
}
PISSA_CONVERTED = ["init_lora_weights"]  # the converted PiSSA adapter (peft's conversion), tested on its own below

# kind: (field refused, LoraConfig options written by peft, or None with an adapter_config edit, text of the line)
REFUSED = {
    "use_dora": ("use_dora", dict(use_dora=True), None, "DoRA"),
    "alora": ("alora_invocation_tokens", dict(alora_invocation_tokens=[5, 6]), None, "aLoRA"),
    "pissa": ("init_lora_weights", dict(init_lora_weights="pissa"), None, CONVERT),
    "pissa-niter": ("init_lora_weights", dict(init_lora_weights="pissa_niter_2"), None, CONVERT),
    "olora": ("init_lora_weights", dict(init_lora_weights="olora"), None, CONVERT),
    "corda": ("init_lora_weights", None, {"init_lora_weights": "corda"}, CONVERT),
    "loftq": ("init_lora_weights", None, {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4}}, CONVERT),
    "lora_ga": ("init_lora_weights", None, {"init_lora_weights": "lora_ga"}, CONVERT),
    "astra": ("init_lora_weights", None, {"init_lora_weights": "astra"}, CONVERT),
    "unknown-init": ("init_lora_weights", None, {"init_lora_weights": "fancy"}, "does not know"),
    "bias": ("bias", dict(bias="all"), None, "biases"),
    "lora_bias": ("lora_bias", dict(lora_bias=True), None, "lora_B has a bias"),
    "modules_to_save": ("modules_to_save", dict(modules_to_save=["lm_head"]), None, "full copies"),
    "trainable_token_indices": ("trainable_token_indices", dict(trainable_token_indices=[5, 6]), None, "token embeddings"),
    "layer_replication": ("layer_replication", dict(layer_replication=[[0, 2], [1, 2]]), None, "repeated base layers"),
    "target_parameters": ("target_parameters", dict(target_modules=[], target_parameters=["mlp.down_proj.weight"]), None,
                          "bare parameters"),
    "use_qalora": ("use_qalora", dict(use_qalora=True), None, "QA-LoRA"),
    "kasa": ("kasa_config", dict(kasa_config=KasaConfig()), None, "KaSA"),
    "monteclora": ("monteclora_config", dict(monteclora_config=MontecloraConfig()), None, "MonteCLoRA"),
    "megatron": ("megatron_config", None, {"megatron_config": {"tensor_model_parallel_size": 2}}, "Megatron"),
    "bdlora": ("use_bdlora", None, {"use_bdlora": {}}, "BD-LoRA"),
    "arrow": ("arrow_config", None, {"arrow_config": {}}, "Arrow"),
    "peft_type": ("peft_type", None, {"peft_type": "IA3"}, "modeconn works on LoRA adapters"),
    "base_name": ("base_model_name_or_path", None, {"base_model_name_or_path": 5}, "a string"),
    "newer-peft": (None, None, {"future_option": True}, "does not know"),
}


def write_adapter(folder, seed: int, kind: str = "llama", **options) -> str:
    """An adapter saved by plain peft on a fresh tiny model, every factor random and non-zero whatever the init did."""
    _, targets, _ = MODEL_KINDS[kind]
    model = tiny_model(kind)
    options = {"r": 4, "lora_alpha": 8, "target_modules": targets, "task_type": "CAUSAL_LM", **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on the options (EVA without data, Conv1D and fan_in_fan_out)
        peft_model = get_peft_model(model, LoraConfig(**options))
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in peft_model.modules():
                for factors in (getattr(module, "lora_A", None), getattr(module, "lora_B", None)):
                    for layer in (factors or {}).values():
                        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.2)
        peft_model.save_pretrained(folder)
    return str(folder)


def endpoint_errors(kind: str, folders: list[str], tokenizer) -> list[tuple[float, float]]:
    """(modeconn's endpoint loss, peft's) at t = 0 and t = 1, each on a fresh copy of the base as the user has it."""
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    ours = evaluate_path(tiny_model(kind), tokenizer, path, [0.0, 1.0], {"x": EXAMPLES},
                         EvalConfig(accuracy=False, progress=False)).tasks["x"].loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [peft_loss(tiny_model(kind), f, tokenizer, EXAMPLES) for f in folders]
    return list(zip(ours, theirs))


def test_every_loraconfig_field_is_decided():
    """A field a new peft adds fails here until the table says what loading does with it; the table holds no field
    that the installed peft lacks except those a later peft added (``ADDED``)."""
    assert INSTALLED <= set(FIELDS), INSTALLED - set(FIELDS)
    assert set(FIELDS) - INSTALLED <= {name for name, since in ADDED.items() if PEFT < Version(since)}
    assert {d.effect for d in FIELDS.values()} <= {"ignored", "supported", "refused"}


def test_every_decision_is_backed_by_a_case_and_listed_in_the_readme():
    tested = {f for fields, _, _ in SUPPORTED.values() for f in fields} | set(PISSA_CONVERTED)
    refused = {case[0] for case in REFUSED.values()}
    for name, decision in FIELDS.items():
        assert name in (refused if decision.effect == "refused" else tested) or name not in INSTALLED, name
        assert f"`{name}`" in README.read_text(), f"README's adapter table lacks {name}"


@pytest.mark.parametrize("case", list(SUPPORTED))
def test_supported_kind_equals_peft_forward(case, tokenizer, tmp_path):
    _, kind, options = SUPPORTED[case]
    folders = [write_adapter(tmp_path / f"a{seed}", seed, kind, **options) for seed in (1, 2)]
    for ours, theirs in endpoint_errors(kind, folders, tokenizer):
        assert ours == pytest.approx(theirs, rel=1e-6), case


def test_pissa_converted_by_peft_equals_peft_forward(tokenizer, tmp_path):
    """PiSSA saved through peft's conversion is a plain LoRA (rank 2r) on the original base: exact."""
    folders = []
    for seed in (1, 2):
        model = tiny_model("llama")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=MODEL_KINDS["llama"][1],
                                                          init_lora_weights="pissa", task_type="CAUSAL_LM"))
            peft_model.peft_config["default"].init_lora_weights = True
            peft_model.save_pretrained(tmp_path / f"init{seed}")
            peft_model.peft_config["default"].init_lora_weights = "pissa"
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for module in peft_model.modules():
                    if hasattr(module, "lora_B") and "default" in module.lora_B:
                        weight = module.lora_B["default"].weight
                        weight.add_(torch.randn(weight.shape, generator=generator) * 0.05)
            peft_model.save_pretrained(tmp_path / f"a{seed}", **{CONVERT: str(tmp_path / f"init{seed}")})
        folders.append(str(tmp_path / f"a{seed}"))
    assert load_adapter(folders[0]).rank("model.layers.0.self_attn.q_proj") == 8
    for ours, theirs in endpoint_errors("llama", folders, tokenizer):
        assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_kind_is_one_line(case, tmp_path):
    field, options, edit, text = REFUSED[case]
    folder = write_adapter(tmp_path / "a", 1, **(options or {}))
    if edit is not None:
        config_path = Path(folder) / "adapter_config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **edit}))
    with pytest.raises(CheckpointError) as refused:
        load_adapter(folder)
    line = str(refused.value)
    assert text in line and "\n" not in line, line
    assert field is None or field in line or case == "peft_type", line


def test_a_field_newer_peft_writes_at_its_default_is_accepted(tmp_path):
    folder = write_adapter(tmp_path / "a", 1)
    config_path = Path(folder) / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "future_option": None}))
    assert load_adapter(folder).modules


def _edited(root: Path, name: str, edit: dict) -> str:
    folder = root / name
    shutil.copytree(SEQ / "news", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **edit}))
    return str(folder)


@pytest.mark.parametrize("edit,text", [({"alora_invocation_tokens": [5, 6]}, "aLoRA"),
                                       ({"init_lora_weights": "pissa"}, CONVERT),
                                       ({"init_lora_weights": "olora"}, CONVERT),
                                       ({"lora_bias": True}, "lora_bias"),
                                       ({"modules_to_save": ["lm_head"]}, "modules_to_save")])
def test_cli_refuses_in_one_line_with_exit_2(edit, text, tmp_path, capsys):
    adapter = _edited(tmp_path, "x", edit)
    code = main(["barrier", adapter, str(SEQ / "gloss"), "--points", "2", "--limit", "2", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("modeconn: error:") and text in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_pickle_only_adapter_on_the_embedded_base_with_allow_pickle_equals_safetensors(tmp_path, capsys):
    """--allow-pickle widens: the embedded base still loads from safetensors, the adapters from their .bin copies."""
    copies = []
    for task in ("news", "gloss"):
        folder = tmp_path / task
        shutil.copytree(SEQ / task, folder)
        torch.save(load_file(folder / "adapter_model.safetensors"), folder / "adapter_model.bin")
        (folder / "adapter_model.safetensors").unlink()
        copies.append(str(folder))
    common = ["--points", "3", "--limit", "3", "--no-accuracy", "--data", f"news={checkpoints_dir() / 'data' / 'news'}"]
    assert main(["barrier", str(SEQ / "news"), str(SEQ / "gloss"), *common, "--out", str(tmp_path / "st")]) == 0
    assert main(["barrier", *copies, *common, "--allow-pickle", "--out", str(tmp_path / "bin")]) == 0
    capsys.readouterr()
    loss = [json.loads((tmp_path / out / "barrier.json").read_text())["tasks"]["news"]["loss"] for out in ("st", "bin")]
    assert loss[0] == loss[1]
