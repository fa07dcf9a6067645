"""A sweep stopped between pairs resumes: the pairs it kept are read back, not measured again, and the result equals
an uninterrupted sweep's; a kept pair made with other settings, or whose curve is gone, is measured again."""
import json
from dataclasses import replace

import pytest

from modeconn.analysis.bezier import CurveConfig
from modeconn.analysis.measure import sweep_sequence
from modeconn.analysis.settings import StudySettings
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora import paths

SEQ = str(checkpoints_dir() / "seq")
QUIET = StudySettings(limit=4, accuracy=False, progress=False)
CURVE = CurveConfig(steps=2, seed=0)


class Stop(Exception):
    pass


def _counting(monkeypatch, stop_at=None):
    """Count the pairs measured (their straight lines); raise Stop when the ``stop_at``-th one starts."""
    seen = []
    original = paths.linear_path

    def counted(*args, **kwargs):
        seen.append(1)
        if stop_at is not None and len(seen) == stop_at:
            raise Stop
        return original(*args, **kwargs)

    monkeypatch.setattr(paths, "linear_path", counted)  # sweep_sequence imports it at call time: the patch reaches it
    return seen


def _numbers(result) -> list:
    return [(p.a, p.b, {k: r.to_json()["tasks"] for k, r in p.paths.items()}) for p in result.pairs]


@pytest.mark.slow
def test_a_stopped_sweep_resumes_from_its_kept_pairs_with_the_same_numbers(tmp_path, monkeypatch):
    whole = sweep_sequence(SEQ, QUIET, points=3, pairs="consecutive", curve=CURVE,
                           curves_out=str(tmp_path / "whole-curves"))
    keep, curves = tmp_path / "pairs", tmp_path / "curves"
    options = dict(points=3, pairs="consecutive", curve=CURVE, curves_out=str(curves),
                   keep=str(keep))
    with monkeypatch.context() as patch:
        _counting(patch, stop_at=2)
        with pytest.raises(Stop):  # killed while measuring the second pair
            sweep_sequence(SEQ, QUIET, **options)
    assert sorted(p.name for p in keep.iterdir()) == ["news-gloss.json"]
    with monkeypatch.context() as patch:
        seen = _counting(patch)
        resumed = sweep_sequence(SEQ, QUIET, **options)
    assert len(seen) == 2  # only the two pairs left were measured
    assert _numbers(resumed) == _numbers(whole)
    assert sorted(p.name for p in keep.iterdir()) == ["fortune-stdlib.json", "gloss-fortune.json", "news-gloss.json"]


@pytest.mark.slow
def test_kept_pairs_of_other_settings_or_without_their_curve_are_measured_again(tmp_path, monkeypatch):
    keep, curves = tmp_path / "pairs", tmp_path / "curves"
    options = dict(points=3, pairs="consecutive", curve=CURVE, keep=str(keep))
    sweep_sequence(SEQ, QUIET, curves_out=str(curves), **options)
    with monkeypatch.context() as patch:
        seen = _counting(patch)
        sweep_sequence(SEQ, replace(QUIET, limit=3), curves_out=str(curves), **options)
    assert len(seen) == 3  # another limit: every pair again
    with monkeypatch.context() as patch:
        seen = _counting(patch)
        sweep_sequence(SEQ, replace(QUIET, limit=3), curves_out=str(curves), **options)
    assert len(seen) == 0  # the same settings again: every pair read back
    (curves / "news-gloss" / "curve.json").unlink()
    record = keep / "gloss-fortune.json"
    record.write_text(record.read_text()[:-20])  # cut short, as by a full disk
    with monkeypatch.context() as patch:
        seen = _counting(patch)
        sweep_sequence(SEQ, replace(QUIET, limit=3), curves_out=str(curves), **options)
    assert len(seen) == 2  # the pair whose curve went and the unreadable one
    assert json.loads(record.read_text())["value"]["a"] == 1
