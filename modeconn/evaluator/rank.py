"""Rank-classification accuracy: an example's prediction is the choice with the lowest answer NLL, found without decoding.

Each choice of an example becomes its own row, the prompt with that choice as the answer, encoded exactly as
``encode_counted`` encodes such an example (``bos + prompt + choice + eos``, the prompt cut from the left to the same
``max_length``). The rows of many examples go through the loss pass together, the K path points laid out point-major
as for the loss (``evaluate.path_nll``: same token budget, same out-of-memory split, same shared prefix); this module
turns those ``[K, rows]`` NLLs into predictions and accuracy. A choice's score is its summed NLL over the answer tokens
including eos, i.e. its summed log-likelihood, as lm-evaluation-harness's ``acc`` ranks choices (not length-normalised
like its ``acc_norm``); a tie goes to the choice listed first (labels.json's order).

``choices.py`` runs each prompt once, at every path point of the batch (``evaluate_points``) or for one model as it
stands (``evaluate_model``, what training evaluates), and its KV cache feeds all its choices, giving the same NLLs as
a row per choice (within float rounding); the same pass gives the task's loss (the gold choice's rows) and its greedy
answers (the cache continued). The rows run instead: for an example whose choices cut its prompt differently (a
prompt longer than max_length allows), for a batch longer than a sliding-window layer's window, under a ``transform``
(prompt methods rewrite the rows), and for every example of a model that is not a plain causal LM (a prompt-learning
PeftModel, an encoder-decoder), whose cache is not a ``DynamicCache`` of full or sliding layers (recurrent or
linear-attention caches), or whose first shared batch raised an error (detected once per model).
"""
from __future__ import annotations

import torch

from ..errors import DataError
from .data import Encoded, Example, answer_tokens, fit_row


def rankable(examples: list[Example]) -> bool:
    """Whether a task can be rank-classified: every example has choices and its answer is one of them."""
    return bool(examples) and all(e.choices and e.answer in e.choices for e in examples)


def choice_rows(tokenizer, examples: list[Example], max_length: int) -> list[Encoded]:
    """Every (example, choice) as an Encoded, example-major in choice order, as ``encode_counted`` encodes
    ``Example(prompt, choice)``; each prompt and each distinct choice is tokenised once (``encode_counted`` would
    tokenise a prompt once per choice)."""
    bos, eos = answer_tokens(tokenizer)
    answers: dict[str, list[int]] = {}
    rows, too_long = [], []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        for choice in ex.choices:
            if choice not in answers:
                answers[choice] = tokenizer(choice, add_special_tokens=False)["input_ids"] + [eos]
            row = fit_row(bos, prompt, answers[choice], max_length)
            if row is None:
                too_long.append(choice)
                continue
            rows.append(row)
    if too_long:
        raise DataError(f"the choice {too_long[0]!r} does not fit max_length={max_length} with eos and a prompt token; "
                        f"raise the max_length={max_length}")
    return rows


def predicted(nll: torch.Tensor, examples: list[Example]) -> torch.Tensor:
    """``[K, N]`` index of each example's lowest-NLL choice at each point, from ``nll [K, rows]`` in ``choice_rows``
    order; ``argmin`` takes the first of equal minima, so a tie goes to the choice listed first."""
    sizes = [len(e.choices) for e in examples]
    padded = torch.full((nll.shape[0], len(examples), max(sizes)), float("inf"), dtype=nll.dtype)
    example = torch.repeat_interleave(torch.arange(len(examples)), torch.tensor(sizes))
    slot = torch.cat([torch.arange(n) for n in sizes])
    padded[:, example, slot] = nll.cpu()
    return padded.argmin(2)


def ranked_accuracy(nll: torch.Tensor, examples: list[Example]) -> torch.Tensor:
    """``[K]`` share of examples whose lowest-NLL choice (``predicted``) is their answer."""
    gold = torch.tensor([e.choices.index(e.answer) for e in examples])
    return (predicted(nll, examples) == gold).double().mean(1)

