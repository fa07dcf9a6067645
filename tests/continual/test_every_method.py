"""Every method trains a short stream of two embedded tasks; what it writes is what the analysis side and
`modeconn compare` read, and each method's defining property holds (per-task models and own prompts cannot forget;
O-LoRA's checkpoints stack the tasks' LoRAs; the prompt methods' folders are refused by the analyses)."""
import json

import pytest
import torch

from modeconn.cli import main
from modeconn.continual import METHODS, TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora.adapters import load_adapter

DATA = checkpoints_dir() / "data"
TASKS = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
SHORT = dict(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=8, max_train=16, seed=5, lr=3e-3)
OPTIONS = {"er": {"buffer_size": 8}, "ilora": {"buffer_size": 8}, "sure": {"buffer_size": 8},
           "agem": {"buffer_size": 8}, "gem": {"buffer_size": 8}, "seq-path": {"buffer_size": 8}, "mc-sgd": {"buffer_size": 8}, "ewc": {"fisher_samples": 8},
           "pp": {"pp_length": 3}, "l2p": {"l2p_pool": 4, "l2p_length": 2, "l2p_top_k": 2},
           **dict.fromkeys(("merge", "ties", "magmax"), {"buffer_size": 8, "merge_scales": "0.5,1"})}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("every")
    out = {}
    for name in METHODS:
        method = get_method(name, seed=5, **OPTIONS.get(name, {}))
        run = train_sequence(TrainRequest("tiny-llama", TASKS, method, TrainConfig(**SHORT), eval_limit=6),
                             root / name, name=f"{name}-seed5", progress=False)
        out[name] = (root / name, run)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_writes_a_complete_run(runs, name):
    folder, run = runs[name]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["method"] == name and len(metrics["accuracy"]) == 2
    assert all(0.0 <= a <= 1.0 for row in metrics["accuracy"] for a in row)
    assert 0.0 <= metrics["AP"] <= 1.0
    kind = METHODS[name].checkpoint_kind
    for task in ("news", "gloss"):
        if kind == "lora":  # a plain peft adapter folder, nothing else in it
            assert {p.name for p in (folder / task).iterdir()} <= {"README.md", "adapter_config.json",
                                                                   "adapter_model.safetensors"}
            weights = load_adapter(folder / task)
            assert weights.modules and all(torch.isfinite(a).all() for a, _ in weights.factors.values())
        else:
            assert (folder / task / "prompts.safetensors").is_file() and (folder / task / "prompt_config.json").is_file()


@pytest.mark.slow
def test_every_memory_method_keeps_the_same_memory(runs):
    """One buffer setting, one memory size M for every method that keeps labelled past examples."""
    kept = {name: json.loads((runs[name][0] / "metrics.json").read_text())["memory_examples"]
            for name in ("er", "ilora", "sure", "agem", "gem", "seq-path", "mc-sgd", "merge", "ties", "magmax")}
    assert kept == dict.fromkeys(kept, 8)


@pytest.mark.slow
def test_compare_reads_every_method(runs, tmp_path):
    folders = [str(folder) for folder, _ in runs.values()]
    assert main(["compare", *folders, "--baseline", "er", "--out", str(tmp_path / "cmp"), "--json"]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    # the dual learners' second learner is a group of its own, scored on the same runs
    assert set(result["groups"]) == set(METHODS) | {"ilora:fast", "sure:fast"}
    assert set(result["paired"]) >= set(METHODS) - {"er"}
    fast = json.loads((runs["sure"][0] / "metrics.json").read_text())["method_record"]["other_learner"]
    assert result["summary"]["sure:fast"]["AP"]["mean"] == pytest.approx(fast["AP"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["one", "pp"])
def test_per_task_models_and_own_prompts_cannot_forget(runs, name):
    metrics = runs[name][1].metrics
    assert metrics.accuracy[1][0] == metrics.accuracy[0][0] and metrics.loss[1][0] == pytest.approx(metrics.loss[0][0], abs=1e-6)
    assert metrics.bwt == 0.0


@pytest.mark.slow
def test_one_scores_untrained_tasks_with_the_base_model(runs):
    metrics = runs["one"][1].metrics
    assert metrics.loss[0][1] == pytest.approx(metrics.initial_loss[1], abs=1e-6)  # no transfer: FWT exactly 0
    assert metrics.fwt == 0.0


@pytest.mark.slow
def test_olora_checkpoints_stack_the_task_loras(runs):
    folder = runs["olora"][0]
    first, second = load_adapter(folder / "news"), load_adapter(folder / "gloss")
    module = first.modules[0]
    a1, b1 = first.factors[module]
    a2, b2 = second.factors[module]
    assert a1.shape[0] == 2 * 4 and first.scaling[module] == pytest.approx(8 / 4)  # rank r·T, the scale α/r kept
    assert torch.equal(a2[:4], a1[:4]) and torch.equal(b2[:, :4], b1[:, :4])  # task 1's block frozen
    assert not a1[4:].any() and a2[4:].any()  # block 2 empty after task 1, filled after task 2


@pytest.mark.slow
@pytest.mark.parametrize("name,flag", [("sure", "sure_eval"), ("ilora", "ilora_eval")])
def test_dual_learners_score_the_other_learner_as_a_run_evaluating_it_would(runs, name, flag, tmp_path):
    """The learner not evaluated is scored on the same training run: its recorded matrix is the main matrix of the
    same run evaluating that learner instead (evaluation changes nothing of the training)."""
    folder, _ = runs[name]
    other = json.loads((folder / "metrics.json").read_text())["method_record"]["other_learner"]
    method = get_method(name, seed=5, **OPTIONS[name], **{flag: "fast"})
    train_sequence(TrainRequest("tiny-llama", TASKS, method, TrainConfig(**SHORT), eval_limit=6),
                   tmp_path / "fast", progress=False)
    fast = json.loads((tmp_path / "fast" / "metrics.json").read_text())
    assert other["learner"] == "fast" and other["accuracy"] == fast["accuracy"] and other["AP"] == fast["AP"]
    assert fast["method_record"]["other_learner"]["learner"] == "slow"


@pytest.mark.slow
def test_dual_learners_save_both_adapters(runs):
    for name in ("ilora", "sure"):
        folder = runs[name][0]
        fast, slow = load_adapter(folder / "fast" / "gloss"), load_adapter(folder / "slow" / "gloss")
        module = fast.modules[0]
        assert not torch.equal(fast.factors[module][1], slow.factors[module][1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pp", "l2p"])
def test_analysis_commands_refuse_prompt_checkpoints_in_one_line(runs, name, capsys):
    folder = runs[name][0]
    code = main(["barrier", str(folder / "news"), str(folder / "gloss"), "--points", "2", "--limit", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "soft prompts" in err and "Traceback" not in err
