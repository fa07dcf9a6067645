"""O-LoRA's CL_Benchmark read as it is, on a miniature tree the test writes in its layout: prompts against strings
written by hand from O-LoRA's src/uie_dataset_lora.py and src/uie_collator.py, the eval carve, O-LoRA's exact match,
named orders with missing tasks, and `modeconn train --protocol standard-cl` end to end on the tiny base."""
import json
import shutil

import numpy as np
import pytest
import torch

from modeconn.cli import main
from modeconn.continual.options import resolve
from modeconn.errors import ConfigError, DataError
from modeconn.evaluator.data import Fields, read_data, read_split
from modeconn.evaluator.scoring import get_scorer, olora_exact_match
from modeconn.evaluator.standard_cl import carve_record, eval_indices

SC = "What is the sentiment of the following paragraph? Choose one from the option.\n"
TC = "What is the topic of the following paragraph? Choose one from the option.\n"
INSTRUCTIONS = {  # a few-shot and a second zero-shot instruction that O-LoRA's "single" strategy does not use
    "SC": [{"instruction_type": "zero-shot", "instruction": SC},
           {"instruction_type": "zero-shot", "instruction": "A second instruction.\n"}],
    "TC": [{"instruction_type": "few-shot", "instruction": "A few-shot instruction.\n"},
           {"instruction_type": "zero-shot", "instruction": TC}],
}
SENTIMENT = ["very negative", "negative", "neutral", "positive", "very positive"]
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]
LONG = " ".join(f"word{i}" for i in range(200))  # hundreds of tokens for the tiny base's tokenizer
N_TRAIN = 20
LONG_ROW = next(i for i in range(N_TRAIN) if i not in eval_indices(N_TRAIN))  # a training row, not carved out


