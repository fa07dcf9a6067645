"""The batched evaluator against independent references: peft's own forward pass, and a point-by-point loop."""
import os

import pytest
import torch

from helpers import MODEL_KINDS, make_adapter, peft_loss, tiny_model
from modeconn.lora.adapters import load_adapter, save_adapter
from modeconn.evaluator.data import Example, encode
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.lora.paths import linear_path

EXAMPLES = [
    Example("Which topic is this news story about?\nShares rose sharply on Monday\nTopic:", "business"),
    Example("short", "sport"),
    Example("a longer prompt " * 12, "tech and more words"),
]
QUIET = dict(progress=False)
DEVICE = os.environ.get("MODECONN_TEST_DEVICE", "cpu")  # benchmarks/gpu_check.sh runs these on cuda


@pytest.fixture(params=list(MODEL_KINDS), scope="module")
def setup(request, tmp_path_factory):
    kind = request.param
    model = tiny_model(kind).to(DEVICE)
    tmp = tmp_path_factory.mktemp(kind)
    folders = [make_adapter(model, tmp / f"a{s}", kind, seed=s) for s in range(2)]
    return kind, model, folders


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_endpoints_equal_peft_forward(setup, tokenizer, space):
    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), space)
    curve = evaluate_path(model, tokenizer, path, [0.0, 0.5, 1.0], {"x": EXAMPLES}, EvalConfig(accuracy=False, **QUIET)).tasks["x"]
    assert curve.loss[0] == pytest.approx(peft_loss(model, folders[0], tokenizer, EXAMPLES), abs=1e-5)
    assert curve.loss[2] == pytest.approx(peft_loss(model, folders[1], tokenizer, EXAMPLES), abs=1e-5)


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_batched_points_equal_point_by_point_peft_loop(setup, tokenizer, space, tmp_path):
    """Each interior point, written out as its own peft adapter and run through peft, gives the batched number."""
    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), space)
    ts = [0.0, 0.3, 0.7, 1.0]
    batched = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, EvalConfig(accuracy=False, **QUIET)).tasks["x"].loss
    config = {"target_modules": MODEL_KINDS[kind][1], "fan_in_fan_out": MODEL_KINDS[kind][2]}
    for t, value in zip(ts, batched):
        folder = save_adapter(path.at(t), tmp_path / f"t{t}", {**load_adapter(folders[0]).config, **config})
        assert value == pytest.approx(peft_loss(model, str(folder), tokenizer, EXAMPLES), abs=1e-5)


@pytest.mark.parametrize("budget", [8, 40, 100, 1 << 20])
def test_chunk_size_does_not_change_results(setup, tokenizer, budget):
    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), "delta")
    ts = [i / 6 for i in range(7)]
    ref = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, EvalConfig(max_batch_tokens=1 << 20, **QUIET)).tasks["x"]
    got = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, EvalConfig(max_batch_tokens=budget, **QUIET)).tasks["x"]
    assert got.loss == pytest.approx(ref.loss, abs=1e-6)
    assert got.accuracy == ref.accuracy


def test_adapter_with_itself_is_flat(setup, tokenizer):
    kind, model, folders = setup
    a = load_adapter(folders[0])
    for space in ("factor", "delta"):
        curve = evaluate_path(model, tokenizer, linear_path(a, a, space), [0, 0.25, 0.5, 0.75, 1], {"x": EXAMPLES},
                              EvalConfig(accuracy=False, **QUIET)).tasks["x"]
        assert max(curve.loss) - min(curve.loss) < 1e-5


def test_model_is_restored_after_evaluation(setup, tokenizer):
    kind, model, folders = setup
    before = {n: type(m) for n, m in model.named_modules()}
    evaluate_path(model, tokenizer, linear_path(*(load_adapter(f) for f in folders)), [0, 1], {"x": EXAMPLES[:1]},
                  EvalConfig(accuracy=False, **QUIET))
    assert {n: type(m) for n, m in model.named_modules()} == before


