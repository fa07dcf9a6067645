"""Loading adapters: what peft wrote comes back exactly; anything unsafe or malformed is refused with a clear message."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import make_adapter, tiny_model
from modeconn.lora.adapters import load_adapter, save_adapter
from modeconn.errors import CheckpointError


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


@pytest.fixture()
def adapter(model, tmp_path):
    return make_adapter(model, tmp_path / "a", "llama", seed=1)


def test_factors_and_scale_match_peft_modules(model, tmp_path):
    from peft import PeftModel

    folder = make_adapter(model, tmp_path / "p", "llama", seed=2, rank=4, alpha=6, use_rslora=True,
                          rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 10})
    weights = load_adapter(folder)
    peft_model = PeftModel.from_pretrained(model, folder)
    for name, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a, b = weights.factors[name]
            assert torch.equal(a, module.lora_A["default"].weight)
            assert torch.equal(b, module.lora_B["default"].weight)
            assert weights.scaling[name] == pytest.approx(module.scaling["default"])
    peft_model.unload()
    assert weights.rank("model.layers.0.mlp.down_proj") == 2


def test_save_then_load_round_trip(adapter, tmp_path):
    weights = load_adapter(adapter)
    again = load_adapter(save_adapter(weights, tmp_path / "copy"))
    for m in weights.modules:
        assert torch.allclose(again.delta(m), weights.delta(m), atol=1e-6)
    assert again.base_model == weights.base_model


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such adapter folder"):
        load_adapter(tmp_path / "nowhere")


def test_folder_that_is_not_an_adapter(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a peft adapter folder"):
        load_adapter(tmp_path)


def test_pickle_adapter_needs_explicit_permission(adapter, tmp_path):
    folder = tmp_path / "bin"
    shutil.copytree(adapter, folder)
    tensors = load_file(folder / "adapter_model.safetensors")
    (folder / "adapter_model.safetensors").unlink()
    torch.save(tensors, folder / "adapter_model.bin")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_adapter(folder)
    weights = load_adapter(folder, allow_pickle=True)
    assert set(weights.factors) == set(load_adapter(adapter).factors)


def test_nan_weights_are_refused(adapter):
    path = f"{adapter}/adapter_model.safetensors"
    tensors = load_file(path)
    key = next(iter(tensors))
    tensors[key][0, 0] = float("nan")
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_adapter(adapter)


def test_dora_is_refused(adapter):
    cfg_path = f"{adapter}/adapter_config.json"
    cfg = json.loads(open(cfg_path).read())
    cfg["use_dora"] = True
    open(cfg_path, "w").write(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="DoRA"):
        load_adapter(adapter)


def test_a_saved_adapter_on_index_named_modules_loads_in_peft_on_exactly_its_modules(tmp_path):
    """CTRL's feed-forward layers are named ``ffn.0`` and ``ffn.2``: written as short names, ``0`` would also match
    the whole block ``h.0``, and peft would fail to load the saved adapter. Its full names are written instead."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from tiny_configs import tiny_causal_lm

    targets = r"transformer\.h\.\d+\.(ffn\.0|multi_head_attention\.Wq)"
    peft_model = get_peft_model(tiny_causal_lm("ctrl"), LoraConfig(r=2, lora_alpha=4, target_modules=targets,
                                                                   init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "written")
    save_adapter(load_adapter(tmp_path / "written"), tmp_path / "resaved")
    reloaded = PeftModel.from_pretrained(tiny_causal_lm("ctrl"), tmp_path / "resaved")
    adapted = lambda m: sorted(n for n, mod in m.named_modules() if hasattr(mod, "lora_A") and "default" in mod.lora_A)
    assert adapted(reloaded) == adapted(peft_model)
    ids = torch.randint(0, 4096, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, peft_model(input_ids=ids).logits, rtol=1e-5, atol=1e-6)
