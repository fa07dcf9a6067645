"""The data people have: every format `--data` and task folders read, written here by the test and read back to the
same prompts and answers, or refused in one line naming the format tried and what was found."""
import gzip
import json
import shutil
import tempfile

import datasets
import pandas as pd
import pytest

from modeconn.analysis.study import data_sources, entry_source
from modeconn.cli import main
from modeconn.errors import ConfigError, DataError
from modeconn.evaluator.data import Fields, load_examples, load_split, read_data, read_examples
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora.sequence import load_sequence

SEQ = checkpoints_dir() / "seq"
A, B = str(SEQ / "news"), str(SEQ / "gloss")
RECORDS = [{"prompt": "Q: 2+2?\nA:", "answer": " 4"}, {"prompt": 'say "hi", then stop', "answer": "007"},
           {"prompt": "tab\there; ünïcode ✓", "answer": "  leading spaces"}]
EXPECTED = [(r["prompt"], r["answer"]) for r in RECORDS]


def _frame(records, prompt="prompt", answer="answer"):
    return pd.DataFrame({prompt: [r["prompt"] for r in records], answer: [r["answer"] for r in records]})


def _saved(path, records):
    datasets.Dataset.from_pandas(_frame(records)).save_to_disk(str(path))
    return path


def _arrow(path, records):
    folder = _saved(path.parent / "saved-for-arrow", records)
    shutil.copy(next(folder.glob("*.arrow")), path)
    return path


def _write(path, text, zipped=False):
    (gzip.open(path, "wt", encoding="utf-8") if zipped else open(path, "w", encoding="utf-8")).write(text)
    return path


WRITERS = {
    "json": lambda p: _write(p / "d.json", json.dumps(RECORDS, ensure_ascii=False, indent=1)),
    "jsonl": lambda p: _write(p / "d.jsonl", "\n".join(json.dumps(r) for r in RECORDS)),
    "jsonl named .json": lambda p: _write(p / "d.json", "\n".join(json.dumps(r) for r in RECORDS)),
    "json.gz": lambda p: _write(p / "d.json.gz", json.dumps(RECORDS), zipped=True),
    "jsonl.gz": lambda p: _write(p / "d.jsonl.gz", "\n".join(json.dumps(r) for r in RECORDS), zipped=True),
    "parquet": lambda p: _frame(RECORDS).to_parquet(p / "d.parquet") or p / "d.parquet",
    "csv": lambda p: _frame(RECORDS).to_csv(p / "d.csv", index=False) or p / "d.csv",
    "csv with pandas' index": lambda p: _frame(RECORDS).to_csv(p / "d.csv") or p / "d.csv",
    "tsv": lambda p: _frame(RECORDS).to_csv(p / "d.tsv", index=False, sep="\t") or p / "d.tsv",
    "arrow": lambda p: _arrow(p / "d.arrow", RECORDS),
    "save_to_disk Dataset": lambda p: _saved(p / "saved", RECORDS),
    "column-wise json": lambda p: _write(p / "d.json", json.dumps({k: [r[k] for r in RECORDS] for k in RECORDS[0]})),
    "input/output csv": lambda p: _frame(RECORDS, "input", "output").to_csv(p / "d.csv", index=False) or p / "d.csv",
    "instruction/response jsonl": lambda p: _write(p / "d.jsonl", "\n".join(
        json.dumps({"instruction": r["prompt"], "response": r["answer"], "id": i}) for i, r in enumerate(RECORDS))),
    "question/answer parquet": lambda p: _frame(RECORDS, "question").to_parquet(p / "d.parquet") or p / "d.parquet",
}
ALIASES = {"input/output csv": ("input", "output"), "instruction/response jsonl": ("instruction", "response"),
           "question/answer parquet": ("question", "answer")}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_each_format_reads_to_the_same_examples(tmp_path, kind):
    examples, used = read_examples(WRITERS[kind](tmp_path))
    assert [(e.prompt, e.answer) for e in examples] == EXPECTED
    assert (used.prompt, used.answer) == ALIASES.get(kind, ("prompt", "answer"))


