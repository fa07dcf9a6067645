"""The JSON form of a memory's state, shared by every buffer (reservoir, SuRe's surprise buffer, the GEM memory):
encoded examples as ``[ids, n_prompt]`` and a ``random.Random``'s state as lists, so a resumed run samples on exactly
where the stopped one would have (nothing pickled)."""
from __future__ import annotations

import random


def dump_example(example) -> list:
    return [list(example.ids), example.n_prompt]


def load_example(value: list):
    from ...evaluator.data import Encoded

    return Encoded(tuple(value[0]), value[1])


def dump_rng(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def load_rng(rng: random.Random, value: list) -> None:
    version, internal, gauss = value
    rng.setstate((version, tuple(internal), gauss))