def test_accuracy_equals_peft_greedy_generation_on_the_embedded_default(embedded, tokenizer):
    """Exact match at t=1 equals decoding each example with peft's PeftModel.generate."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from modeconn.evaluator.data import load_split

    first, second = embedded.tasks[0], embedded.tasks[1]
    examples = load_split(embedded.data_dir(first), "eval", 24)
    model = AutoModelForCausalLM.from_pretrained(embedded.root / "../base").eval()
    path = linear_path(load_adapter(embedded.adapter_dir(second)), load_adapter(embedded.adapter_dir(first)), "factor")
    got = evaluate_path(model, tokenizer, path, [0.0, 1.0], {"x": examples}, EvalConfig(max_batch_tokens=2048, **QUIET)).tasks["x"]
    peft_model = PeftModel.from_pretrained(model, embedded.adapter_dir(first)).eval()
    hits = 0
    for ex, enc in zip(examples, encode(tokenizer, examples)):
        out = peft_model.generate(input_ids=torch.tensor([enc.prompt_ids]), max_new_tokens=len(enc.ids) - enc.n_prompt,
                                  do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        hits += tokenizer.decode(out[0, enc.n_prompt:], skip_special_tokens=True).strip() == ex.answer.strip()
    assert got.accuracy[1] == pytest.approx(hits / len(examples))


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
def test_shared_prefix_equals_peft_when_only_later_layers_are_adapted(kind, tokenizer, tmp_path):
    """LoRA on the last layer only: the prefix runs once for all points, and the numbers still equal peft's."""
    from modeconn.evaluator.prefix import first_adapted_layer

    model = tiny_model(kind).to(DEVICE)
    folders = [make_adapter(model, tmp_path / f"a{s}", kind, seed=s, layers_to_transform=[1]) for s in range(2)]
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    assert first_adapted_layer(model, path.modules)[1] == 1
    ts = [0.0, 0.4, 1.0]
    shared = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, EvalConfig(accuracy=False, **QUIET)).tasks["x"].loss
    plain = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES},
                          EvalConfig(accuracy=False, share_prefix=False, **QUIET)).tasks["x"].loss
    assert shared == pytest.approx(plain, abs=1e-6)
    assert shared[0] == pytest.approx(peft_loss(model, folders[0], tokenizer, EXAMPLES), abs=1e-5)
    assert shared[2] == pytest.approx(peft_loss(model, folders[1], tokenizer, EXAMPLES), abs=1e-5)


def test_out_of_memory_halves_the_chunk_once_and_gives_the_same_numbers(setup, tokenizer, monkeypatch, capsys):
    """A simulated accelerator OOM for any forward pass over more than 4 rows: the evaluator splits and goes on."""
    import modeconn.evaluator.evaluate as evaluate

    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    config = EvalConfig(accuracy=False, max_batch_tokens=100_000, **QUIET)
    expected = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, config).tasks["x"].loss
    real = evaluate.points_nll

    def small_device(model, batch, k, repeat=None):
        if k * batch[0].shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(model, batch, k, repeat)

    monkeypatch.setattr(evaluate, "points_nll", small_device)
    capsys.readouterr()
    got = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, config).tasks["x"].loss
    assert got == pytest.approx(expected, abs=1e-6)  # other chunk shapes: float32 rounding (README: 1e-6)
    err = capsys.readouterr().err
    assert err.count("out of accelerator memory") == 1


def test_out_of_memory_while_decoding_splits_and_gives_the_same_answers(setup, tokenizer, monkeypatch, capsys):
    """The same fallback for greedy decoding: a simulated OOM for any generate call over more than 3 rows."""
    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    ts = [0.0, 0.5, 1.0]
    config = EvalConfig(max_batch_tokens=100_000, **QUIET)
    expected = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, config).tasks["x"]
    real, sizes = model.generate, []

    def small_device(input_ids, **kwargs):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "generate", small_device)
    capsys.readouterr()
    got = evaluate_path(model, tokenizer, path, ts, {"x": EXAMPLES}, config).tasks["x"]
    assert got.accuracy == expected.accuracy and got.loss == pytest.approx(expected.loss, abs=1e-6)
    assert max(sizes) > 3 and any(size <= 3 for size in sizes)  # it failed, then ran smaller passes
    assert capsys.readouterr().err.count("out of accelerator memory") == 1


def test_a_bfloat16_base_stays_close_to_float32(setup, tokenizer):
    """Base weights in bfloat16 (the LoRA term and the loss in float32): within 1e-2 relative of the float32 base."""
    kind, model, folders = setup
    path = linear_path(*(load_adapter(f) for f in folders), "factor")
    full = evaluate_path(model, tokenizer, path, [0.0, 0.5, 1.0], {"x": EXAMPLES}, EvalConfig(accuracy=False, **QUIET)).tasks["x"].loss
    half_model = tiny_model(kind).to(DEVICE).to(torch.bfloat16)
    half = evaluate_path(half_model, tokenizer, path, [0.0, 0.5, 1.0], {"x": EXAMPLES},
                         EvalConfig(accuracy=False, **QUIET)).tasks["x"].loss
    assert half != full and half == pytest.approx(full, rel=1e-2)