def test_todays_json_reads_exactly_as_json_does():
    path = checkpoints_dir() / "data" / "news" / "eval.json"
    assert [(e.prompt, e.answer) for e in load_examples(path)] == [(r["prompt"], r["answer"]) for r in
                                                                    json.loads(path.read_text())]


def test_a_saved_dataset_dict_is_a_task_folder(tmp_path):
    splits = {"train": RECORDS[:1], "validation": RECORDS[1:2], "test": RECORDS[2:]}
    datasets.DatasetDict({k: datasets.Dataset.from_pandas(_frame(v)) for k, v in splits.items()}).save_to_disk(
        str(tmp_path / "task"))
    for split, name in (("train", "train"), ("eval", "validation"), ("test", "test")):
        got = load_split(tmp_path / "task", split)
        assert [(e.prompt, e.answer) for e in got] == [(r["prompt"], r["answer"]) for r in splits[name]]
    assert read_data(tmp_path / "task", "eval")[0] == load_split(tmp_path / "task", "eval")


def test_task_folder_of_csv_and_jsonl_gz_splits(tmp_path):
    (tmp_path / "task").mkdir()
    _frame(RECORDS).to_csv(tmp_path / "task" / "train.csv", index=False)
    _write(tmp_path / "task" / "eval.jsonl.gz", "\n".join(json.dumps(r) for r in RECORDS), zipped=True)
    assert [(e.prompt, e.answer) for e in load_split(tmp_path / "task", "train")] == EXPECTED
    assert [(e.prompt, e.answer) for e in load_split(tmp_path / "task", "eval", 2, "last")] == EXPECTED[1:]


def test_numbers_and_booleans_become_their_json_spelling(tmp_path):
    path = _write(tmp_path / "d.json", json.dumps([{"prompt": 1, "answer": 3}, {"prompt": "b", "answer": True},
                                                   {"prompt": "c", "answer": 2.5}, {"prompt": "d", "answer": False},
                                                   {"prompt": "e", "answer": "text"}]))
    assert [(e.prompt, e.answer) for e in load_examples(path)] == [("1", "3"), ("b", "true"), ("c", "2.5"),
                                                                   ("d", "false"), ("e", "text")]


def test_named_fields_pick_any_columns(tmp_path):
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps({"sentence": r["prompt"], "label": i, "prompt": "x"})
                                                  for i, r in enumerate(RECORDS)))
    examples, used = read_examples(path, Fields("sentence", "label"))
    assert [(e.prompt, e.answer) for e in examples] == [(r["prompt"], str(i)) for i, r in enumerate(RECORDS)]
    assert used == Fields("sentence", "label")
    assert [e.prompt for e in read_examples(path, Fields(answer="label"))[0]] == ["x"] * 3  # prompt: the native name


def _dict_without_validation(p):
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(_frame(RECORDS))}).save_to_disk(str(p / "dd"))
    return p / "dd"


