"""The references' own updates and one memory budget: A-GEM under SGD keeps its promise (and AdamW can break it),
GEM's margin is the reference's dual bound v ≥ γ, replay waits for the second task unless asked, every memory method
keeps the same number of training examples (seq-path reads no eval split), and a run says which tasks it learned."""
import itertools
import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.continual.methods.agem import AGEM, agem_project
from modeconn.continual.methods.gem import gem_project
from modeconn.continual.methods.gradients import memory_gradient
from modeconn.continual.methods.protocol import Batch, TaskContext
from modeconn.continual.metrics import ContinualMetrics
from modeconn.continual.step import make_optimizer
from modeconn.evaluator.data import collate, encode, load_split
from modeconn.evaluator.models import checkpoints_dir

DATA = checkpoints_dir() / "data"
TINY = dict(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=4, max_train=16, seed=3)


@pytest.fixture(scope="module")
def no_eval_tasks(tmp_path_factory):
    """news and gloss with their train and test splits only: reading an eval split fails."""
    root = tmp_path_factory.mktemp("no-eval")
    for task in ("news", "gloss"):
        (root / task).mkdir()
        for split in ("train", "test"):
            shutil.copy(DATA / task / f"{split}.json", root / task / f"{split}.json")
    return [("news", root / "news"), ("gloss", root / "gloss")]


@dataclass
class WatchedAGEM(AGEM):
    """A-GEM that records, per projected step, ⟨g, g_mem⟩ and ⟨g_mem, Δθ⟩ of the update the optimizer then applied."""

    def __post_init__(self):
        super().__post_init__()
        self.steps, self.pending = [], None

    def project(self, model, params, g):
        g_mem = memory_gradient(model, params, self.memory.sample(self.batch_size), self.collate,
                                 batch_size=self.batch_size)
        before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
        self.pending = (torch.dot(g, g_mem).item(), g_mem, before, params)
        return agem_project(g, g_mem)

    def after_step(self, model):
        if self.pending is not None:
            conflict, g_mem, before, params = self.pending
            delta = torch.cat([p.detach().reshape(-1) for p in params]) - before
            self.steps.append((conflict, torch.dot(g_mem, delta).item(), (g_mem.norm() * delta.norm()).item()))
            self.pending = None


def _agem_run(tmp_path, optimizer: str, lr: float):
    method = WatchedAGEM(buffer_size=8, seed=3)
    config = TrainConfig(**{**TINY, "max_train": 32, "optimizer": optimizer, "lr": lr})
    train_sequence(TrainRequest("tiny-llama", [("news", DATA / "news"), ("gloss", DATA / "gloss")], method, config,
                                eval_limit=2),
                   tmp_path / optimizer, progress=False)
    return method.steps, json.loads((tmp_path / optimizer / "metrics.json").read_text())


def test_agem_under_sgd_never_raises_the_memory_loss_to_first_order(tmp_path):
    steps, metrics = _agem_run(tmp_path, "sgd", 0.5)
    conflicts = [(change, scale) for conflict, change, scale in steps if conflict < 0]
    assert steps and conflicts  # the tiny run has conflicting steps to check
    assert all(change <= 1e-5 * scale for change, scale in conflicts)  # ⟨g_mem, Δθ⟩ = −lr·c·⟨g_mem, g̃⟩ = 0
    assert metrics["made_by"]["settings"]["config"]["optimizer"] == "sgd"  # recorded with the run


def test_adamw_rescales_the_projection_out_of_its_half_space():
    """Why A-GEM and GEM run with SGD, as their references: AdamW's first step moves by −lr·sign(g̃), which can
    point up the memory gradient even though g̃ does not. Measured with ``WatchedAGEM`` on news, gloss, fortune (64
    training examples each, M = 20, seed 17): AdamW raised the memory loss on 10 of 11 conflicting steps, SGD on 0 of 7."""
    g_mem, g = torch.tensor([0.1, 1.0]), torch.tensor([1.0, -0.5])
    projected = agem_project(g, g_mem)
    assert torch.dot(g, g_mem) < 0 and torch.dot(projected, g_mem).abs() < 1e-6
    changes = {}
    for name in ("sgd", "adamw"):
        theta = torch.zeros(2, requires_grad=True)
        optimizer = make_optimizer([theta], TrainConfig(lr=0.01, optimizer=name))
        theta.grad = projected.clone()
        optimizer.step()
        changes[name] = torch.dot(g_mem, theta.detach()).item()
    assert abs(changes["sgd"]) < 1e-8
    assert changes["adamw"] == pytest.approx(0.01 * 0.9, rel=1e-3)  # −lr·(1, −1)·(0.1, 1) = +0.9·lr


