"""Per-task answer metrics against hand-worked cases."""
import pytest

from modeconn.errors import ConfigError
from modeconn.evaluator.scoring import choice, exact_match, get_scorer, numeric, rouge_l


def test_exact_match_strips_whitespace_only():
    assert exact_match(" sport\n", "sport") == 1.0
    assert exact_match("Sport", "sport") == 0.0


def test_choice_takes_the_first_option_letter():
    assert choice("B. because rates rose", "B") == 1.0
    assert choice("The answer is C", "C) dovish") == 1.0
    assert choice("A or B", "B") == 0.0
    assert choice("no letter", "A") == 0.0


def test_numeric_compares_the_first_number():
    assert numeric("about 1,250.0 units", "1250") == 1.0
    assert numeric("-3e2", "-300") == 1.0
    assert numeric("42", "43") == 0.0 and numeric("none", "1") == 0.0


def test_rouge_l_matches_the_lcs_definition():
    # LCS("the cat sat", "the cat sat down") = 3 tokens: P = 3/4, R = 3/3, F = 2PR/(P+R) = 6/7
    assert rouge_l("the cat sat down", "the cat sat") == pytest.approx(6 / 7)
    assert rouge_l("completely different", "the cat sat") == 0.0


def test_unknown_metric():
    with pytest.raises(ConfigError, match="unknown metric"):
        get_scorer("bleu")


def test_sari_matches_the_worked_example_of_hugging_faces_metric_card():
    """The `sari` card's example (Xu et al. 2016's metric as TRACE/LLMCL compute it): 26.953601953601954."""
    from modeconn.evaluator.scoring import sari_sentence

    source = "About 95 species are currently accepted."
    refs = ["About 95 species are currently known.", "About 95 species are now accepted.", "95 species are now accepted."]
    assert 100 * sari_sentence(source, "About 95 you now get in.", refs) == pytest.approx(26.953601953601954, abs=1e-9)


def test_sari_by_hand_on_one_reference():
    """Source "the cat is very", reference "the cat is": the prediction copies the source.

    Keep, per n-gram order: every n-gram is kept; the good ones are those in the reference.
      n=1: kept 4 (the, cat, is, very), good 3 → P 3/4, R 3/3 → F 6/7
      n=2: kept 3, good 2 (the cat, cat is) → P 2/3, R 1 → F 4/5
      n=3: kept 2, good 1 → P 1/2, R 1 → F 2/3
      n=4: kept 1, good 0 → F 0
    Delete: nothing deleted (0/0 := 1) at every order. Add: nothing added, nothing to add (0/0 := 1)."""
    from modeconn.evaluator.scoring import sari

    keep = (6 / 7 + 4 / 5 + 2 / 3 + 0.0) / 4
    assert sari("the cat is very", "the cat is", "the cat is very") == pytest.approx((keep + 1.0 + 1.0) / 3)
    assert sari("the cat is", "the cat is", "the cat is very") == pytest.approx(1.0)  # the reference itself


def test_llmcl_post_processing_of_choices_and_numbers():
    from modeconn.evaluator.scoring import trace_choice, trace_number, trace_scienceqa

    assert trace_choice("B. rates rose", "B") == 1.0 and trace_choice("xBy", "B") == 1.0  # any A–D, no word boundary
    assert trace_choice("Answer: B", "B") == 0.0  # LLMCL's regex takes the "A" of "Answer": kept, as its tables did
    assert trace_choice("", "A") == 0.0 and trace_choice("no letters", "none") == 0.0  # empty never matches
    assert trace_number("it is 12.50 apples", "12.50") == 1.0
    assert trace_number("12.5", "12.50") == 0.0  # compared as strings, as LLMCL does
    assert trace_scienceqa("B\nBecause the sun is hot.", "B\nBecause…") == 1.0
    assert trace_scienceqa("The answer is B", "B\nBecause…") == 0.0  # only the first character counts


def test_sources_reach_the_metrics_that_read_them():
    score = get_scorer("sari")
    assert score("the cat is", "the cat is", source="the cat is very") == pytest.approx(1.0)
    assert get_scorer("exact_match")("a", "a", "ignored source") == 1.0