REFUSED = [  # (name, writer, fields, the refusal's words)
    ("csv named .json", lambda p: _write(p / "d.json", "prompt,answer\na,b\n"), None, "not readable as JSON (invalid JSON"),
    ("json named .csv", lambda p: _write(p / "d.csv", json.dumps(RECORDS, indent=1)), None,
     "not readable as CSV (Error tokenizing data"),
    ("repeated csv header", lambda p: _write(p / "d.csv", "prompt,prompt\na,b\n"), None,
     "(CSV): its first line ['prompt', 'prompt'] is not a header of distinct column names"),
    ("header-only csv", lambda p: _write(p / "d.csv", "prompt,answer\n"), None, "only a header line, no records"),
    ("csv named .tsv", lambda p: _write(p / "d.tsv", "prompt,answer\na,b\n"), None,
     "(TSV): records lack the fields prompt/answer (or input/output, instruction/response, question/answer); they have "
     "'prompt,answer'"),
    ("one JSON object", lambda p: _write(p / "d.json", '{"prompt": "a", "answer": "b"}'), None, "one JSON object whose"),
    ("unequal columns", lambda p: _write(p / "d.json", '{"prompt": ["a", "b"], "answer": ["c"]}'), None,
     "columns of 2 prompts and 1 answers"),
    ("empty list", lambda p: _write(p / "d.json", "[]"), None, "no records"),
    ("empty file", lambda p: _write(p / "d.jsonl", ""), None, "data file is empty"),
    ("ambiguous aliases", lambda p: _write(p / "d.json", json.dumps([{"input": "a", "output": "b", "question": "c",
                                                                       "answer": "d"}])), None, "ambiguous"),
    ("no recognised fields", lambda p: _write(p / "d.json", '[{"text": "a", "label": 1}]'), None,
     "they have 'text', 'label': name them with --prompt-field/--answer-field"),
    ("null answer", lambda p: _write(p / "d.json", '[{"prompt": "a", "answer": "b"}, {"prompt": "c", "answer": null}]'),
     None, "record 1 has no answer"),
    ("missing answer", lambda p: _write(p / "d.jsonl", '{"prompt": "a", "answer": "b"}\n{"prompt": "c"}'), None,
     "record 1 has no answer"),
    ("empty answer", lambda p: _frame([{"prompt": "a", "answer": ""}]).to_parquet(p / "d.parquet") or p / "d.parquet",
     None, "record 0 has an empty answer"),
    ("list prompt", lambda p: _write(p / "d.json", '[{"prompt": ["a"], "answer": "b"}]'), None, "non-string prompt"),
    ("deep nesting", lambda p: _write(p / "d.json", "[" * 100_000 + "]" * 100_000), None, "nested too deeply"),
    ("deep record", lambda p: _write(p / "d.json", '[{"prompt": ' + "[" * 5000 + "]" * 5000 + ', "answer": "x"}]'),
     None, "nested too deeply"),
    ("named field absent", WRITERS["csv"], Fields("text", "answer"), "(CSV): its records have no field 'text'"),
    ("not gzip", lambda p: _write(p / "d.jsonl.gz", '{"prompt": "a", "answer": "b"}'), None, "not readable as JSON Lines"),
    ("broken parquet", lambda p: _write(p / "d.parquet", "hello"), None, "not readable as Parquet"),
    ("broken arrow", lambda p: _write(p / "d.arrow", "hello"), None, "not readable as Arrow"),
    ("unknown suffix", lambda p: _write(p / "d.txt", "a b"), None, "unknown data format"),
    ("plain folder", lambda p: (p / "f").mkdir() or p / "f", None, "no eval.json (or .jsonl, .json.gz"),
    ("dict without eval", _dict_without_validation, None, "with no validation or eval or valid or dev split"),
]


@pytest.mark.parametrize("name,writer,fields,match", REFUSED, ids=[r[0] for r in REFUSED])
def test_each_bad_file_is_refused_in_one_line(tmp_path, name, writer, fields, match):
    with pytest.raises(DataError) as caught:
        read_data(writer(tmp_path), "eval", fields=fields or Fields())
    message = str(caught.value)
    assert match in message and "\n" not in message, message


def test_two_files_for_one_split_are_refused(tmp_path):
    WRITERS["json"](tmp_path).rename(tmp_path / "train.json")
    WRITERS["csv"](tmp_path).rename(tmp_path / "train.csv")
    with pytest.raises(DataError, match="holds train.json and train.csv for the train split; keep one"):
        load_split(tmp_path, "train")


def test_field_names_are_checked():
    with pytest.raises(ConfigError, match="prompt_field must be a field name"):
        Fields("", "answer")


def test_reading_leaves_nothing_in_the_datasets_cache(tmp_path, monkeypatch):
    cache, scratch = tmp_path / "hf-cache", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    files = tmp_path / "files"
    for i, write in enumerate(WRITERS.values()):
        (files / str(i)).mkdir(parents=True)
        read_examples(write(files / str(i)))
    assert not cache.exists() or not any(cache.rglob("*")), sorted(cache.rglob("*"))
    assert not (tmp_path / "hf-home").exists() and not any(scratch.iterdir())


def test_duplicate_data_names_are_refused(tmp_path):
    one, two = WRITERS["json"](tmp_path), WRITERS["csv"](tmp_path)
    with pytest.raises(DataError, match="two --data tasks are named 'x'"):
        data_sources([f"x={one}", f"x={two}"])
    with pytest.raises(DataError, match="two --data tasks are named 'd'"):  # the name each file gives itself
        data_sources([str(one), str(two)])
    with pytest.raises(DataError, match="a list of"):
        data_sources(str(one))


