"""Rank-classification accuracy against a hand computation: plain peft forwards on prompt + choice, summed NLL, argmin."""
import os

import pytest
import torch

from modeconn.evaluator.budget import Budget
from modeconn.evaluator.data import Example, encode_counted
from modeconn.evaluator.models import checkpoints_dir
from modeconn.evaluator.evaluate import EvalConfig, evaluate_model, evaluate_path, path_nll
from modeconn.evaluator.layer import inject_path
from modeconn.evaluator.rank import choice_rows, predicted
from modeconn.lora.adapters import load_adapter, save_adapter
from modeconn.lora.paths import linear_path

LABELS = ("politics", "sport", "business")
TS = [0.0, 0.4, 1.0]
QUIET = dict(progress=False)
DEVICE = os.environ.get("MODECONN_TEST_DEVICE", "cpu")  # benchmarks/gpu_check.sh runs these on cuda


@pytest.fixture(scope="module")
def setup(embedded, tmp_path_factory):
    """The embedded base (trained, so the argmin differs between examples and points; a random tiny model prefers one
    label everywhere), the path from its ``news`` minimum to its ``gloss`` one, and three news rows with 3 choices."""
    from transformers import AutoModelForCausalLM

    from modeconn.evaluator.data import load_split

    model = AutoModelForCausalLM.from_pretrained(embedded.root / "../base").eval().to(DEVICE)
    news, gloss = embedded.tasks[:2]
    adapters = [load_adapter(embedded.adapter_dir(task)) for task in (news, gloss)]
    path = linear_path(*adapters, "factor")
    tmp = tmp_path_factory.mktemp("rank")
    points = [str(save_adapter(path.at(t), tmp / f"t{t}", adapters[0].config)) for t in TS]  # each point as a peft adapter
    rows = load_split(embedded.data_dir(news), "eval", 5)
    examples = [Example(rows[i].prompt, rows[i].answer, LABELS) for i in (0, 1, 4)]
    assert [e.answer for e in examples] == list(LABELS)
    return model, path, points, examples


def reference_nll(model, folder, tokenizer, examples) -> list[list[float]]:
    """Per example and choice: peft's forward on bos + prompt + choice + eos, summed NLL of choice + eos."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, folder).eval()
    out = []
    for ex in examples:
        prompt = [tokenizer.bos_token_id] + tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        row = []
        for choice in ex.choices:
            answer = tokenizer(choice, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            ids = torch.tensor([prompt + answer], device=model.device)
            with torch.no_grad():
                logp = torch.log_softmax(peft_model(input_ids=ids).logits[0].double(), -1)
            row.append(-sum(logp[len(prompt) - 1 + i, tok].item() for i, tok in enumerate(answer)))
        out.append(row)
    peft_model.unload()
    return out


def test_choice_rows_are_encoded_as_encode_counted_encodes_each_choice(tokenizer):
    labels = ("positive", "not entailment", "no")  # of several token counts, one with a space
    examples = [Example("Is this review positive?\nA fine film, well acted.\nAnswer:", "positive", labels),
                Example("Premise: it rains. Hypothesis: the sun shines.\nAnswer:", "not entailment", labels[::-1])]
    for max_length in (1024, 12):  # 12: prompts cut from the left, by each choice's own length
        rows = choice_rows(tokenizer, examples, max_length)
        expected = encode_counted(tokenizer, [Example(e.prompt, c) for e in examples for c in e.choices], max_length)[0]
        assert rows == expected


@pytest.mark.parametrize("budget", [40, 1 << 20])
def test_rank_accuracy_equals_a_hand_computation_on_three_rows(setup, tokenizer, budget):
    """At each of K points of a linear path, the batched choice NLLs, predicted labels and accuracy equal peft's."""
    model, path, points, examples = setup
    reference = [reference_nll(model, folder, tokenizer, examples) for folder in points]
    rows = choice_rows(tokenizer, examples, 1024)
    with inject_path(model, path) as injected:
        nll = path_nll(model, rows, path.coefficients(TS), injected, pad_id=tokenizer.pad_token_id, budget=Budget(budget))
    assert torch.allclose(nll.cpu(), torch.tensor([sum(r, []) for r in reference], dtype=torch.float64), atol=1e-4)
    expected_labels = [[min(range(3), key=row.__getitem__) for row in point] for point in reference]
    assert len(set(expected_labels[0])) > 1  # not one label everywhere
    assert predicted(nll, examples).tolist() == expected_labels
    curve = evaluate_path(model, tokenizer, path, TS, {"x": examples}, EvalConfig(max_batch_tokens=budget, **QUIET)).tasks["x"]
    gold = [LABELS.index(e.answer) for e in examples]
    assert curve.rank_accuracy == pytest.approx([sum(p == g for p, g in zip(labels, gold)) / 3 for labels in expected_labels])