def _dual_by_enumeration(G: np.ndarray, g: np.ndarray, margin: float) -> np.ndarray:
    """min ½vᵀQv + (Gg)ᵀv over v ≥ γ by trying every set of variables left at the bound: the best feasible
    stationary point of its face (a convex QP's minimum is one of them)."""
    Q, p = G @ G.T, G @ g
    best, best_value = None, np.inf
    k = len(Q)
    for free in itertools.chain.from_iterable(itertools.combinations(range(k), r) for r in range(k + 1)):
        v = np.full(k, margin)
        bound = [i for i in range(k) if i not in free]
        if free:
            f = list(free)
            v[f] = np.linalg.solve(Q[np.ix_(f, f)], -p[f] - Q[np.ix_(f, bound)] @ v[bound])
        value = 0.5 * v @ Q @ v + p @ v
        if (v >= margin - 1e-9).all() and value < best_value:
            best, best_value = v, value
    return g + G.T @ best


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("seed", range(8))
def test_gem_margin_is_the_reference_dual_bound(seed, margin):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64) - 0.8 * G.sum(0)
    if bool((G @ g >= 0).all()):
        return  # nothing to project: GEM leaves g alone whatever γ
    out = gem_project(g, G, margin)
    expected = _dual_by_enumeration(G.numpy(), g.numpy(), margin)
    torch.testing.assert_close(out, torch.from_numpy(expected), rtol=0, atol=1e-6)
    assert bool((G @ out >= -1e-6).all())  # the dual's optimality: every constraint holds, with slack where v > γ
    if margin > 0:  # not the old "solve with v ≥ 0, then add γ"
        assert not torch.allclose(out, gem_project(g, G, 0.0) + G.T @ torch.full((3,), margin, dtype=torch.float64))


def _step_ctx(model, index, tokenizer):
    examples = encode(tokenizer, load_split(DATA / "news", "train", 4), 64)
    ctx = TaskContext(model, "news", index, examples, lambda e: collate(e, tokenizer.pad_token_id), 2, 40, 2, tokenizer)
    return ctx, Batch(examples[:2], collate(examples[:2], tokenizer.pad_token_id), 0)


