"""Per-task answer metrics, each mapping (prediction, reference[, source]) to a score in [0, 1].

  exact_match      stripped strings equal (the default)
  choice           the first option letter A–D (a word of its own) in each agree
  numeric          the first number in each agree (to 1e-6 relative)
  rouge_l          ROUGE-L F-measure, through Google's `rouge-score` package
  sari             SARI (Xu et al., 2016) of the prediction against the reference, given the source (the prompt)
  trace_choice     LLMCL's utils/metrics.py post-processing: the first character A–D anywhere in each, equal and
                   non-empty (C-STANCE, FOMC, MedMCQA, JEC-QA)
  trace_number     LLMCL's: the first match of \d+\.?\d* in each, equal as strings and non-empty (NumGLUE-cm)
  trace_scienceqa  LLMCL's: the first character of each, then ``trace_choice`` (ScienceQA answers "A\nBecause …")
  olora_exact_match  O-LoRA's (src/compute_metrics.py:32-49, src/uie_trainer_lora.py:22-24): the prediction after its
                   last "Answer:" (if any), stripped; then both lower-cased, ASCII punctuation removed, whitespace runs
                   made one space (articles kept), and equal (its CL_Benchmark tasks under --protocol standard-cl)
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
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


def _llmcl_first(pattern: str, text: str) -> str:
    match = re.search(pattern, text) if text else None
    return match.group(0) if match else ""


def trace_choice(prediction: str, reference: str) -> float:
    p, r = _llmcl_first(r"[A-D]", prediction), _llmcl_first(r"[A-D]", reference)
    return float(p != "" and p == r)


def trace_number(prediction: str, reference: str) -> float:
    p, r = _llmcl_first(r"\d+\.?\d*", prediction), _llmcl_first(r"\d+\.?\d*", reference)
    return float(p != "" and p == r)


def trace_scienceqa(prediction: str, reference: str) -> float:
    return trace_choice(prediction[:1], reference[:1])


_PUNCTUATION = set(string.punctuation)
OLORA_ANSWER_PREFIX = "Answer:"  # O-LoRA src/uie_dataset_lora.py:28


def _olora_normalize(text: str) -> str:
    """O-LoRA's normalize_answer (src/compute_metrics.py:32-45): lower, drop string.punctuation, one space per run."""
    return " ".join("".join(ch for ch in text.lower() if ch not in _PUNCTUATION).split())


def olora_exact_match(prediction: str, reference: str) -> float:
    # O-LoRA decodes prompt + generation and keeps what follows the last "Answer:" (uie_trainer_lora.py:22-24); the
    # prediction here is the generation alone, so the same rule keeps it whole unless it says "Answer:" itself
    prediction = prediction.split(OLORA_ANSWER_PREFIX)[-1].strip()
    return float(_olora_normalize(prediction) == _olora_normalize(reference))


@lru_cache(maxsize=1)
def _tokenizer_13a():
    try:
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    except ImportError:
        raise ConfigError("the sari metric needs the sacrebleu package (its 13a tokenizer): pip install sacrebleu") from None
    return Tokenizer13a()


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _sari_order(source: Counter, output: Counter, refs: Counter, n_refs: int) -> tuple[float, float, float]:
    """Keep F1, deletion precision and addition F1 for one n-gram order (Xu et al., 2016, §4.1).

    Source and output counts are weighted by the number of references, as in the authors' code; an empty operation
    scores 1 (0/0 := 1), so an output equal to a reference is not penalised; keep recall is count-weighted and deletion
    uses precision only, as in tensor2tensor's and Hugging Face's ``sari`` (the version TRACE/LLMCL scores with)."""
    source = Counter({g: c * n_refs for g, c in source.items()})
    output = Counter({g: c * n_refs for g, c in output.items()})
    kept, kept_in_refs = source & output, source & refs
    good_kept = kept & refs
    keep_p = sum(good_kept[g] / kept[g] for g in kept) / len(kept) if kept else 1.0
    keep_r = sum(good_kept.values()) / sum(kept_in_refs.values()) if kept_in_refs else 1.0
    deleted = source - output
    good_deleted = deleted - refs
    del_p = sum(good_deleted[g] / deleted[g] for g in deleted) / len(deleted) if deleted else 1.0
    added = set(output) - set(source)
    wanted = set(refs) - set(source)
    good_added = len(added & set(refs))
    add_p = good_added / len(added) if added else 1.0
    add_r = good_added / len(wanted) if wanted else 1.0
    return _f1(keep_p, keep_r), del_p, _f1(add_p, add_r)


def sari_sentence(source: str, prediction: str, references: list[str]) -> float:
    """SARI in [0, 1] of one prediction: the mean over n = 1…4 of keep, delete and add scores, averaged. Texts are
    lower-cased and tokenised with sacrebleu's 13a tokenizer first, as Hugging Face's ``sari`` does."""
    tokenize = _tokenizer_13a()
    src, out = tokenize(source.lower()).split(), tokenize(prediction.lower()).split()
    refs = [tokenize(r.lower()).split() for r in references]
    parts = []
    for n in range(1, 5):
        ref_counts = sum((_ngrams(r, n) for r in refs), Counter())
        parts.append(_sari_order(_ngrams(src, n), _ngrams(out, n), ref_counts, len(refs)))
    keep, delete, add = (sum(p[i] for p in parts) / 4 for i in range(3))
    return (keep + delete + add) / 3


def sari(prediction: str, reference: str, source: str = "") -> float:
    return sari_sentence(source, prediction, [reference])


SCORERS = {"exact_match": exact_match, "choice": choice, "numeric": numeric, "rouge_l": rouge_l, "sari": sari,
           "trace_choice": trace_choice, "trace_number": trace_number, "trace_scienceqa": trace_scienceqa,
           "olora_exact_match": olora_exact_match}
NEEDS_SOURCE = {"sari"}  # metrics that also read the prompt


def get_scorer(name: str):
    """The metric ``name`` as ``score(prediction, reference, source="")``."""
    if name not in SCORERS:
        raise ConfigError(f"unknown metric '{name}'; choose one of {sorted(SCORERS)}")
    if name in NEEDS_SOURCE:
        _tokenizer_13a()  # a missing package is reported before any work
        return SCORERS[name]
    fn = SCORERS[name]
    return lambda prediction, reference, source="": fn(prediction, reference)