def test_ties_go_to_the_first_choice():
    examples = [Example("p", "b", ("a", "b")), Example("q", "b", ("a", "b", "c"))]
    nll = torch.tensor([[1.0, 1.0, 2.0, 0.5, 0.5], [3.0, 1.0, 2.0, 0.5, 0.7]], dtype=torch.float64)
    assert predicted(nll, examples).tolist() == [[0, 1], [1, 1]]


def test_evaluate_model_on_a_peft_model_equals_the_path_point(setup, tokenizer):
    """The single-model variant (a PeftModel as it stands, with a transform) gives the path's number at that point."""
    from peft import PeftModel

    model, path, points, examples = setup
    curve = evaluate_path(model, tokenizer, path, TS, {"x": examples}, EvalConfig(**QUIET)).tasks["x"]
    peft_model = PeftModel.from_pretrained(model, points[1]).eval()
    seen = []
    try:
        alone = evaluate_model(peft_model, tokenizer, {"x": examples}, EvalConfig(**QUIET),
                               transform=lambda encoded: seen.append(len(encoded)) or encoded)["x"]
    finally:
        peft_model.unload()
    assert seen == [3, 9]  # the examples, then every choice row
    assert alone.rank_accuracy == pytest.approx([curve.rank_accuracy[1]])
    assert alone.loss == pytest.approx([curve.loss[1]], abs=1e-5) and alone.accuracy == [curve.accuracy[1]]


def test_without_choices_rank_accuracy_is_none_and_the_rest_unchanged(setup, tokenizer):
    model, path, _, examples = setup
    plain = [Example(e.prompt, e.answer) for e in examples]
    outside = [Example(e.prompt, e.answer, ("yes", "no")) if i == 0 else e for i, e in enumerate(examples)]
    tasks = {"choices": examples, "plain": plain, "outside": outside}
    curves = evaluate_path(model, tokenizer, path, TS, tasks, EvalConfig(**QUIET)).tasks
    assert curves["plain"].rank_accuracy is None and curves["outside"].rank_accuracy is None
    assert curves["choices"].rank_accuracy is not None
    # the task with choices gets its loss from the gold choice's rows (one pass per prompt): the same within rounding
    assert curves["plain"].loss == pytest.approx(curves["choices"].loss, rel=1e-5)
    assert curves["plain"].accuracy == curves["choices"].accuracy
    off = evaluate_path(model, tokenizer, path, TS, {"choices": examples}, EvalConfig(accuracy=False, **QUIET)).tasks
    assert off["choices"].rank_accuracy is None