@pytest.mark.parametrize("name", ["er", "ilora", "sure"])
@pytest.mark.parametrize("first", [False, True])
def test_replay_waits_for_the_second_task_unless_asked(name, first, tokenizer):
    from peft import LoraConfig, get_peft_model

    from modeconn.evaluator.models import load_base

    torch.manual_seed(0)
    model = get_peft_model(load_base("tiny-llama")[0], LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    method = get_method(name, seed=0, buffer_size=4, replay_first_task=first)
    drawn = []
    sample = method.buffer.sample
    method.buffer.sample = lambda k: drawn.append(k) or sample(k)
    for index in (0, 1):
        ctx, batch = _step_ctx(model, index, tokenizer)
        method.begin_task(ctx)
        for _ in range(2):  # the first step fills the buffer; the second could replay from it
            method.training_step(model, batch)
        if index == 0:
            assert bool(drawn) == first and len(method.buffer) > 0
            if name == "ilora":  # no replay, no consistency loss
                assert ("consistency" in method.step_parts()) == first
    assert drawn and (name != "ilora" or "consistency" in method.step_parts())


def test_seq_path_fits_and_picks_on_its_training_split_memory(tmp_path, no_eval_tasks, monkeypatch):
    """With no eval split in the task folders seq-path still runs: its memory is training rows, M of them, the same
    M as every memory method (``test_every_method.py::test_every_memory_method_keeps_the_same_memory``)."""
    import modeconn.continual.methods.text_memory as text_memory

    splits = []
    load = text_memory.load_split
    monkeypatch.setattr(text_memory, "load_split", lambda folder, split, *a, **k: splits.append(split) or load(folder, split, *a, **k))
    method = get_method("seq-path", seed=3, buffer_fraction=0.25, path_points=3)
    train_sequence(TrainRequest("tiny-llama", no_eval_tasks, method, TrainConfig(**{**TINY, "lr": 3e-3}),
                                eval_split="test", eval_limit=2),
                   tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["memory_examples"] == 8  # 25% of 2 × 16 training examples
    assert splits == ["train", "train"]  # each task's training rows, offered at its end
    assert len(metrics["method_record"]["mean_memory_accuracy_by_t"]["gloss"]) == 3


def test_learned_is_above_the_base_by_more_than_the_binomial_margin():
    margin = 1.96 * (0.2 * 0.8 / 100) ** 0.5  # 0.0784
    m = ContinualMetrics(["a", "b", "c"], accuracy=[[0.28, 0.0, 0.0], [0.2, 0.27, 0.0], [0.2, 0.2, 0.01]],
                         initial_accuracy=[0.2, 0.2, 0.0], eval_examples=[100, 100, 50])
    assert m.learned_margin == pytest.approx([margin, margin, 0.0])
    assert m.learned == [True, False, True]  # +0.08 > 0.0784; +0.07 is not; a base at 0 has margin 0
    data = m.to_json()
    assert data["learned"] == [True, False, True] and data["base_accuracy"] == [0.2, 0.2, 0.0]
    assert ContinualMetrics.from_json(data).learned == m.learned
    joint = ContinualMetrics(["a", "b"], accuracy=[[0.2, 0.2], [0.5, 0.2]], initial_accuracy=[0.2, 0.2],
                             eval_examples=[100, 100], joint=True)
    assert joint.learned == [True, False]  # a multi-task run: its final row
    assert ContinualMetrics(["a"], accuracy=[[0.5]]).learned is None  # no base scores, no verdict


def test_learned_reads_rank_accuracy_where_every_row_has_it():
    """A base that never answers in the label format (exact match 0) against one that ranks at chance (0.5): a run
    that learned only the format (exact match 0.5, rank 0.5) did not learn the task; one that ranks 0.7 did."""
    margin = 1.96 * (0.5 * 0.5 / 64) ** 0.5  # 0.1225
    m = ContinualMetrics(["a", "b"], accuracy=[[0.5, 0.0], [0.5, 0.7]], initial_accuracy=[0.0, 0.0],
                         rank_accuracy=[[0.5, 0.5], [0.5, 0.7]], initial_rank_accuracy=[0.5, 0.5], eval_examples=[64, 64])
    assert m.learned_by == "rank" and m.learned_margin == pytest.approx([margin, margin])
    assert m.learned == [False, True]  # +0.0 rank; +0.2 > 0.1225
    assert ContinualMetrics.from_json(m.to_json()).learned == [False, True] and m.to_json()["learned_by"] == "rank"
    assert m.to_json()["base_accuracy"] == [0.5, 0.5]  # the base row the verdict read, not the exact match's 0
    by_metric = ContinualMetrics(["a", "b"], accuracy=m.accuracy, initial_accuracy=[0.0, 0.0], eval_examples=[64, 64])
    assert by_metric.learned_by == "accuracy" and by_metric.learned == [True, True]  # the format alone clears 0


def test_the_base_accuracy_is_the_base_models_own(tmp_path, tokenizer):
    """``base_accuracy`` in metrics.json is the bare base model's accuracy on the same examples."""
    from modeconn.evaluator.evaluate import EvalConfig, evaluate_model
    from modeconn.evaluator.models import load_base

    tasks = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
    train_sequence(TrainRequest("tiny-llama", tasks, get_method("seq"), TrainConfig(**{**TINY, "max_train": 4}),
                                eval_limit=5),
                   tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    base = evaluate_model(load_base("tiny-llama")[0], tokenizer, {t: load_split(f, "test", 5) for t, f in tasks},
                          EvalConfig(progress=False))
    assert metrics["base_accuracy"] == [base[t].accuracy[0] for t, _ in tasks]
    assert metrics["eval_examples"] == [5, 5] and len(metrics["learned"]) == 2 and metrics["memory_examples"] == 0


def test_the_optimizer_and_first_task_replay_are_run_options(capsys):
    from modeconn.cli import main
    from modeconn.continual.options import resolve

    request = resolve({"method": "er", "tasks": str(DATA), "order": "news,gloss", "optimizer": "sgd",
                       "replay_first_task": True})
    assert request.config.optimizer == "sgd" and request.options["replay_first_task"] is True
    assert resolve({"method": "gem", "tasks": str(DATA), "order": "news"}).config.optimizer == "adamw"
    base = ["train", "--tasks", str(DATA), "--order", "news", "--out", "unused"]
    assert main([*base, "--method", "seq", "--replay-first-task"]) == 2
    assert "replay_first_task is an option of er / sure / ilora" in capsys.readouterr().err
    assert main([*base, "--method", "er", "--optimizer", "adam"]) == 2
    from modeconn.errors import ConfigError

    with pytest.raises(ConfigError, match="replay_first_task must be true or false"):
        get_method("ilora", replay_first_task="yes")  # a config file's string is not a switch
