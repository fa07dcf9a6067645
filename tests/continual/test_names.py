"""One name per setting: `--<method>-<option>` flags with fields of the same name, `--dtype` for training, the run
settings in one TrainRequest; the old spellings (flags, config keys, recorded runs, saved states) still read."""
import inspect
import json

import pytest
from click.testing import CliRunner

from modeconn.cli import cli, main
from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.continual.compare import read_runs
from modeconn.continual.methods.registry import declared_options
from modeconn.continual.options import resolve
from modeconn.errors import ConfigError
from modeconn.evaluator.models import checkpoints_dir

DATA = checkpoints_dir() / "data"
TASKS = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
TINY = dict(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=4, max_train=8, seed=2)


def test_every_method_flag_names_the_field_it_sets():
    for key, opt in declared_options().items():
        assert opt.name == key and opt.flag == key.replace("_", "-")
    ilora = {k for k, o in declared_options().items() if list(o.defaults) == ["ilora"]}
    assert ilora == {"ilora_gamma", "ilora_ema", "ilora_eval", "ilora_variant", "ilora_consistency"}
    olora = {k for k, o in declared_options().items() if list(o.defaults) == ["olora"]}
    assert olora == {"olora_lambda1", "olora_lambda2", "olora_orth"}


def test_old_flags_and_config_keys_give_the_same_request_as_the_new_ones():
    common = {"method": "ilora", "tasks": str(DATA), "order": "news,gloss"}
    old = resolve({**common, "gamma": 0.5, "ema": 0.8, "consistency": "mse", "precision": "bf16"})
    new = resolve({**common, "ilora_gamma": 0.5, "ilora_ema": 0.8, "ilora_consistency": "mse", "dtype": "bfloat16"})
    assert old.options == new.options and old.config == new.config and new.config.dtype == "bfloat16"
    assert new.options["ilora_gamma"] == 0.5 and new.options["ilora_consistency"] == "mse"
    from_file = resolve({}, {**common, "gamma": 0.5, "ema": 0.8, "consistency": "mse", "precision": "bf16"}, "old.yaml")
    assert from_file.options == new.options and from_file.config == new.config
    with pytest.raises(ConfigError, match="old name of ilora_gamma"):
        resolve({**common, "gamma": 0.5, "ilora_gamma": 0.5})
    with pytest.raises(ConfigError, match="'ema'; it is now 'ilora_ema'"):
        get_method("ilora", ema=0.5)


def test_old_flags_are_hidden_aliases(tmp_path, capsys):
    shown = CliRunner().invoke(cli, ["train", "--help"], terminal_width=200).output
    for flag in ("--dtype", "--ilora-gamma", "--ilora-ema", "--ilora-consistency", "--ilora-eval", "--olora-lambda2"):
        assert flag in shown
    for old in ("--precision", "--gamma ", "--ema ", "--consistency "):
        assert old not in shown
    assert "split of the accuracy matrix [test]" in shown and "[25]" in shown  # the request's and loop's defaults
    assert main(["train", "--tasks", str(DATA), "--method", "ilora", "--precision", "fp64", "--out", str(tmp_path)]) == 2
    assert "fp64" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_the_loop_takes_the_request_whole():
    """train_sequence and prepare take the request, not its parts; what follows it is keyword-only."""
    from modeconn.continual.prepare import prepare

    for function, most in ((train_sequence, 8), (prepare, 5)):
        params = inspect.signature(function).parameters.values()
        assert len(params) <= most and [p.name for p in params][1 if function is train_sequence else 2] in ("out", "folder")
        assert all(p.kind is p.KEYWORD_ONLY for p in list(params)[3:])
    request = TrainRequest("tiny-llama", TASKS, get_method("seq"))
    assert request.config == TrainConfig() and request.metrics == {"news": "exact_match", "gloss": "exact_match"}
    assert (request.eval_split, request.eval_rows, request.device, request.report_to) == ("test", "first", "cpu", "none")


def test_an_old_run_reads_and_resumes_under_todays_names(tmp_path):
    """A state and a record saved before the renames (``gamma``, ``precision: fp32``): resuming continues it, and
    compare labels it as a run of today's defaults."""
    method = get_method("ilora", seed=2, buffer_size=4)
    request = TrainRequest("tiny-llama", TASKS, method, TrainConfig(**TINY), eval_limit=2)
    out = tmp_path / "ilora"
    assert not train_sequence(request, out, progress=False, stop_after=1).complete
    state = json.loads((out / ".state" / "state.json").read_text())
    renamed = {"ilora_gamma": "gamma", "ilora_ema": "ema", "ilora_eval": "eval_adapter", "ilora_variant": "variant",
               "ilora_consistency": "consistency"}
    fingerprint = state["fingerprint"]
    fingerprint["options"] = {renamed.get(k, k): v for k, v in fingerprint["options"].items()}
    fingerprint["config"]["precision"] = {"float32": "fp32"}[fingerprint["config"].pop("dtype")]
    (out / ".state" / "state.json").write_text(json.dumps(state))
    again = get_method("ilora", seed=2, buffer_size=4)
    run = train_sequence(TrainRequest("tiny-llama", TASKS, again, TrainConfig(**TINY), eval_limit=2), out,
                         progress=False, resume=True)
    assert run.complete and len(run.metrics.accuracy) == 2
    record = json.loads((out / "metrics.json").read_text())
    settings = record["made_by"]["settings"]
    assert settings["options"]["ilora_ema"] == 0.9 and settings["config"]["dtype"] == "float32"
    settings["options"] = {renamed.get(k, k): v for k, v in settings["options"].items() if k != "buffer_size"}
    (out / "metrics.json").write_text(json.dumps(record))
    (out / "sequence.json").unlink()  # no NAME-seedN name: the label comes from the method and its options
    assert read_runs([str(out)])[0].label == "ilora"


def test_every_method_has_every_hook_the_loop_calls():
    from modeconn.continual import METHODS
    from modeconn.continual.methods.protocol import Method

    hooks = {n for n in vars(Method) if not n.startswith("_")} | set(Method.__annotations__)
    assert {"training_step", "evaluation_plan", "state", "saved_adapters"} <= hooks
    for cls in METHODS.values():
        assert [h for h in sorted(hooks) if not hasattr(cls, h)] == [], cls.name
