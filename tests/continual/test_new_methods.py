"""The pieces of O-LoRA, SuRe, per-task models and the prompt methods, each against a hand computation."""
import pytest
import torch

from modeconn.continual.methods.protocol import Batch, TaskContext
from modeconn.evaluator.data import Encoded


@pytest.fixture()
def peft_llama():
    from peft import LoraConfig, get_peft_model

    from helpers import tiny_model

    torch.manual_seed(0)
    return get_peft_model(tiny_model("llama"), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                          init_lora_weights=False))


def _ctx(model, index=0, tasks=3, examples=(), collate=None):
    return TaskContext(model, "t", index, list(examples), collate or (lambda e: {}), 2, 0, tasks)


def _adapter(model, name):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{name}." in n and "lora_" in n}


def test_olora_orthogonality_term_by_hand(peft_llama):
    from modeconn.continual.methods.olora import PAST, OLoRA

    method = OLoRA(olora_lambda1=1.0)
    method.begin_task(_ctx(peft_llama))
    with torch.no_grad():
        for layer in method.layers:
            layer.lora_A[PAST].weight.normal_()  # pretend two earlier tasks (rank 2 each) filled the first blocks
    method.index = 2
    batch = Batch([], {"input_ids": torch.tensor([[1, 5, 6, 2]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
                       "labels": torch.tensor([[-100, 5, 6, 2]])})
    loss = method.training_step(peft_llama, batch)
    ce = peft_llama(**batch.inputs).loss
    by_hand = sum(((layer.lora_A[PAST].weight[:4] @ layer.lora_A["default"].weight.T) ** 2).sum() for layer in method.layers)
    assert loss.item() == pytest.approx(ce.item() + by_hand.item(), rel=1e-5)
    assert method.parts["orthogonality"] == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()  # the term reaches the new A only
    assert all(layer.lora_A["default"].weight.grad is not None for layer in method.layers)
    assert all(layer.lora_A[PAST].weight.grad is None for layer in method.layers)


def test_olora_task_end_moves_the_lora_into_its_block_and_starts_afresh(peft_llama):
    from modeconn.continual.methods.olora import PAST, OLoRA

    method = OLoRA()
    method.begin_task(_ctx(peft_llama, index=1))
    trained = {id(layer): (layer.lora_A["default"].weight.clone(), layer.lora_B["default"].weight.clone())
               for layer in method.layers}
    method.end_task(_ctx(peft_llama, index=1))
    for layer in method.layers:
        a, b = trained[id(layer)]
        assert torch.equal(layer.lora_A[PAST].weight[2:4], a) and torch.equal(layer.lora_B[PAST].weight[:, 2:4], b)
        assert not layer.lora_A[PAST].weight[:2].any()  # block 0 untouched (empty here)
        assert not layer.lora_B["default"].weight.any()  # the new LoRA starts at B = 0
    # the model is base + the past block: the frozen adapter alone gives the same output as base + B·A of the task
    assert method.evaluation_plan(2, 3) == [PAST] * 3


def test_surprise_buffer_keeps_each_tasks_most_surprising_examples_in_equal_shares():
    from modeconn.continual.methods.sure import SurpriseBuffer

    buffer = SurpriseBuffer(6, seed=0)
    buffer.reach_task(0)
    buffer.add([Encoded((i,), 1) for i in range(10)], [float(i % 7) for i in range(10)])
    # surprises 0 1 2 3 4 5 6 0 1 2: the six largest, most surprising first (ties: the earlier example first)
    assert [(s, e.ids[0]) for s, e in buffer.tasks[0]] == [(6.0, 6), (5.0, 5), (4.0, 4), (3.0, 3), (2.0, 2), (2.0, 9)]
    buffer.reach_task(1)  # task 0 keeps its 3 most surprising
    assert [s for s, _ in buffer.tasks[0]] == [6.0, 5.0, 4.0]
    buffer.add([Encoded((100 + i,), 1) for i in range(4)], [0.5, 9.0, 0.1, 3.0])
    assert [e.ids[0] for _, e in buffer.tasks[1]] == [101, 103, 100]
    assert len(buffer) == 6 and buffer.seen == 14
    state = SurpriseBuffer(1, seed=3)
    state.load_state_dict(buffer.state_dict())
    assert state.tasks == buffer.tasks and state.sample(4) == buffer.sample(4)


def test_sure_scores_surprise_before_the_update_and_offers_each_example_once(peft_llama):
    from modeconn.continual.methods.sure import SuRe
    from modeconn.evaluator.data import collate

    examples = [Encoded((1, 5, 6, 7, 2), 2), Encoded((1, 8, 9, 2), 2)]
    method = SuRe(buffer_size=4)
    method.begin_task(_ctx(peft_llama, collate=lambda e: collate(e, 0)))
    batch = Batch(examples, collate(examples, 0), epoch=0)
    method.training_step(peft_llama, batch)
    inputs = collate(examples, 0)
    with torch.no_grad():
        logp = torch.log_softmax(peft_llama(input_ids=inputs["input_ids"]).logits.double(), -1)
    labels = inputs["labels"]  # each example's mean answer NLL, by hand from the full logits
    mean_nll = [-sum(logp[r, p - 1, labels[r, p]] for p in range(1, labels.shape[1]) if labels[r, p] != -100).item()
                / int((labels[r] != -100).sum()) for r in range(len(examples))]
    expected = sorted(mean_nll, reverse=True)
    assert [s for s, _ in method.buffer.tasks[0]] == pytest.approx(expected, rel=1e-5)
    method.training_step(peft_llama, Batch(examples, collate(examples, 0), epoch=1))
    assert method.buffer.seen == 2  # the second epoch offers nothing


def test_one_keeps_each_tasks_adapter_and_resets_the_trained_one(peft_llama):
    from modeconn.continual.methods.one import PerTaskModels

    method = PerTaskModels()
    method.begin_task(_ctx(peft_llama, index=0, tasks=2))
    trained = _adapter(peft_llama, "default")
    method.end_task(_ctx(peft_llama, index=0, tasks=2))
    kept = _adapter(peft_llama, "task0")
    assert all(torch.equal(kept[n.replace(".default.", ".task0.")], v) for n, v in trained.items())
    assert all(not v.any() for n, v in _adapter(peft_llama, "default").items() if "lora_B" in n)
    assert method.evaluation_plan(1, 2) == ["task0", "default"]


def test_prompt_embedding_reads_the_table_for_virtual_ids_only():
    from modeconn.continual.methods.prompts import PromptEmbedding

    base = torch.nn.Embedding(10, 3)

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rows = torch.nn.Parameter(torch.arange(6.0).view(2, 3))

        def forward(self):
            return self.rows

    wrapped = PromptEmbedding(base, Table())
    ids = torch.tensor([[10, 11, 3, 4]])
    out = wrapped(ids)
    assert torch.equal(out[0, 0], torch.tensor([0.0, 1.0, 2.0])) and torch.equal(out[0, 1], torch.tensor([3.0, 4.0, 5.0]))
    assert torch.equal(out[0, 2:], base(torch.tensor([3, 4])))
    out.sum().backward()
    assert wrapped.modeconn_table.rows.grad is not None and wrapped.weight is base.weight


def test_prepend_puts_prompts_first_and_cuts_the_real_prompt_not_the_answer():
    from modeconn.continual.methods.prompts import prepend
    from modeconn.errors import DataError

    e = Encoded((1, 20, 21, 22, 30, 2), 4)  # bos, 3 prompt tokens, answer, eos
    assert prepend([e], [100, 101], 10) == [Encoded((100, 101, 1, 20, 21, 22, 30, 2), 6)]
    assert prepend([e], [100, 101], 6) == [Encoded((100, 101, 21, 22, 30, 2), 4)]  # two prompt tokens dropped
    with pytest.raises(DataError, match="max_length=4"):
        prepend([e], [100, 101], 4)


def test_progressive_prompts_stack_newest_first_and_score_each_task_with_its_own():
    from modeconn.continual.methods.pp import ProgressivePrompts

    method = ProgressivePrompts(pp_length=2)
    method.vocab = 50
    assert method.stack(2) == [52, 53, 50, 51]  # P_2 then P_1
    assert method.evaluation_plan(2, 3) == [1, 2, 2]
    assert ProgressivePrompts(pp_eval="all").evaluation_plan(2, 3) == [2, 2, 2]
    assert method.evaluation_plan(0, 3) == ["default"] * 3


def test_l2p_picks_the_prompts_whose_keys_match_the_query(peft_llama):
    from modeconn.continual.methods.l2p import L2P

    method = L2P(l2p_pool=3, l2p_length=2, l2p_top_k=1)
    method.setup(peft_llama, 2, 64)
    weight = method.embedding.weight
    e = Encoded((3, 4, 9), 2)
    query = weight[torch.tensor([3, 4])].float().mean(0)
    with torch.no_grad():
        method.pool.keys.copy_(torch.stack([-query, query * 2, torch.randn_like(query)]))
    vocab = method.embedding.num_embeddings
    assert method.choose([e]) == [Encoded((vocab + 2, vocab + 3, 3, 4, 9), 4)]  # prompt 1: cosine 1
    assert method.queries([e])[0] == pytest.approx(query, abs=1e-6)


@pytest.mark.parametrize("path", ["linear", "bezier"])
def test_seq_path_continues_from_the_best_scored_point_of_the_path(path):
    from peft import LoraConfig, get_peft_model

    from modeconn.continual.methods.seq_path import PathPicked
    from modeconn.evaluator.models import checkpoints_dir, load_base

    model, tokenizer = load_base("tiny-llama")
    torch.manual_seed(1)
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    data = checkpoints_dir() / "data"
    dirs, metrics = (("news", data / "news"), ("gloss", data / "gloss")), {"news": "exact_match", "gloss": "exact_match"}
    three = [Encoded((1, 2, 3), 2)] * 3  # the memory takes the first three training rows of each task
    method = PathPicked(path=path, path_points=5, buffer_size=6, curve_steps=3)
    method.end_task(TaskContext(peft, "news", 0, three, lambda e: {}, 2, 6, 2, tokenizer, dirs, 128, metrics))
    ctx = TaskContext(peft, "gloss", 1, three, lambda e: {}, 2, 6, 2, tokenizer, dirs, 128, metrics)
    method.begin_task(ctx)
    start = _adapter(peft, "default")
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if ".default." in name:
                p.add_(torch.randn_like(p) * 0.5)
    new = _adapter(peft, "default")
    method.end_task(ctx)
    t = method.chosen["gloss"]
    scores = method.scores["gloss"]
    assert t in (0.0, 0.25, 0.5, 0.75, 1.0) and scores[int(t * 4)] == max(scores) and len(scores) == 5
    moved = _adapter(peft, "default")
    if path == "linear":  # the factors are the straight-line point (1 − t)·start + t·new
        for name, value in moved.items():
            assert torch.allclose(value, (1 - t) * start[name] + t * new[name], atol=1e-5)
    else:  # the Bézier point's endpoints are still the two adapters
        assert t in (0.0, 1.0) or any(not torch.allclose(v, (1 - t) * start[n] + t * new[n], atol=1e-5)
                                      for n, v in moved.items())
    assert method.record()["chosen_t"] == {"news": 1.0, "gloss": t} and method.memory_examples == 6