def test_a_training_run_records_the_rank_matrix_beside_the_accuracy(tmp_path, monkeypatch):
    """metrics.json of a run whose evaluation examples carry choices (the reader monkeypatched to add them: each
    task's labels are the answers of its scored rows) has the rank matrix, row for row, its AP and BWT; the resumable
    state and ``from_json`` keep it."""
    import json
    from dataclasses import asdict

    import modeconn.continual.prepare as prepare  # the module, whose read_split the run calls
    from modeconn.continual import ContinualMetrics, TrainConfig, TrainRequest, get_method, train_sequence
    from modeconn.evaluator.models import checkpoints_dir

    real = prepare.read_split

    def with_choices(path, split, *args, **kwargs):
        examples, fields = real(path, split, *args, **kwargs)
        if split == "train":
            return examples, fields
        labels = tuple(dict.fromkeys(e.answer for e in examples))
        return [Example(e.prompt, e.answer, labels) for e in examples], fields

    monkeypatch.setattr(prepare, "read_split", with_choices)
    data = checkpoints_dir() / "data"
    config = TrainConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=8, max_train=8, seed=3)
    train_sequence(TrainRequest("tiny-llama", [("news", data / "news"), ("gloss", data / "gloss")], get_method("seq"),
                                config, eval_limit=6),
                   tmp_path, progress=False)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert len(record["rank_accuracy"]) == len(record["accuracy"]) == 2
    assert all(len(row) == 2 and all(0 <= a <= 1 and round(a * 6, 6).is_integer() for a in row)
               for row in record["rank_accuracy"] + [record["initial_rank_accuracy"]])
    rows = record["rank_accuracy"]
    assert record["rank_AP"] == pytest.approx(sum(rows[-1]) / 2)
    assert record["rank_BWT"] == pytest.approx(rows[1][0] - rows[0][0])
    metrics = ContinualMetrics.from_json(record)
    assert ContinualMetrics(**asdict(metrics)).rank_accuracy == rows  # what the resumable state saves and reads
    assert metrics.rank_ap == record["rank_AP"] and "rank AP" in metrics.table()
    assert ContinualMetrics(["a"], accuracy=[[0.5]], loss=[[1.0]]).to_json()["rank_AP"] is None


def test_path_results_carry_rank_accuracy_through_json_and_draw_it(tmp_path):
    """barrier.json and plane.json keep rank_accuracy per point (round trip, checked on load); an older file without
    it still reads; the path figure draws it as its own dashed line."""
    import json

    from modeconn.analysis.barrier import BarrierResult
    from modeconn.analysis.surface import SurfaceResult, SurfaceTask
    from modeconn.evaluator.evaluate import PathEvaluation, TaskCurve
    from modeconn.plots.barrier import barrier_figure
    from modeconn.plots.kinds import load_result, save_result

    curves = {"x": TaskCurve([1.0, 1.5, 0.8], [0.5, 0.25, 0.75], 4, rank_accuracy=[0.75, 0.5, 1.0]),
              "y": TaskCurve([2.0, 1.0, 1.2], [0.0, 0.5, 0.5], 4)}
    result = BarrierResult.from_evaluation(PathEvaluation([0.0, 0.5, 1.0], curves), "linear", "factor", ["a", "b"], "tiny")
    written = save_result(result, tmp_path / "barrier")
    back = load_result(tmp_path / "barrier" / "barrier.json")
    assert back.tasks["x"].rank_accuracy == [0.75, 0.5, 1.0] and back.tasks["y"].rank_accuracy is None
    assert {p.name for p in written} >= {"barrier.png", "barrier.html"} and "rank" in back.table()
    names = [trace.name for trace in barrier_figure(back).data]
    assert "x rank acc." in names and "y rank acc." not in names
    old = json.loads((tmp_path / "barrier" / "barrier.json").read_text())
    for task in old["tasks"].values():
        del task["rank_accuracy"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_result(tmp_path / "old.json").tasks["x"].rank_accuracy is None

    task = SurfaceTask([[1.0, 2.0]], [[0.5, 0.0]], [1.0], 4, rank_accuracy=[[1.0, 0.5]])
    plane = SurfaceResult("plane", "factor", [0.0, 1.0], [0.0], [[0.0, 0.0]], ["a"], {"x": task}, ["a"], "tiny")
    assert SurfaceResult.from_json(json.loads(plane.dumps())).tasks["x"].rank_accuracy == [[1.0, 0.5]]


SMALL = dict(vocab_size=4096, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             intermediate_size=64, head_dim=16, bos_token_id=1, eos_token_id=2, pad_token_id=3)
# (config class, extra fields, shares prompts): gemma2 alternates sliding and full layers (a window of 8: its batches
# exceed it and run as rows; 4096: the window hides nothing and prompts are shared); a recurrent cache never shares
SHARING = {
    "llama": ("LlamaConfig", {}, True),
    "llama-peft-lora": ("LlamaConfig", {}, True),
    "qwen2": ("Qwen2Config", {}, True),
    "gemma": ("GemmaConfig", {}, True),
    "phi": ("PhiConfig", {"num_key_value_heads": 2}, True),
    "gpt2": ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256}, True),
    "gemma2-window-4096": ("Gemma2Config", {"sliding_window": 4096}, True),
    "gemma2-window-8": ("Gemma2Config", {"sliding_window": 8}, True),
    "falcon_mamba": ("FalconMambaConfig", {"state_size": 4, "expand": 2}, False),
}


