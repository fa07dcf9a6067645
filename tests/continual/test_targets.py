"""`train`'s LoRA targets: where peft would fail (experts of a mixture of experts, Mamba's out_proj, a default that
matches nothing) or the adapter could not be analysed, one line that names what to pass, and that advice works."""
import pytest

from modeconn.continual.config import TrainConfig
from modeconn.continual.prepare import lora_targets
from modeconn.errors import ConfigError
from tiny_configs import tiny_causal_lm

ADVICE = "pass target_modules (--target-modules) from: "


def advised(model, targets) -> list[str]:
    with pytest.raises(ConfigError) as refusal:
        lora_targets(model, TrainConfig(target_modules=targets))
    message = str(refusal.value)
    assert "\n" not in message and ADVICE in message and "all-linear)" not in message, message
    return message.split(ADVICE)[1].split(",")


def trains(model, targets) -> int:
    """Trainable LoRA parameters peft makes with ``targets`` at train's default dropout (ParamWrapper refuses it)."""
    from peft import LoraConfig, get_peft_model

    config = TrainConfig(target_modules=targets)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=config.dropout,
                                                  target_modules=lora_targets(model, config), task_type="CAUSAL_LM"))
    count = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    peft_model.unload()
    return count


@pytest.mark.parametrize("model_type,extra", [("qwen3_moe", {}), ("olmoe", {}), ("mixtral", {}),
                                              ("deepseek_v3", {"first_k_dense_replace": 1})])
def test_all_linear_on_a_mixture_of_experts_names_the_layers_to_pass(model_type, extra):
    model = tiny_causal_lm(model_type, **extra)
    instead = advised(model, "all-linear")
    assert not any("expert" in name or "gate" == name for name in instead)
    assert trains(model, ",".join(instead)) > 0


def test_mixtral_default_targets_are_peft_s_own_named():
    model = tiny_causal_lm("mixtral")
    assert lora_targets(model, TrainConfig()) == ["q_proj", "v_proj"] and trains(model, None) > 0


@pytest.mark.parametrize("model_type", ["mamba", "falcon_h1"])
def test_mamba_blocks_refuse_out_proj_and_their_advice_works(model_type):
    model = tiny_causal_lm(model_type)
    for targets in (None, "all-linear", "out_proj"):
        instead = advised(model, targets)
        assert "out_proj" not in instead and "dt_proj" not in instead
        assert trains(model, ",".join(instead)) > 0


def test_llama4_router_is_refused_by_name():
    model = tiny_causal_lm("llama4_text")
    with pytest.raises(ConfigError, match="would adapt router"):
        lora_targets(model, TrainConfig(target_modules="all-linear"))


def test_embedding_targets_are_refused_before_work():
    model = tiny_causal_lm("llama")
    instead = advised(model, "embed_tokens")
    assert "q_proj" in instead and trains(model, "q_proj,v_proj") > 0


def test_train_cli_refuses_embed_tokens_in_one_line(tmp_path, capsys):
    from modeconn.cli import main
    from modeconn.evaluator.models import checkpoints_dir

    capsys.readouterr()
    code = main(["train", "--tasks", str(checkpoints_dir() / "seq"), "--order", "news", "--max-train", "4",
                 "--target-modules", "embed_tokens", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not linear layers" in err[0] and ADVICE in err[0], err
    assert not (tmp_path / "run" / "news").exists()
