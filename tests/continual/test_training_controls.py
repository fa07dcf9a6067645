"""Training at scale, on the embedded model: gradient accumulation gives the big batch's update, gradient checkpointing
gives the same update, bf16 and fp16 (with its loss scaler) run, the schedules have their shapes, and every run
writes its step log (and TensorBoard's files when asked)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from modeconn.cli import main
from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.continual.schedule import lr_factor, schedule_position
from modeconn.evaluator.models import checkpoints_dir

DATA = checkpoints_dir() / "data"
TASKS = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
BASE = dict(rank=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"), epochs=1, max_train=16, seed=3)


def adapters(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "gloss" / "adapter_model.safetensors")


def train(out, method="seq", **settings):
    config = TrainConfig(**{**BASE, **settings})
    return train_sequence(TrainRequest("tiny-llama", TASKS, get_method(method, seed=0), config, eval_limit=4),
                          out, progress=False)


def assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol)


@pytest.mark.slow
def test_accumulating_micro_batches_gives_the_update_of_one_big_batch(tmp_path):
    """2 micro-batches of 4 per step, against one batch of 8: the same adapters (token-weighted micro losses)."""
    train(tmp_path / "big", batch_size=8, grad_accum=1)
    train(tmp_path / "accum", batch_size=4, grad_accum=2)
    train(tmp_path / "four", batch_size=4, grad_accum=1)  # the same examples in steps of 4: a different update
    big, accum, four = (adapters(tmp_path / d) for d in ("big", "accum", "four"))
    assert_same(big, accum)
    assert any(not torch.allclose(big[k], four[k], atol=1e-5) for k in big)
    effective = json.loads((tmp_path / "accum" / "metrics.json").read_text())["made_by"]["settings"]["effective_batch"]
    assert effective == 8


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    train(tmp_path / "plain", batch_size=8)
    train(tmp_path / "checkpointed", batch_size=8, gradient_checkpointing=True)
    assert_same(adapters(tmp_path / "plain"), adapters(tmp_path / "checkpointed"))


@pytest.mark.slow
def test_bf16_base_keeps_lora_and_optimizer_in_fp32_and_stays_close(tmp_path):
    full = train(tmp_path / "fp32", batch_size=8)
    half = train(tmp_path / "bf16", batch_size=8, dtype="bfloat16")
    for key, value in adapters(tmp_path / "bf16").items():
        assert value.dtype == torch.float32
    assert half.metrics.loss[-1] == pytest.approx(full.metrics.loss[-1], rel=0.05)


@pytest.mark.slow
def test_fp16_runs_through_the_loss_scaler(tmp_path):
    train(tmp_path / "fp16", batch_size=4, dtype="float16")
    log = [json.loads(line) for line in (tmp_path / "fp16" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 8 and log[0]["loss_scale"] == 2.0**16  # torch's initial scale
    assert all(torch.isfinite(v).all() for v in adapters(tmp_path / "fp16").values())


def test_an_overflowed_fp16_gradient_skips_the_step_instead_of_stopping_the_run():
    """The scaler's answer to an inf gradient: no update, a lower scale, the run goes on (fp32 would stop)."""
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model

    from helpers import tiny_model
    from modeconn.continual.step import Amp, optimizer_step
    from modeconn.evaluator.data import Encoded, collate

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    model.train()
    method = get_method("seq")
    run = SimpleNamespace(rank=0, world=1, trained=model, model=model, device=torch.device("cpu"),
                          to_device=lambda e: collate(e, 3),
                          request=SimpleNamespace(method=method, config=TrainConfig(batch_size=2, dtype="float16")))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # a gradient that overflows, whatever the loss
        p.register_hook(lambda g: torch.full_like(g, float("inf")))
    optimizer = torch.optim.AdamW(params, lr=0.1)
    before = [p.detach().clone() for p in params]
    window = [Encoded((1, 5, 6, 7, 2), 3), Encoded((1, 8, 9, 2), 2)]
    amp = Amp("float16", torch.device("cpu"))
    result = optimizer_step(run, optimizer, amp, window, lr=0.1, where="test")
    assert result.skipped and amp.scaler.get_scale() == 2.0**15
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    from modeconn.errors import NonFiniteError

    with pytest.raises(NonFiniteError, match="gradient became non-finite at test"):
        run.request.config = TrainConfig(batch_size=2)
        optimizer_step(run, optimizer, Amp("float32", torch.device("cpu")), window, lr=0.1, where="test")


def test_schedules_have_their_shapes():
    assert [lr_factor("constant", s, 10, 2) for s in (0, 1, 2, 9)] == [1 / 3, 2 / 3, 1.0, 1.0]
    assert lr_factor("linear", 2, 10, 2) == 1.0 and lr_factor("linear", 6, 10, 2) == pytest.approx(0.5)
    assert lr_factor("cosine", 6, 10, 2) == pytest.approx(0.5) and lr_factor("cosine", 10, 10, 2) == pytest.approx(0.0)
    assert schedule_position("task", [4, 6], 1, 2) == (2, 6)
    assert schedule_position("stream", [4, 6], 1, 2) == (6, 10)


@pytest.mark.slow
def test_the_step_log_and_its_plot_and_tensorboard(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--method", "ilora", "--tasks", str(checkpoints_dir() / "seq"), "--order", "news,gloss",
                 "--max-train", "16", "--epochs", "1", "--batch-size", "8", "--rank", "4", "--target-modules", "q_proj,v_proj",
                 "--eval-limit", "4", "--lr-scheduler", "cosine", "--warmup-ratio", "0.25", "--schedule-scope", "stream",
                 "--report-to", "tensorboard", "--out", str(out)])
    assert code == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and [r["task"] for r in log] == ["news", "news", "gloss", "gloss"]
    assert all({"loss", "lr", "grad_norm", "tokens_per_second", "seconds"} <= set(r) for r in log)
    assert {"ce_current", "ce_replay", "consistency"} <= set(log[-1])  # I-LoRA's parts once it replays
    lrs = [r["lr"] for r in log]  # one cosine over the stream: warm-up at step 1, then decay across the task boundary
    assert lrs[0] < lrs[1] and lrs[1] > lrs[2] > lrs[3]
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert main(["plot", str(out / "train_log.jsonl")]) == 0
    assert (out / "train_log.png").read_bytes()[:4] == b"\x89PNG" and (out / "train_log.html").is_file()
    config = json.loads((out / "train_config.json").read_text())
    assert config["lr_scheduler"] == "cosine" and config["grad_accum"] == 1 and config["max_grad_norm"] == 1.0
    assert config["warmup_ratio"] == 0.25 and config["schedule_scope"] == "stream"
