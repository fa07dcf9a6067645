"""The sequential trainer writes what the analysis side loads, and the same seed gives the same adapters."""
import pytest
import torch

from modeconn.lora.adapters import load_adapter
from modeconn.cli import main
from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
from modeconn.errors import ConfigError
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora.sequence import load_sequence

DATA = checkpoints_dir() / "data"
TINY = dict(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=8, max_train=16, seed=3)


def run(out):
    tasks = [("news", DATA / "news"), ("gloss", DATA / "gloss")]
    return train_sequence(TrainRequest("tiny-llama", tasks, get_method("seq"), TrainConfig(**TINY), eval_limit=8),
                          out, progress=False).sequence


@pytest.mark.slow
def test_trained_sequence_is_loadable_deterministic_and_measurable(tmp_path, capsys):
    seq = run(tmp_path / "a")
    again = run(tmp_path / "b")
    loaded = load_sequence(tmp_path / "a")
    assert [t.name for t in loaded.tasks] == ["news", "gloss"] and loaded.base_model == "tiny-llama"
    assert loaded.data_dir(loaded.tasks[0]) == (DATA / "news").resolve()
    assert (tmp_path / "a" / "command.sh").is_file()
    for task in seq.tasks:
        a, b = load_adapter(seq.adapter_dir(task)), load_adapter(again.adapter_dir(task))
        assert a.base_model == "tiny-llama" and a.rank(a.modules[0]) == 4
        for m in a.modules:
            assert torch.equal(a.factors[m][0], b.factors[m][0]) and torch.equal(a.factors[m][1], b.factors[m][1])
    first, second = (load_adapter(seq.adapter_dir(t)) for t in seq.tasks)
    assert any(not torch.equal(first.factors[m][1], second.factors[m][1]) for m in first.modules)
    code = main(["barrier", str(tmp_path / "a" / "news"), str(tmp_path / "a" / "gloss"), "--points", "2", "--limit", "4",
                 "--no-accuracy", "--out", str(tmp_path / "r")])
    assert code == 0 and (tmp_path / "r" / "barrier.json").is_file()


def test_config_and_method_validation():
    with pytest.raises(ConfigError):
        TrainConfig(rank=0)
    with pytest.raises(ConfigError):
        TrainConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("nope")