def tiny_lm(kind: str):
    import transformers as tr

    name, extra, _ = SHARING[kind]
    fields = {k: v for k, v in SMALL.items() if kind != "gpt2" or k in ("vocab_size", "bos_token_id", "eos_token_id")}
    torch.manual_seed(0)
    model = tr.AutoModelForCausalLM.from_config(getattr(tr, name)(**{**fields, **extra})).eval()
    if kind.endswith("peft-lora"):  # a PeftModel as training evaluates it, B random so that the adapter counts
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).eval()
    return model


CHOICE_EXAMPLES = [  # prompts of different lengths in one batch, labels of 1-4 tokens (+ eos), 3 or 4 choices
    Example("Which topic is this story about?\nShares rose sharply on Monday after the report.\nTopic:", "business",
            ("politics", "sport", "business")),
    Example("short", "sport", ("politics", "sport", "business", "science and technology")),
    Example("a longer prompt about a match " * 4 + "\nTopic:", "sport", ("sport", "politics", "business")),
    Example("", "politics", ("politics", "sport", "business")),  # only bos before the answer
]


@pytest.mark.parametrize("kind", list(SHARING))
def test_shared_prompt_nll_equals_the_rows_path(tokenizer, kind):
    """Prompts run once, their cache copied to each choice: every choice's NLL equals the rows path's (1e-4, float32),
    with prompts cut at max_length (12: each choice cuts its own, so those examples run as rows), and so do the
    predicted labels and evaluate_model's rank accuracy; a model whose cache cannot be copied falls back to rows."""
    from modeconn.evaluator.choices import choice_nll, shared_choice_scores
    from modeconn.evaluator.layer import Unrouted

    model = tiny_lm(kind)
    pad = tokenizer.pad_token_id
    for max_length, budget in ((200, 1 << 20), (200, 64), (12, 1 << 20)):
        rows = choice_rows(tokenizer, CHOICE_EXAMPLES, max_length)
        reference = path_nll(model, rows, torch.ones(1, 1), Unrouted(), pad_id=pad, budget=Budget(budget))
        scores = shared_choice_scores(model, rows, [len(e.choices) for e in CHOICE_EXAMPLES], pad, budget=budget)
        shared = None if scores is None else scores.nll[0]
        assert (shared is not None) == SHARING[kind][2]
        if shared is not None and max_length == 12:  # the cut examples run as rows, the others are shared
            assert 0 < int(torch.isnan(shared).sum()) < len(rows)
        elif shared is not None:  # all shared, but where a batch exceeds the window of 8
            assert bool(torch.isnan(shared).any()) == (kind == "gemma2-window-8")
        nll = choice_nll(model, rows, CHOICE_EXAMPLES, pad, budget=budget, rows_nll=lambda part, budget=budget: path_nll(
            model, part, torch.ones(1, 1), Unrouted(), pad_id=pad, budget=Budget(budget)))
        assert torch.allclose(nll, reference, atol=1e-4, rtol=0)
        assert predicted(nll, CHOICE_EXAMPLES).tolist() == predicted(reference, CHOICE_EXAMPLES).tolist()
        curve = evaluate_model(model, tokenizer, {"x": CHOICE_EXAMPLES}, EvalConfig(max_length=max_length, **QUIET))["x"]
        gold = torch.tensor([e.choices.index(e.answer) for e in CHOICE_EXAMPLES])
        assert curve.rank_accuracy == pytest.approx([(predicted(reference, CHOICE_EXAMPLES)[0] == gold).double().mean().item()])


def forced_reference(model, tokenizer, examples, max_length):
    """The forced pass and decoding of the examples as ``evaluate_model`` scores an unrankable task: loss, accuracy,
    and which answers the forced pass knows greedy decoding emits."""
    from modeconn.evaluator.forced import forced_pass, model_accuracy

    encoded, _ = encode_counted(tokenizer, examples, max_length)
    with torch.no_grad():
        loss, known = forced_pass(model, encoded, tokenizer.pad_token_id, 1 << 20)
        acc = model_accuracy(model, tokenizer, examples, encoded, known=known, budget=1 << 20)
    return loss, acc, known


