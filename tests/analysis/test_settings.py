"""The analysis wing's settings, built once at the door: the CLI's shared flags are StudySettings' fields, every
analysis command takes --accuracy/--no-accuracy with its own default, curve's old --limit still works, each task is
encoded once, and landscapes are written as kind "landscape" while old "random" files still read."""
import json
from dataclasses import fields
from types import SimpleNamespace

import pytest

import modeconn.analysis.measure as measure
import modeconn.cli as cli
from modeconn.analysis.settings import ACCURACY, StudySettings
from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir

SEQ = checkpoints_dir() / "seq"
NEWS, GLOSS, FORTUNE = (str(SEQ / t) for t in ("news", "gloss", "fortune"))
SKIPPED = {"barrier": {"progress"}, "plane": {"progress"}, "landscape": {"progress"},
           "sweep": {"progress", "data", "prompt_field", "answer_field", "manifest"},
           "curve": {"progress", "split", "device_map", "max_batch_tokens", "accuracy"}}
COMMANDS = {"barrier": ("measure_barrier", [NEWS, GLOSS]), "plane": ("measure_plane", [NEWS, GLOSS, FORTUNE]),
            "landscape": ("measure_landscape", [NEWS]), "sweep": ("sweep_sequence", [str(SEQ)])}


@pytest.mark.parametrize("command", list(SKIPPED))
def test_the_shared_flags_are_the_settings_fields_with_their_defaults(command):
    options = {p.name: p for p in cli.cli.commands[command].params}
    for spec in fields(StudySettings):
        if spec.name in SKIPPED[command]:
            assert spec.name not in options
            continue
        assert options[spec.name].default == spec.default, spec.name


def _captured(monkeypatch, function: str) -> list:
    """Run the command's analysis as far as its settings: the measure function records them, nothing is computed."""
    seen = []
    monkeypatch.setattr(measure, function, lambda target, settings, **options: seen.append((settings, options)))
    monkeypatch.setattr(cli, "_analysis", lambda out, as_json, compute, **kw: compute())
    return seen


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_analysis_command_takes_accuracy_both_ways_and_keeps_its_default(command, monkeypatch):
    function, targets = COMMANDS[command]
    seen = _captured(monkeypatch, function)
    for flag in ([], ["--accuracy"], ["--no-accuracy"]):
        assert main([command, *targets, "--limit", "3", *flag]) == 0
    assert [settings.accuracy for settings, _ in seen] == [None, True, False]
    assert [settings.limit for settings, _ in seen] == [3, 3, 3]
    assert seen[0][0].with_accuracy(ACCURACY[command]).accuracy is (command == "barrier")  # barrier decodes by default


def test_barrier_flags_reach_the_settings_and_its_options(monkeypatch):
    seen = _captured(monkeypatch, "measure_barrier")
    assert main(["barrier", NEWS, GLOSS, "--data", f"news={SEQ / 'news'}", "--no-manifest-data", "--split", "test",
                 "--seed", "3", "--dtype", "bfloat16", "--max-length", "64", "--space", "delta", "--points", "5"]) == 0
    settings, options = seen[0]
    assert settings == StudySettings(data=(f"news={SEQ / 'news'}",), manifest=False, split="test", seed=3,
                                     dtype="bfloat16", max_length=64)
    assert options == {"space": "delta", "points": 5, "path": "linear", "control": None, "adaptive": None}


def test_curve_counts_training_examples_with_train_limit_and_its_old_spelling(tmp_path, monkeypatch, capsys):
    seen = []

    def fit(adapters, settings, **options):
        seen.append((settings, options))
        return SimpleNamespace(save=lambda root: None, history=[1.0])

    monkeypatch.setattr(measure, "fit_curve", fit)
    assert main(["curve", NEWS, GLOSS, "--train-limit", "7", "--out", str(tmp_path / "a")]) == 0
    assert main(["curve", NEWS, GLOSS, "--limit", "5", "--out", str(tmp_path / "b")]) == 0  # the old spelling
    assert [settings.limit for settings, _ in seen] == [7, 5]
    assert seen[0][1]["config"].seed == seen[0][0].seed == 0
    assert "--limit " not in cli.cli.commands["curve"].get_help(cli.click.Context(cli.cli.commands["curve"]))
    capsys.readouterr()
    assert main(["curve", NEWS, GLOSS, "--limit", "5", "--train-limit", "7", "--out", str(tmp_path / "c")]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_a_study_encodes_each_task_once_and_records_its_settings(monkeypatch):
    import modeconn.analysis.study as study
    import modeconn.evaluator.evaluate as evaluate

    calls = []

    def counted(original):
        def encode(tokenizer, examples, max_length):
            calls.append(len(examples))
            return original(tokenizer, examples, max_length)
        return encode

    monkeypatch.setattr(study, "encode_counted", counted(study.encode_counted))
    monkeypatch.setattr(evaluate, "encode_counted", counted(evaluate.encode_counted))
    settings = StudySettings(limit=2, seed=4, accuracy=False, progress=False)
    result = measure.measure_barrier([NEWS, GLOSS], settings, points=2)
    assert calls == [2, 2]  # news and gloss, once each
    recorded = result.made_by["settings"]
    assert {k: recorded[k] for k in ("space", "split", "limit", "seed", "accuracy", "dtype", "max_length")} == \
        {"space": "factor", "split": "eval", "limit": 2, "seed": 4, "accuracy": False, "dtype": "float32", "max_length": 256}
    assert not {"data", "manifest", "allow_pickle", "progress", "device_map"} & set(recorded)  # at their defaults


def test_landscapes_are_written_as_landscape_and_old_random_files_still_read(tmp_path):
    from modeconn.analysis.surface import SurfaceResult, SurfaceTask
    from modeconn.plots.kinds import load_result, writers

    task = SurfaceTask([[1.0, 2.0]], None, [1.5], 3)
    result = SurfaceResult("landscape", "factor", [-1.0, 1.0], [0.0], [[0.0, 0.0]], ["a"], {"x": task}, ["a"], "tiny")
    assert "landscape.json" in writers(result)
    old = {**json.loads(result.dumps()), "kind": "random"}
    (tmp_path / "landscape.json").write_text(json.dumps(old))
    again = load_result(tmp_path / "landscape.json")
    assert again.kind == "landscape" and again.tasks["x"].loss == [[1.0, 2.0]]


def test_settings_refuse_bad_values_at_the_door():
    from modeconn.errors import ConfigError

    for bad, match in (({"data": "x.json"}, "single str"), ({"split": "dev"}, "split must be"),
                       ({"dtype": "fp16"}, "dtype must be"), ({"answer_field": "y"}, "--data"),
                       ({"accuracy": "yes"}, "accuracy must be True or False"), ({"max_length": 1}, "max_length")):
        with pytest.raises(ConfigError, match=match):
            StudySettings(**bad)
