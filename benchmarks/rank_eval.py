"""How much does sharing each prompt between its choices save in rank classification? The rows path (each
(example, choice) a full row, ``path_nll`` on ``choice_rows``) against the shared-prompt path (``choices.choice_nll``:
each prompt once, its KV cache copied to its choices), on the same examples, in one process, single-threaded; and
training's whole evaluation of such a task (``evaluate_model``: loss, exact match, rank accuracy) from one pass over
the shared prompts (the gold choice's rows give the loss and the known answers, each prompt's cache decodes the rest),
against the evaluation as it was (a teacher-forced pass, the shared choices, ``generate`` for the unknown answers);
and the same along a path (``evaluate_path``: K points of the straight line from the shipped news adapter to the gloss
one, all points in each pass), one pass per point against the loss pass + every choice as a row + ``generate``.

The work: news eval examples (32 on the embedded base, 8 on SmolLM2, whose rows path takes about 2 s per example on
one thread) with the 5 news labels, each prompt lengthened with the next stories to about 150 tokens. The two methods alternate 3 times; each one's best CPU time of the process (which time taken by other
processes does not inflate) is reported, with rows/shared and the largest |Δ NLL| between them; the same for
``evaluate_model`` (forced/gold, and whether both gave the same numbers). The base model is scored as it is, so few
of its answers are known from the loss pass and most are decoded. Prints one JSON line.

    python benchmarks/rank_eval.py [--models tiny-llama smollm2-135m] [--examples N] [--prompt-tokens 150]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modeconn.evaluator.budget import auto_budget  # noqa: E402
from modeconn.evaluator.choices import choice_nll, choice_scores  # noqa: E402
from modeconn.evaluator.data import Example  # noqa: E402
import modeconn.evaluator.evaluate as evaluate  # noqa: E402
from modeconn.evaluator.evaluate import EvalConfig, evaluate_model, evaluate_path, path_nll  # noqa: E402
from modeconn.lora.adapters import load_adapter  # noqa: E402
from modeconn.lora.paths import linear_path  # noqa: E402
from modeconn.evaluator.layer import Unrouted  # noqa: E402
from modeconn.evaluator.models import load_base  # noqa: E402
from modeconn.evaluator.rank import choice_rows  # noqa: E402

HEADER, TAIL = "Which topic is this news story about?\n", "\nTopic:"
EXAMPLES = {"tiny-llama": 32, "smollm2-135m": 8}
ADAPTERS = {"tiny-llama": "checkpoints/seq", "smollm2-135m": "checkpoints/smollm2"}  # news and gloss minima
POINTS = {"tiny-llama": 11, "smollm2-135m": 5}


def examples(tokenizer, n: int, tokens: int) -> list[Example]:
    """n news eval examples, each story followed by the next ones until the prompt has about ``tokens`` tokens."""
    rows = json.loads((ROOT / "checkpoints/data/news/eval.json").read_text())
    stories = [r["prompt"][len(HEADER) : -len(TAIL)] for r in rows]
    labels = tuple(sorted({r["answer"] for r in rows}))
    out = []
    for i in range(n):
        text, j = stories[i], i
        while len(tokenizer(HEADER + text + TAIL, add_special_tokens=False)["input_ids"]) < tokens:
            j = (j + 1) % len(stories)
            text += " " + stories[j]
        ids = tokenizer(HEADER + text, add_special_tokens=False)["input_ids"][: tokens - 3]
        out.append(Example(tokenizer.decode(ids) + TAIL, rows[i]["answer"], labels))
    return out


def measure(name: str, n: int, tokens: int, repeats: int) -> dict:
    model, tokenizer = load_base(name)
    work = examples(tokenizer, n, tokens)
    rows = choice_rows(tokenizer, work, 1024)
    pad, budget = tokenizer.pad_token_id, auto_budget(model)
    as_rows = lambda part: path_nll(model, part, torch.ones(1, 1), Unrouted(), pad_id=pad, budget=budget)  # noqa: E731
    config = EvalConfig(max_batch_tokens=budget, progress=False)

    def forced():  # the evaluation as it was: the teacher-forced pass and generate() beside the shared choices
        undecoded = lambda *a, decode=None, **k: choice_scores(*a, **k)  # noqa: E731
        with mock.patch.object(evaluate, "gold_scores", lambda *a, **k: None), \
                mock.patch.object(evaluate, "choice_scores", undecoded):
            return evaluate_model(model, tokenizer, {"news": work}, config)["news"]

    line = linear_path(*(load_adapter(ROOT / ADAPTERS[name] / task) for task in ("news", "gloss")), "factor")
    ts = [i / (POINTS[name] - 1) for i in range(POINTS[name])]

    def path_before():  # every choice as a row, the loss pass and generate(), as evaluate_path scored them before
        with mock.patch.object(evaluate, "_one_pass", lambda *a, **k: (None, None, None)):
            return evaluate_path(model, tokenizer, line, ts, {"news": work}, config).tasks["news"]

    methods = {"rows": lambda: as_rows(rows),
               "shared": lambda: choice_nll(model, rows, work, pad, budget=budget, rows_nll=as_rows),
               "forced": forced, "gold": lambda: evaluate_model(model, tokenizer, {"news": work}, config)["news"],
               "path_before": path_before,
               "path_one_pass": lambda: evaluate_path(model, tokenizer, line, ts, {"news": work}, config).tasks["news"]}
    seconds = {m: float("inf") for m in methods}
    nll = {}
    with torch.no_grad():
        for _ in range(repeats):
            for method, run in methods.items():
                start = time.process_time()
                nll[method] = run()
                seconds[method] = min(seconds[method], time.process_time() - start)
    prompts = [len(tokenizer(e.prompt, add_special_tokens=False)["input_ids"]) for e in work]
    return {"model": name, "examples": n, "labels": len(work[0].choices), "rows": len(rows),
            "prompt_tokens_mean": round(sum(prompts) / n, 1), "rows_s": round(seconds["rows"], 3),
            "shared_s": round(seconds["shared"], 3), "rows_over_shared": round(seconds["rows"] / seconds["shared"], 2),
            "max_abs_nll_diff": float((nll["rows"] - nll["shared"]).abs().max()),
            "evaluate_forced_s": round(seconds["forced"], 3), "evaluate_gold_s": round(seconds["gold"], 3),
            "evaluate_forced_over_gold": round(seconds["forced"] / seconds["gold"], 2),
            "evaluate_loss_diff": abs(nll["forced"].loss[0] - nll["gold"].loss[0]),
            "evaluate_same_accuracy": nll["forced"].accuracy == nll["gold"].accuracy
                                      and nll["forced"].rank_accuracy == nll["gold"].rank_accuracy,
            "path_points": len(ts), "path_before_s": round(seconds["path_before"], 3),
            "path_one_pass_s": round(seconds["path_one_pass"], 3),
            "path_before_over_one_pass": round(seconds["path_before"] / seconds["path_one_pass"], 2),
            "path_max_loss_diff": max(abs(x - y) for x, y in zip(nll["path_before"].loss, nll["path_one_pass"].loss)),
            "path_same_accuracy": nll["path_before"].accuracy == nll["path_one_pass"].accuracy
                                  and nll["path_before"].rank_accuracy == nll["path_one_pass"].rank_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-llama", "smollm2-135m"])
    parser.add_argument("--examples", type=int, help="examples per model (default: EXAMPLES)")
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [measure(m, args.examples or EXAMPLES.get(m, 32), args.prompt_tokens, args.repeats) for m in args.models]
    print(json.dumps({"benchmark": "rank_eval", "timer": "process CPU time, best of alternating repeats",
                      "threads": 1, "torch": torch.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