def generated(model, tokenizer, examples, max_length) -> list[list[int]]:
    """Each example's greedy tokens from ``generate`` on its own, padded to the task's longest answer + eos."""
    from transformers import GenerationConfig

    encoded, _ = encode_counted(tokenizer, examples, max_length)
    max_new = max(len(e.ids) - e.n_prompt for e in encoded)
    gen = GenerationConfig(do_sample=False, max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    out = []
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e.prompt_ids], device=next(model.parameters()).device)
            tokens = model.generate(input_ids=ids, generation_config=gen)[0, e.n_prompt :].tolist()
            out.append(tokens + [tokenizer.pad_token_id] * (max_new - len(tokens)))
    return out


def shared(model, tokenizer, examples, max_length):
    """``choice_scores`` with greedy decoding from the prompts' caches, and ``gold_scores`` of it."""
    from modeconn.evaluator.choices import choice_scores, gold_scores
    from modeconn.evaluator.layer import Unrouted

    pad = tokenizer.pad_token_id
    encoded, _ = encode_counted(tokenizer, examples, max_length)
    rows = choice_rows(tokenizer, examples, max_length)
    with torch.no_grad():
        scores = choice_scores(model, rows, examples, pad, budget=1 << 20, rows_nll=lambda part: path_nll(
            model, part, torch.ones(1, 1), Unrouted(), pad_id=pad, budget=Budget(1 << 20)),
            decode=(max(len(e.ids) - e.n_prompt for e in encoded), tokenizer.eos_token_id))
    gold = gold_scores(scores.nll, scores.misses, rows, examples, plain=True)
    return scores, (gold[0], gold[1][0]) if gold else None


@pytest.mark.parametrize("kind", list(SHARING))
def test_gold_rows_give_the_forced_pass_numbers(tokenizer, kind):
    """A rankable task's loss and known answers read from its gold choice's shared rows equal the forced pass's (loss
    1e-5, float32), each shared prompt's greedy tokens from its cache equal ``generate``'s, and evaluate_model's
    numbers are the forced pass's and decoding's; with prompts cut (max_length 12: those examples run as rows, and the
    task falls back to the forced pass) and without."""
    model = tiny_lm(kind)
    for max_length in (200, 12):
        loss, acc, known = forced_reference(model, tokenizer, CHOICE_EXAMPLES, max_length)
        scores, gold = shared(model, tokenizer, CHOICE_EXAMPLES, max_length)
        assert (gold is not None) == (SHARING[kind][2] and max_length == 200 and kind != "gemma2-window-8")
        if gold is not None:
            assert gold[0].tolist() == pytest.approx(loss.tolist(), rel=1e-5) and gold[1] == known
        if scores.greedy is not None:
            reference = generated(model, tokenizer, CHOICE_EXAMPLES, max_length)
            decoded = [i for i, row in enumerate(scores.greedy[0].tolist()) if row[0] >= 0]
            assert decoded or kind == "gemma2-window-8"  # whose longer batches exceed its window: decoded later
            assert all(scores.greedy[0, i].tolist() == reference[i] for i in decoded)
        curve = evaluate_model(model, tokenizer, {"x": CHOICE_EXAMPLES}, EvalConfig(max_length=max_length, **QUIET))["x"]
        assert curve.loss == pytest.approx(loss.tolist(), rel=1e-5) and curve.accuracy == acc.tolist()