def test_sequence_json_names_each_tasks_fields(tmp_path):
    (tmp_path / "t").mkdir()
    _frame(RECORDS, "text", "label").to_csv(tmp_path / "t" / "eval.csv", index=False)
    (tmp_path / "sequence.json").write_text(json.dumps({"name": "s", "base_model": "tiny-llama", "tasks": [
        {"name": "t", "data": "t", "adapter": "t", "prompt_field": "text", "answer_field": "label"}]}))
    seq = load_sequence(tmp_path)
    examples, used = entry_source(seq, seq.tasks[0]).read("eval", None)
    assert [(e.prompt, e.answer) for e in examples] == EXPECTED and used == Fields("text", "label")
    assert seq.to_json()["tasks"][0]["prompt_field"] == "text"
    assert "prompt_field" not in load_sequence(SEQ).to_json()["tasks"][0]  # manifests without them are unchanged


def _refused(args, capsys, match):
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("modeconn: error:") and match in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_cli_refusals(tmp_path, capsys):
    one, two = WRITERS["json"](tmp_path), WRITERS["csv"](tmp_path)
    out = ["--out", str(tmp_path / "out")]
    _refused(["barrier", A, B, "--data", f"x={one}", "--data", f"x={two}", *out], capsys, "two --data tasks are named 'x'")
    _refused(["barrier", A, B, "--prompt-field", "text", *out], capsys, "pass --data")
    _refused(["barrier", A, B, "--data", str(two), "--answer-field", "label", *out], capsys, "no field 'label'")
    _refused(["barrier", A, B, "--data", str(_write(tmp_path / "c.json", "prompt,answer\n")), *out], capsys,
             "not readable as JSON")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_barrier_on_aliased_csv_equals_barrier_on_json_and_records_the_fields(tmp_path, capsys):
    records = json.loads((checkpoints_dir() / "data" / "fortune" / "eval.json").read_text())[:3]
    _frame(records, "instruction", "response").to_csv(tmp_path / "f.csv", index=False)
    _write(tmp_path / "f.json", json.dumps(records))
    results = []
    for data in ("f.csv", "f.json"):
        args = ["barrier", A, B, "--data", f"fortune={tmp_path / data}", "--no-manifest-data", "--points", "2",
                "--no-accuracy", "--json", "--out", str(tmp_path / data.replace(".", "-"))]
        assert main(args) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["tasks"]["fortune"]["loss"] == results[1]["tasks"]["fortune"]["loss"]
    assert results[0]["made_by"]["settings"]["data_fields"] == {"fortune": {"prompt": "instruction",
                                                                            "answer": "response"}}
    assert "data_fields" not in results[1]["made_by"]["settings"]


@pytest.mark.slow
def test_train_reads_named_fields_records_them_and_analysis_reads_them_back(tmp_path, capsys):
    root, out = tmp_path / "tasks", tmp_path / "run"
    for task in ("news", "gloss"):
        records = json.loads((checkpoints_dir() / "data" / task / "train.json").read_text())[:4]
        (root / task).mkdir(parents=True)
        for split in ("train", "test"):
            _frame(records, "text", "label").to_csv(root / task / f"{split}.csv", index=False)
    assert main(["train", "--tasks", str(root), "--out", str(out), "--prompt-field", "text", "--answer-field", "label",
                 "--epochs", "1", "--batch-size", "4", "--rank", "2", "--target-modules", "q_proj", "--eval-limit", "2"]) == 0
    named = {"prompt": "text", "answer": "label"}
    tasks = json.loads((out / "sequence.json").read_text())["tasks"]
    assert [(t["prompt_field"], t["answer_field"]) for t in tasks] == [("text", "label")] * 2
    settings = json.loads((out / "metrics.json").read_text())["made_by"]["settings"]
    assert settings["data_fields"] == settings["data_fields_used"] == {"gloss": named, "news": named}
    capsys.readouterr()
    assert main(["barrier", str(out / "news"), str(out / "gloss"), "--split", "test", "--points", "2", "--no-accuracy",
                 "--json", "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out)["made_by"]["settings"]["data_fields"] == {"news": named, "gloss": named}
