"""merge, ties and magmax train two embedded tasks and write what the analysis side and `modeconn compare` read; each
task's checkpoint is the recorded λ times the merge of the task vectors the run kept, and the state survives."""
import json

import pytest
import torch

from modeconn.cli import main
from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.continual.methods.lora_points import BASE
from modeconn.errors import ConfigError
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora import merge
from modeconn.lora.adapters import load_adapter

DATA = checkpoints_dir() / "data"
TASKS = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
SHORT = {"rank": 4, "alpha": 8, "target_modules": ("q_proj", "v_proj"), "epochs": 1, "batch_size": 8, "max_train": 16,
         "seed": 5, "lr": 3e-3}
METHODS = {"merge": {}, "ties": {"merge_rank": 8}, "magmax": {}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("merging")
    out = {}
    for name, options in METHODS.items():
        method = get_method(name, seed=5, buffer_size=8, merge_scales="0.5,1", **options)
        train_sequence(TrainRequest("tiny-llama", TASKS, method, TrainConfig(**SHORT), eval_limit=6), root / name,
                       name=f"{name}-seed5", progress=False)
        out[name] = (root / name, method)
    return out


def _merge(name, method, vectors):
    if name == "merge":
        return merge.task_arithmetic(vectors)
    if name == "ties":
        return merge.ties(vectors, method.ties_density, rank=method.merge_rank).weights
    return merge.magmax(vectors, rank=method.merge_rank).weights


@pytest.mark.slow
@pytest.mark.parametrize("name", list(METHODS))
def test_each_checkpoint_is_the_chosen_scale_of_the_merge_of_the_task_vectors(runs, name):
    folder, method = runs[name]
    metrics = json.loads((folder / "metrics.json").read_text())
    record = metrics["method_record"]
    assert metrics["method"] == name and len(metrics["accuracy"]) == 2 and metrics["memory_examples"] == 8
    assert set(record["scale"]) == {"news", "gloss"} and all(s in (0.5, 1.0) for s in record["scale"].values())
    assert record["merge_source"] == ("sequential" if name == "magmax" else "independent")
    for t, task in enumerate(("news", "gloss")):
        saved = load_adapter(folder / task)
        assert {p.name for p in (folder / task).iterdir()} <= {"README.md", "adapter_config.json",
                                                               "adapter_model.safetensors"}
        expected = _merge(name, method, method.vectors[: t + 1])
        for m in expected.modules:
            want = record["scale"][task] * expected.delta(m)
            torch.testing.assert_close(saved.delta(m[: -len(BASE)]), want, rtol=1e-4, atol=1e-6)
    if name == "ties":  # rank 8 of a 32- or 64-wide ΔW: truncated, its error recorded
        assert all(0 < e < 1 for e in record["truncation_error"].values())
    else:
        assert all(e == pytest.approx(0, abs=1e-6) for e in record["truncation_error"].values())


@pytest.mark.slow
def test_independent_task_vectors_start_fresh_and_sequential_ones_do_not(runs):
    _, independent = runs["merge"]
    _, sequential = runs["magmax"]
    m = independent.vectors[0].modules[0]
    # a fresh LoRA per task: the second task's A is near its own initialisation, not the first task's trained A
    first, second = (v.factors[m][0] for v in independent.vectors)
    assert (second - first).norm() > 0.5 * first.norm()
    first, second = (v.factors[m][0] for v in sequential.vectors)
    assert (second - first).norm() < 0.5 * first.norm()


@pytest.mark.slow
def test_compare_reads_the_merging_runs(runs, tmp_path):
    folders = [str(folder) for folder, _ in runs.values()]
    assert main(["compare", *folders, "--baseline", "merge", "--out", str(tmp_path / "cmp"), "--json"]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(result["groups"]) == set(METHODS)


@pytest.mark.slow
def test_the_state_survives_a_resume(runs):
    _, method = runs["ties"]
    tensors, meta = method.state()
    fresh = get_method("ties", seed=5, buffer_size=8, merge_scales="0.5,1", merge_rank=8)
    fresh.load_state(tensors, json.loads(json.dumps(meta)))
    assert fresh.record() == method.record() and fresh.buffer.items == method.buffer.items
    for kept, loaded in zip(method.vectors, fresh.vectors):
        assert all(torch.equal(kept.factors[m][i], loaded.factors[m][i]) for m in kept.factors for i in (0, 1))


@pytest.mark.slow
def test_a_run_stopped_in_its_second_task_and_resumed_writes_what_an_uninterrupted_one_does(runs, tmp_path):
    folder, _ = runs["merge"]

    def request():
        method = get_method("merge", seed=5, buffer_size=8, merge_scales="0.5,1")
        return TrainRequest("tiny-llama", TASKS, method, TrainConfig(**SHORT), eval_limit=6)

    assert not train_sequence(request(), tmp_path, name="merge-seed5", progress=False, stop_after=3).complete
    train_sequence(request(), tmp_path, name="merge-seed5", progress=False, resume=True)
    done, resumed = (json.loads((f / "metrics.json").read_text()) for f in (folder, tmp_path))
    assert resumed["accuracy"] == done["accuracy"] and resumed["method_record"] == done["method_record"]
    for task in ("news", "gloss"):
        first, second = load_adapter(folder / task), load_adapter(tmp_path / task)
        assert all(torch.allclose(first.delta(m), second.delta(m), atol=1e-6) for m in first.modules)


@pytest.mark.parametrize("options", [{"merge_scales": "0.5,x"}, {"merge_scales": "0.5,0.5"}, {"merge_scales": "-1"}])
def test_bad_scales_are_refused_in_one_line(options):
    with pytest.raises(ConfigError, match="merge_scales"):
        get_method("merge", **options)


def test_ties_refuses_a_zero_density():
    with pytest.raises(ConfigError, match="ties_density"):
        get_method("ties", ties_density=0.0)