def test_one_pass_gives_a_trained_adapters_loss_and_answers(setup, tokenizer, monkeypatch):
    """On the trained embedded news adapter, where greedy decoding emits some answers and not others: the gold rows
    know the forced pass's answers, the caches decode what ``generate`` decodes, and evaluate_model's numbers, made
    without a forced pass or a call of ``generate``, are the forced pass's and decoding's."""
    from peft import PeftModel

    import modeconn.evaluator.evaluate as evaluate
    import modeconn.evaluator.forced as forced

    model, _, points, examples = setup
    peft_model = PeftModel.from_pretrained(model, points[0]).eval()
    try:
        loss, acc, known = forced_reference(peft_model, tokenizer, examples, 1024)
        reference = generated(peft_model, tokenizer, examples, 1024)
        scores, gold = shared(peft_model, tokenizer, examples, 1024)
        monkeypatch.setattr(evaluate, "forced_pass", lambda *a, **k: pytest.fail("a forced pass ran"))
        monkeypatch.setattr(forced, "greedy_scores", lambda *a, **k: pytest.fail("generate ran"))
        curve = evaluate_model(peft_model, tokenizer, {"x": examples}, EvalConfig(**QUIET))["x"]
    finally:
        peft_model.unload()
    assert any(known) and not all(known) and gold is not None and gold[1] == known
    assert gold[0].tolist() == pytest.approx(loss.tolist(), rel=1e-5) and scores.greedy[0].tolist() == reference
    assert curve.loss == pytest.approx(loss.tolist(), rel=1e-5) and curve.accuracy == acc.tolist()


def both_ways(model, tokenizer, path, ts, tasks, monkeypatch):
    """evaluate_path with the one-pass scoring of rankable tasks, and as before it (loss pass, rows, ``generate``);
    and whether the one pass gave every number."""
    import modeconn.evaluator.evaluate as evaluate

    given = []
    one_pass = evaluate._one_pass
    monkeypatch.setattr(evaluate, "_one_pass", lambda *a, **k: given.append(one_pass(*a, **k)) or given[-1])
    new = evaluate_path(model, tokenizer, path, ts, tasks, EvalConfig(**QUIET)).tasks
    monkeypatch.setattr(evaluate, "_one_pass", lambda *a, **k: (None, None, None))
    old = evaluate_path(model, tokenizer, path, ts, tasks, EvalConfig(**QUIET)).tasks
    return new, old, bool(given) and all(v is not None for out in given for v in out)


ONE_PASS_KINDS = ["llama", "gemma2", "gpt2", "opt", "falcon", "phi3"]


@pytest.mark.parametrize("kind", ONE_PASS_KINDS)
@pytest.mark.parametrize("space", ["factor", "delta"])
def test_one_pass_along_a_path_equals_the_passes_it_replaces(kind, space, tokenizer, tmp_path, monkeypatch):
    """K path points of two random peft adapters on tiny bases (OPT's MLP sees its batch flattened, Falcon's cache is
    its own layout, GPT-2's layers are Conv1D): every choice's NLL, the gold rows' loss and the greedy answers from one
    pass per point equal the loss pass (1e-5), the rows' rank accuracy and ``generate``'s exact match."""
    from test_architectures import adapters, tiny

    model = tiny(kind)
    a, b = (load_adapter(f) for f in adapters(model, kind, dict(r=4, lora_alpha=8), tmp_path))
    new, old, whole = both_ways(model, tokenizer, linear_path(a, b, space), [0.0, 0.3, 0.7, 1.0],
                                {"x": CHOICE_EXAMPLES}, monkeypatch)
    assert whole
    assert new["x"].loss == pytest.approx(old["x"].loss, rel=1e-5)
    assert new["x"].rank_accuracy == old["x"].rank_accuracy and new["x"].accuracy == old["x"].accuracy


def test_one_pass_along_the_trained_path_equals_the_passes_it_replaces(setup, tokenizer, monkeypatch):
    """From the embedded news minimum to the gloss one, where some answers are right and others not: the same."""
    from modeconn.evaluator.data import load_split

    model, path, _, examples = setup
    news = [Example(e.prompt, e.answer, LABELS) for e in load_split(checkpoints_dir() / "data" / "news", "eval", 24)
            if e.answer in LABELS]
    new, old, whole = both_ways(model, tokenizer, path, [0.0, 0.25, 0.5, 0.75, 1.0], {"few": examples, "news": news},
                                monkeypatch)
    assert whole and 0 < max(new["news"].accuracy) and min(new["news"].accuracy) < 1
    for task in ("few", "news"):
        assert new[task].loss == pytest.approx(old[task].loss, rel=1e-5)
        assert new[task].rank_accuracy == old[task].rank_accuracy and new[task].accuracy == old[task].accuracy
