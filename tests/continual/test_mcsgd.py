"""MC-SGD: its one-forward segment points against peft run at each point, its second stage against peft's own losses on
the lines it was fitted on, and a two-task run through the CLI that resumes to the same numbers."""
import json

import pytest
import torch

from modeconn.cli import main
from modeconn.continual.methods.mcsgd import MCSGD, blocks_nll, segment_coefficients
from modeconn.continual.methods.protocol import TaskContext
from modeconn.continual.methods.lora_points import adapter_weights
from modeconn.evaluator.data import collate, encode, load_split
from modeconn.evaluator.layer import inject_path
from modeconn.evaluator.models import checkpoints_dir, load_base
from modeconn.lora.paths import Span

DATA = checkpoints_dir() / "data"
SEQ = str(checkpoints_dir() / "seq")
TINY = ["--order", "news,gloss", "--max-train", "16", "--epochs", "1", "--batch-size", "8", "--rank", "4",
        "--target-modules", "q_proj,v_proj", "--eval-limit", "6", "--seed", "1", "--buffer-size", "8"]


@pytest.fixture(scope="module")
def tiny():
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_base("tiny-llama")
    torch.manual_seed(1)
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    tasks = {name: encode(tokenizer, load_split(DATA / name, "train", 6), 128) for name in ("news", "gloss")}
    return peft, tokenizer, tasks


def _factors(peft) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in peft.named_parameters() if ".default." in n and "lora_" in n}


@torch.no_grad()
def _set(peft, factors: dict[str, torch.Tensor]) -> None:
    for n, p in peft.named_parameters():
        if n in factors:
            p.copy_(factors[n])


@torch.no_grad()
def _perturb(peft, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    _set(peft, {n: f + scale * torch.randn(f.shape, generator=generator) for n, f in _factors(peft).items()})


@torch.no_grad()
def _peft_nll(peft, examples, pad_id) -> tuple[float, int]:
    """Summed answer NLL (float64) and answer tokens from peft's own forward at the adapter's current factors."""
    batch = collate(examples, pad_id)
    logits = peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).double(), labels.flatten(), ignore_index=-100,
                                            reduction="sum")
    return nll.item(), int((labels != -100).sum())


def _line_loss(peft, start, end, alpha, examples, pad_id) -> float:
    """The token-weighted answer NLL at (1 − α)·start + α·end, factors set by hand and scored by peft."""
    _set(peft, {n: (1 - alpha) * start[n] + alpha * end[n] for n in start})
    nll, tokens = _peft_nll(peft, examples, pad_id)
    return nll / tokens


def test_all_points_of_both_segments_in_one_forward_equal_peft_at_each_point(tiny):
    peft, tokenizer, tasks = tiny
    prev, weights = _factors(peft), [adapter_weights(peft)]  # the span (w̄_{t−1}, ŵ_t, w)
    _perturb(peft, 0.3, 2)
    hat = _factors(peft)
    weights.append(adapter_weights(peft))
    _perturb(peft, 0.3, 3)
    w = _factors(peft)
    weights.append(adapter_weights(peft))
    alphas = [0.0, 0.3, 1.0]
    past, current = tasks["news"][:2], tasks["gloss"][:2]
    lm = peft.get_base_model()
    calls = []
    hook = lm.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with torch.no_grad(), peft.disable_adapter(), inject_path(lm, Span(tuple(weights)), trainable=(2,)) as injected:
        nll, tokens = blocks_nll(lm, injected, segment_coefficients(alphas), [past] * 3 + [current] * 3,
                                 pad_id=tokenizer.pad_token_id)
    hook.remove()
    assert len(calls) == 1  # all six points, both segments, in one pass of the decoder
    for k, alpha in enumerate(alphas):
        for block, (start, examples) in ((k, (prev, past)), (k + 3, (hat, current))):
            _set(peft, {n: (1 - alpha) * start[n] + alpha * w[n] for n in start})
            expected, count = _peft_nll(peft, examples, tokenizer.pad_token_id)
            assert tokens[block].item() == count
            assert nll[block].item() == pytest.approx(expected, rel=1e-5)


