"""Per-task answer metrics as TRACE uses them, each mapping (prediction, reference) to a score in [0, 1].

  exact_match  stripped strings equal (the default)
  choice       the first option letter A–D in each agree (FOMC, C-STANCE, ScienceQA)
  numeric      the first number in each agree (to 1e-6 relative)
  rouge_l      ROUGE-L F-measure (MeetingBank), through Google's `rouge-score` package
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

from ..errors import ConfigError

_CHOICE = re.compile(r"\b([A-D])\b")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def choice(prediction: str, reference: str) -> float:
    p, r = _CHOICE.search(prediction), _CHOICE.search(reference)
    return float(p is not None and r is not None and p.group(1) == r.group(1))


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group(0).replace(",", "")) if match else None


def numeric(prediction: str, reference: str) -> float:
    p, r = _first_number(prediction), _first_number(reference)
    return float(p is not None and r is not None and math.isclose(p, r, rel_tol=1e-6, abs_tol=1e-9))


@lru_cache(maxsize=1)
def _rouge():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ConfigError("the rouge_l metric needs the rouge-score package: pip install rouge-score") from None
    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(prediction: str, reference: str) -> float:
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


SCORERS = {"exact_match": exact_match, "choice": choice, "numeric": numeric, "rouge_l": rouge_l}


def get_scorer(name: str):
    if name not in SCORERS:
        raise ConfigError(f"unknown metric '{name}'; choose one of {sorted(SCORERS)}")
    return SCORERS[name]
