"""Greedy answers read from the teacher-forced pass equal greedy decoding's, on the embedded tasks and adapters."""
from __future__ import annotations

import pytest
import torch

from modeconn.evaluator.data import encode, load_split
from modeconn.evaluator.evaluate import EvalConfig, evaluate_model, path_losses
from modeconn.evaluator.forced import forced_pass
from modeconn.evaluator.greedy import greedy_scores
from modeconn.evaluator.layer import Unrouted
from modeconn.evaluator.models import checkpoints_dir, load_base

TASKS = ("news", "gloss", "fortune", "stdlib")


@pytest.fixture(scope="module")
def trained():
    """The embedded base with the seq run's adapter after task 1 (news right, the others mostly wrong)."""
    from peft import PeftModel

    torch.set_num_threads(1)
    model, tokenizer = load_base("tiny-llama")
    model = PeftModel.from_pretrained(model, checkpoints_dir() / "seq" / "news")
    data = {t: load_split(checkpoints_dir() / "data" / t, "test", 12) for t in TASKS}
    return model.eval(), tokenizer, data


def decoded_one_by_one(model, tokenizer, examples, encoded) -> list[str]:
    """Each example decoded greedily on its own, with the task's longest answer as the limit."""
    from transformers import GenerationConfig

    gen = GenerationConfig(do_sample=False, max_new_tokens=max(len(e.ids) - e.n_prompt for e in encoded),
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = []
    with torch.no_grad():
        for e in encoded:
            out = model.generate(input_ids=torch.tensor([e.prompt_ids]), generation_config=gen)
            texts.append(tokenizer.decode(out[0, e.n_prompt :], skip_special_tokens=True))
    return texts


def test_known_answers_are_what_greedy_decoding_emits(trained):
    model, tokenizer, data = trained
    hits = 0
    for task, examples in data.items():
        encoded = encode(tokenizer, examples)
        with torch.no_grad():
            _, known = forced_pass(model, encoded, tokenizer.pad_token_id, 4096)
        texts = decoded_one_by_one(model, tokenizer, examples, encoded)
        for e, text, k in zip(encoded, texts, known):
            reference = tokenizer.decode(list(e.ids[e.n_prompt :]), skip_special_tokens=True)
            if k:  # the others are decoded by the evaluator, whatever they give
                assert text == reference, task
            hits += k
    assert 0 < hits < sum(len(v) for v in data.values())  # both kinds of example were checked


def test_model_scores_equal_decoding_everything(trained):
    model, tokenizer, data = trained
    fast = evaluate_model(model, tokenizer, data, EvalConfig(max_batch_tokens=4096, progress=False))
    for task, examples in data.items():
        encoded = encode(tokenizer, examples)
        with torch.no_grad():
            loss = path_losses(model, encoded, torch.ones(1, 1), Unrouted(), tokenizer.pad_token_id, 4096)
            correct = greedy_scores(model, tokenizer, list(zip(examples, encoded)), (torch.ones(1, 1), Unrouted()),
                                    budget=4096)
        assert fast[task].loss == loss.tolist()
        assert fast[task].accuracy == (correct / len(examples)).tolist()


def test_a_model_whose_decoding_is_not_plain_greedy_decodes_everything(trained):
    model, tokenizer, data = trained
    config = model.get_base_model().generation_config
    encoded = encode(tokenizer, data["news"])
    with torch.no_grad():
        assert any(forced_pass(model, encoded, tokenizer.pad_token_id, 4096)[1])
        before, config.repetition_penalty = config.repetition_penalty, 1.3
        try:
            assert not any(forced_pass(model, encoded, tokenizer.pad_token_id, 4096)[1])
        finally:
            config.repetition_penalty = before