def test_second_stage_lowers_the_mean_loss_of_the_sampled_segments(tiny):
    """Two tasks: the memory holds task 1, stage 2 moves w; peft scores both lines before (w at its start) and after."""
    peft, tokenizer, tasks = tiny
    pad = tokenizer.pad_token_id
    method = MCSGD(buffer_size=6, mcsgd_points=3, mcsgd_epochs=3, mcsgd_lr=0.05, mcsgd_batch_size=3, seed=4)
    method.end_task(TaskContext(peft, "news", 0, tasks["news"], lambda e: {}, 3, 12, 2, tokenizer))
    assert method.memory_examples == 6 and method.segments == {}
    ctx = TaskContext(peft, "gloss", 1, tasks["gloss"], lambda e: {}, 3, 12, 2, tokenizer)
    method.begin_task(ctx)
    prev = _factors(peft)
    _perturb(peft, 0.4, 7)  # stage 1's continual minimum ŵ_2, as far from w̄_1 as training would take it
    hat = _factors(peft)
    method.end_task(ctx)
    w = _factors(peft)
    start = {n: 0.75 * prev[n] + 0.25 * hat[n] for n in prev}
    memory, current = tasks["news"], tasks["gloss"]  # the memory is task 1; the subset all 6 of task 2's examples

    def losses(end):
        return ([_line_loss(peft, prev, end, a, memory, pad) for a in (0, 0.5, 1)],
                [_line_loss(peft, hat, end, a, current, pad) for a in (0, 0.5, 1)])

    (past_before, current_before), (past_after, current_after) = losses(start), losses(w)
    record = method.record()["segments"]["gloss"]
    assert record["past_before"] == pytest.approx(past_before, rel=1e-5)
    assert record["current_before"] == pytest.approx(current_before, rel=1e-5)
    assert record["past_after"] == pytest.approx(past_after, rel=1e-5)
    assert record["current_after"] == pytest.approx(current_after, rel=1e-5)
    mean = lambda *segments: sum(sum(s) for s in segments) / 6
    assert mean(past_after, current_after) < mean(past_before, current_before) - 1e-3
    assert record["steps"] == 3 * 2 and method.memory_examples == 6


@pytest.mark.slow
def test_trains_two_tasks_from_the_cli_and_resumes_to_the_same_numbers(tmp_path, capsys):
    """The er budget's memory, a per-task segment record, plain peft checkpoints, and a stop inside task 2 (before
    its second stage, so the previous solution must come back from the state) resumed to the same run."""
    from safetensors.torch import load_file

    args = ["train", "--method", "mc-sgd", "--tasks", SEQ, *TINY, "--mcsgd-points", "3", "--resume"]
    assert main(["train", "--method", "er", "--tasks", SEQ, *TINY, "--out", str(tmp_path / "er")]) == 0
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    assert main(args + ["--out", str(tmp_path / "part"), "--stop-after-steps", "3"]) == 0  # 2 steps per task
    assert not (tmp_path / "part" / "metrics.json").exists()
    assert main(args + ["--out", str(tmp_path / "part")]) == 0
    er, whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("er", "whole", "part"))
    assert whole["method"] == "mc-sgd" and whole["memory_examples"] == er["memory_examples"] == 8
    segments = whole["method_record"]["segments"]
    assert list(segments) == ["gloss"] and len(segments["gloss"]["past_after"]) == 3
    assert resumed["accuracy"] == whole["accuracy"] and resumed["method_record"] == whole["method_record"]
    for task in ("news", "gloss"):
        a = load_file(tmp_path / "whole" / task / "adapter_model.safetensors")
        b = load_file(tmp_path / "part" / task / "adapter_model.safetensors")
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert main(["barrier", str(tmp_path / "whole" / "news"), str(tmp_path / "whole" / "gloss"), "--split", "test",
                 "--limit", "4", "--points", "3", "--no-accuracy", "--out", str(tmp_path / "b")]) == 0


def test_delta_space_lines_end_at_the_adapters_and_their_mean_loss_falls(tiny):
    """ΔW-space lines: each segment's ends are w̄_1 (or ŵ_2) and w as peft scores them; the recorded mean falls."""
    peft, tokenizer, tasks = tiny
    pad = tokenizer.pad_token_id
    method = MCSGD(buffer_size=6, mcsgd_points=3, mcsgd_epochs=3, mcsgd_batch_size=3, mcsgd_space="delta", seed=4)
    method.end_task(TaskContext(peft, "news", 0, tasks["news"], lambda e: {}, 3, 12, 2, tokenizer))
    ctx = TaskContext(peft, "gloss", 1, tasks["gloss"], lambda e: {}, 3, 12, 2, tokenizer)
    method.begin_task(ctx)
    prev = _factors(peft)
    _perturb(peft, 0.4, 8)
    hat = _factors(peft)
    method.end_task(ctx)
    w = _factors(peft)
    record = method.record()["segments"]["gloss"]
    ends = [(prev, tasks["news"], record["past_after"]), (hat, tasks["gloss"], record["current_after"])]
    for start, examples, losses in ends:
        assert losses[0] == pytest.approx(_line_loss(peft, start, w, 0, examples, pad), rel=1e-5)
        assert losses[-1] == pytest.approx(_line_loss(peft, start, w, 1, examples, pad), rel=1e-5)
    mean = lambda when: sum(record[f"past_{when}"]) + sum(record[f"current_{when}"])
    assert mean("after") < mean("before") - 1e-3 and method.record()["space"] == "delta"