def _write(folder, labels, train, test, dev=None):
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(labels))
    if train is not None:
        (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    (folder / "dev.json").write_text(dev if dev is not None else json.dumps(test))  # upstream: the same bytes


def _tree(root):
    amazon_train = [{"sentence": f"Title: item {i}\nText: {LONG if i == LONG_ROW else 'fine'}.\n",
                     "label": SENTIMENT[i % 5]} for i in range(N_TRAIN)]
    amazon_test = [{"sentence": "Title: great\nText: I loved it.\n", "label": "very positive"},
                   {"sentence": f"Title: long\nText: {LONG}.\n", "label": "negative"},
                   {"sentence": "Title: meh\nText: It is fine.\n", "label": "neutral"}]
    bench = root / "CL_Benchmark"
    _write(bench / "SC" / "amazon", SENTIMENT, amazon_train, amazon_test)
    _write(bench / "TC" / "agnews", TOPICS, [{"sentence": f"Match {i} ended 2-{i}.", "label": TOPICS[i % 4]}
                                             for i in range(N_TRAIN)],
           [{"sentence": "Stocks rose.", "label": "Business"}, {"sentence": "A new chip.", "label": "Sci/Tech"}],
           dev=json.dumps([{"sentence": "other", "label": "World"}]))  # a dev that differs: never read
    _write(bench / "TC" / "dbpedia", ["Company", "Artist"], None, [{"sentence": "Acme Inc.", "label": "Company"}])
    _write(bench / "COPA" / "COPA", ["1", "2"], [{"sentence": f"premise {i}", "label": "12"[i % 2]} for i in range(4)],
           [{"sentence": "The man fell. What was the cause?\nOption1: he slipped\nOption2: he sang", "label": "1"}])
    (root / "configs").mkdir()
    (root / "configs" / "instruction_config.json").write_text(json.dumps(INSTRUCTIONS))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _tree(tmp_path_factory.mktemp("olora"))


def test_prompts_are_olora_s_decoder_prompts(tree):
    amazon, agnews, copa = (tree / "CL_Benchmark" / f for f in ("SC/amazon", "TC/agnews", "COPA/COPA"))
    first = read_split(amazon, "test")[0][0]
    assert first.prompt == ("Task:SC\nDataset:amazon\nWhat is the sentiment of the following paragraph? Choose one "
                            "from the option.\nOption: very negative, negative, neutral, positive, very positive \n"
                            "Title: great\nText: I loved it.\n\nAnswer:")
    assert first.answer == "very positive" and first.choices == tuple(SENTIMENT)  # a label with a space
    news = read_split(agnews, "test")[0][0]
    assert news.prompt == ("Task:TC\nDataset:agnews\nWhat is the topic of the following paragraph? Choose one from "
                           "the option.\nOption: World, Sports, Business, Sci/Tech \nStocks rose.\nAnswer:")
    assert news.answer == "Business"
    cause = read_data(copa, "test")[0][0]  # COPA: no instruction, no options (uie_dataset_lora.py:413)
    assert cause.prompt == ("Task:COPA\nDataset:COPA\nThe man fell. What was the cause?\nOption1: he slipped\n"
                            "Option2: he sang\nAnswer:")
    assert cause.choices == ("1", "2")


def test_eval_is_carved_from_train_disjoint_fixed_and_covering(tree):
    agnews = tree / "CL_Benchmark" / "TC" / "agnews"
    rows = json.loads((agnews / "train.json").read_text())
    torch.manual_seed(123), np.random.seed(7)  # a run's seed does not move the carve
    train, evaluation = read_split(agnews, "train")[0], read_split(agnews, "eval")[0]
    torch.manual_seed(5), np.random.seed(99)
    assert [e.prompt for e in read_split(agnews, "eval")[0]] == [e.prompt for e in evaluation]
    chosen = sorted(int(i) for i in np.random.default_rng(0).permutation(N_TRAIN)[:2])  # 10% of 20 rows, seed 0
    assert [e.prompt.rsplit("\n", 2)[-2] for e in evaluation] == [rows[i]["sentence"] for i in chosen]
    assert [e.prompt.rsplit("\n", 2)[-2] for e in train] == [r["sentence"] for i, r in enumerate(rows) if i not in chosen]
    assert len(eval_indices(10_000)) == 500 and len(eval_indices(2)) == 1 and len(eval_indices(15)) == 1
    with pytest.raises(DataError, match="at least 2"):
        eval_indices(1)
    record = carve_record(agnews)
    assert (record["seed"], record["train_rows"], record["eval_rows"], record["dev_same_as_test"]) == (0, 18, 2, False)
    assert carve_record(tree / "CL_Benchmark" / "SC" / "amazon")["dev_same_as_test"] is True
    assert len(read_split(agnews, "test", 1, "last")[0]) == 1


def test_olora_exact_match_by_hand():
    cases = [("Positive.", "positive", 1), ("  very   negative ", "very negative", 1), ("SciTech", "Sci/Tech", 1),
             ("the positive", "positive", 0), ("negative\nAnswer: positive", "positive", 1), ("", "positive", 0),
             ("Entailment", "entailment", 1), ("neutral", "positive", 0), ("very-negative", "verynegative", 1)]
    for prediction, reference, expected in cases:
        assert olora_exact_match(prediction, reference) == expected, (prediction, reference)
        assert get_scorer("olora_exact_match")(prediction, reference) == expected


def test_bad_labels_instructions_and_fields(tmp_path, tree):
    shutil.copytree(tree, tmp_path / "t")
    amazon = tmp_path / "t" / "CL_Benchmark" / "SC" / "amazon"
    rows = json.loads((amazon / "test.json").read_text())
    rows[2]["label"] = "postive"
    (amazon / "test.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"amazon: row 2 of test.json has label 'postive'"):
        read_split(amazon, "test")
    with pytest.raises(ConfigError, match="drop --prompt-field"):
        read_split(amazon, "train", fields=Fields("sentence", "label"))
    (tmp_path / "t" / "configs" / "instruction_config.json").unlink()
    with pytest.raises(DataError, match=r"no configs/instruction_config.json found in .*SC"):
        read_split(amazon, "train")


def test_named_order_with_missing_tasks_is_one_line_with_a_copyable_order(tree, tmp_path, capsys):
    code = main(["train", "--protocol", "standard-cl", "--tasks", str(tree), "--order", "order1",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "2 task(s) of order1 missing or incomplete" in err[0]
    assert "dbpedia (no train.json)" in err[0] and "yahoo (no folder)" in err[0]
    assert err[0].endswith("--order amazon,agnews") and not (tmp_path / "run").exists()
    request = resolve({"protocol": "standard-cl", "tasks": str(tree / "CL_Benchmark"), "order": "amazon,agnews"})
    assert [t for t, _ in request.tasks] == ["amazon", "agnews"]
    assert request.metrics == {"amazon": "olora_exact_match", "agnews": "olora_exact_match"}
    assert (request.config.lr, request.config.epochs, request.config.batch_size, request.config.grad_accum,
            request.config.max_length, request.config.rank, request.config.alpha) == (1e-3, 1, 8, 8, 562, 8, 32)


def test_named_order_outside_standard_cl_is_refused(tree, tmp_path, capsys):
    code = main(["train", "--tasks", str(tree / "CL_Benchmark" / "SC"), "--order", "order2",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "only --protocol standard-cl" in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_label_outside_labels_json_is_one_line(tree, tmp_path, capsys):
    shutil.copytree(tree, tmp_path / "t")
    agnews = tmp_path / "t" / "CL_Benchmark" / "TC" / "agnews"
    rows = json.loads((agnews / "train.json").read_text())
    rows[5]["label"] = "Science and Technology"
    (agnews / "train.json").write_text(json.dumps(rows))
    code = main(["train", "--protocol", "standard-cl", "--tasks", str(tmp_path / "t"), "--order", "agnews",
                 "--base", "tiny-llama", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "row 5 of train.json has label 'Science and Technology'" in err[0], err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_standard_cl_run_records_order_carve_metric_and_cut_prompts(tree, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--protocol", "standard-cl", "--tasks", str(tree), "--order", "amazon,agnews",
                 "--base", "tiny-llama", "--max-train", "4", "--batch-size", "2", "--grad-accum", "1", "--rank", "4",
                 "--target-modules", "q_proj,v_proj", "--eval-limit", "2", "--max-length", "200", "--out", str(out)])
    assert code == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("modeconn")]
    assert err == ["modeconn: prompts cut from the left to fit max_length: amazon 1 train, 1 test"], err
    settings = json.loads((out / "metrics.json").read_text())["made_by"]["settings"]
    protocol = settings["protocol"]
    assert protocol["name"] == "standard-cl" and protocol["order"] == ["amazon", "agnews"]
    assert protocol["order_name"] is None and protocol["metrics"] == {"amazon": "olora_exact_match",
                                                                     "agnews": "olora_exact_match"}
    assert settings["eval_carve"]["amazon"] == carve_record(tree / "CL_Benchmark" / "SC" / "amazon")
    assert settings["eval_carve"]["agnews"]["eval_rows"] == 2
    assert settings["prompts_cut"] == {"amazon": {"train": 1, "test": 1}} and settings["max_length_used"] == 200
    manifest = json.loads((out / "sequence.json").read_text())
    assert [t["metric"] for t in manifest["tasks"]] == ["olora_exact_match"] * 2


def test_test_rows_without_a_gold_label_are_left_out_and_counted(tree, tmp_path):
    """MNLI's test.json labels 131 rows "-" (GLUE's no-gold-label rows): left out of the test split, counted."""
    from modeconn.evaluator.data import read_split as read
    from modeconn.evaluator.standard_cl import carve_record

    shutil.copytree(tree, tmp_path / "t")
    agnews = tmp_path / "t" / "CL_Benchmark" / "TC" / "agnews"
    rows = json.loads((agnews / "test.json").read_text())
    before = len(read(agnews, "test")[0])
    rows[1]["label"] = "-"
    (agnews / "test.json").write_text(json.dumps(rows))
    examples = read(agnews, "test")[0]
    assert len(examples) == before - 1 and all(e.answer != "-" for e in examples)
    assert rows[1]["sentence"] not in [e.prompt.rsplit("\n", 2)[-2] for e in examples]
    assert carve_record(agnews)["test_rows_left_out"] == 1


@pytest.mark.slow
def test_every_method_trains_on_a_standard_cl_stream_and_records_both_accuracies(tree, tmp_path):
    """Every continual method on two miniature O-LoRA tasks (labels with spaces, a prompt cut at max_length): a
    complete run with exact-match and rank-classification matrices (the memory and merge methods keep and score
    examples with their label sets)."""
    from modeconn.continual import METHODS, TrainConfig, TrainRequest, get_method, train_sequence

    bench = tree / "CL_Benchmark"
    tasks = [("amazon", bench / "SC" / "amazon"), ("agnews", bench / "TC" / "agnews")]
    config = TrainConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), epochs=1, batch_size=4, max_train=8,
                         seed=3, lr=3e-3, max_length=200)
    options = {"ewc": {"fisher_samples": 4}, "pp": {"pp_length": 3}, "l2p": {"l2p_pool": 4, "l2p_length": 2, "l2p_top_k": 2},
               **dict.fromkeys(("merge", "ties", "magmax"), {"buffer_size": 4, "merge_scales": "0.5,1"}),
               **dict.fromkeys(("er", "ilora", "sure", "agem", "gem", "seq-path", "mc-sgd"), {"buffer_size": 4})}
    metric = dict.fromkeys(("amazon", "agnews"), "olora_exact_match")
    for name in METHODS:
        method = get_method(name, seed=3, **options.get(name, {}))
        train_sequence(TrainRequest("tiny-llama", tasks, method, config, eval_limit=2, metrics=metric),
                       tmp_path / name, name=f"{name}-seed3", progress=False)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert len(metrics["accuracy"]) == 2 and len(metrics["rank_accuracy"]) == 2, name
        assert all(0 <= a <= 1 for row in metrics["rank_accuracy"] for a in row), name
        assert metrics["rank_AP"] is not None, name
        assert metrics["learned_by"] == "rank" and len(metrics["learned"]) == 2, name  # the verdict reads rank
        other = metrics.get("method_record", {}).get("other_learner")
        if name in ("ilora", "sure"):  # the learner not evaluated keeps its rank rows too
            assert len(other["rank_accuracy"]) == 2 and all(0 <= a <= 1 for row in other["rank_accuracy"] for a in row)
