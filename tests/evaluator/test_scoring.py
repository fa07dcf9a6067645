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
