"""Build the embedded task sequence (TRACE / LLMCL format) from offline labelled corpora, deterministically.

    python scripts/build_tasks.py checkpoints/data --seed 0
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import sources

SIZES = {"train": 400, "eval": 100, "test": 100}
MAX_WORDS = 40

PROMPTS = {
    "news": "Which topic is this news story about?\n{text}\nTopic:",
    "gloss": "Which kind of thing does this dictionary entry describe?\n{text}\nKind:",
    "fortune": "Which fortune file is this saying from?\n{text}\nFile:",
    "stdlib": "Which Python standard library package has this docstring?\n{text}\nPackage:",
}


def labelled_items() -> dict[str, list[tuple[str, str]]]:
    """task -> [(text, label)], in a fixed order."""
    news = [(sources.words(" ".join(text.split("\n", 1)), MAX_WORDS), label) for text, label in sources.bbc_news()]
    gloss = [
        (sources.words(f"{lemma}: {gloss.split(';')[0]}", MAX_WORDS), sources.WORDNET_LEXFILES[lex])
        for lemma, gloss, lex in sources.wordnet_nouns()
        if lex in sources.WORDNET_LEXFILES
    ]
    fortune = [(sources.words(t, MAX_WORDS), label) for t, label in sources.fortunes(["computers", "food", "law", "startrek"])]
    stdlib = [
        (sources.words(f"{name}: {doc}", MAX_WORDS), pkg)
        for name, doc, pkg in sources.stdlib_docstrings(["asyncio", "email", "logging", "tkinter"])
    ]
    return {"news": news, "gloss": gloss, "fortune": fortune, "stdlib": stdlib}


def balanced_splits(items: list[tuple[str, str]], rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """Equal examples per label in each split, no text in two splits."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in items:
        if len(text.split()) >= 3 and text not in by_label[label]:
            by_label[label].append(text)
    labels = sorted(by_label)
    splits: dict[str, list[tuple[str, str]]] = {s: [] for s in SIZES}
    for label in labels:
        texts = by_label[label]
        rng.shuffle(texts)
        start = 0
        for split, size in SIZES.items():
            n = size // len(labels)
            splits[split] += [(t, label) for t in texts[start : start + n]]
            start += n
    for split in splits:
        rng.shuffle(splits[split])
    return splits


def build(out: Path, seed: int) -> dict[str, set[str]]:
    """Write every task folder; return the texts held out (eval/test) so pretraining can avoid them."""
    rng = random.Random(seed)
    held_out: dict[str, set[str]] = {}
    for task, items in labelled_items().items():
        splits = balanced_splits(items, rng)
        (out / task).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            records = [{"prompt": PROMPTS[task].format(text=t), "answer": label} for t, label in rows]
            (out / task / f"{split}.json").write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
        held_out[task] = {t for split in ("eval", "test") for t, _ in splits[split]}
    return held_out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.seed)
