"""Extending modeconn from outside: a path kind registered from here (no other change) is walked by `barrier`, fitted
by `curve`, measured by `sweep` and redrawn by `plot`; old sweep files (``linear``/``bezier`` fields) still read and
plot; a JSON of a kind modeconn does not know is refused in one line."""
import json

import pytest
import torch

from modeconn.cli import main
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora import path_kinds
from modeconn.lora.path_kinds import PathKind
from modeconn.plots.kinds import load_result

SEQ = checkpoints_dir() / "seq"
A, B = str(SEQ / "news"), str(SEQ / "gloss")
CHEAP = ["--points", "3", "--limit", "4", "--no-accuracy"]


def early_bend(t) -> torch.Tensor:
    """A polygonal chain whose bend is reached at t = ¼ (weights of a, bend, b)."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    return torch.where(t <= 0.25, torch.cat([1 - 4 * t, 4 * t, 0 * t], 1),
                       torch.cat([0 * t, (1 - t) / 0.75, (t - 0.25) / 0.75], 1))


@pytest.fixture
def toy(monkeypatch):
    """The toy kind, known for this test only."""
    monkeypatch.setitem(path_kinds._KINDS, "early", PathKind("early", "bend reached at t = 1/4", early_bend, (0.25,)))
    return "early"


def ok(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_a_registered_kind_runs_through_curve_barrier_sweep_and_plot(toy, tmp_path, capsys):
    curve = tmp_path / "curve"
    ok(["curve", A, B, "--path", toy, "--steps", "2", "--train-limit", "4", "--out", curve], capsys)
    assert json.loads((curve / "curve.json").read_text())["path"] == toy
    ok(["barrier", A, B, "--path", toy, "--control", curve, *CHEAP, "--out", tmp_path / "b"], capsys)
    barrier = json.loads((tmp_path / "b" / "barrier.json").read_text())
    assert barrier["path"] == toy and barrier["t"] == [0.0, 0.5, 1.0]
    ok(["sweep", SEQ, "--curve", toy, "--curve-steps", "2", "--pairs", "consecutive", *CHEAP, "--out", tmp_path / "s"],
       capsys)
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert all(list(p["paths"]) == ["linear", toy] for p in sweep["pairs"]) and list(sweep["matrices"]) == ["linear", toy]
    for result in (tmp_path / "b" / "barrier.json", tmp_path / "s" / "sweep.json"):
        (result.parent / result.name.replace(".json", ".png")).unlink()
        ok(["plot", result], capsys)
        assert (result.parent / result.name.replace(".json", ".png")).stat().st_size > 0
    old = {**sweep, "pairs": [{"a": p["a"], "b": p["b"], "linear": p["paths"]["linear"], "bezier": p["paths"][toy]}
                              for p in sweep["pairs"]]}  # a sweep.json as written before paths were keyed by kind
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sweep.json").write_text(json.dumps(old))
    assert load_result(tmp_path / "old" / "sweep.json").paths() == ["linear", "bezier"]
    ok(["plot", tmp_path / "old" / "sweep.json"], capsys)
    assert (tmp_path / "old" / "sweep.png").stat().st_size > 0


def test_an_unknown_result_kind_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "odd.json").write_text(json.dumps({"kind": "hologram", "pairs": []}))
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "odd.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hologram" in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.json"]


def test_an_unknown_path_kind_is_refused_in_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert main(["barrier", A, B, "--path", "spiral", *CHEAP, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spiral" in err[0]
