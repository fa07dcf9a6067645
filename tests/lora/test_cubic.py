"""The cubic Bézier curve: ends exact, Bernstein weights by hand, started on the line it is the line, and fitting its
two control points lowers the loss along it (tiny model, seeded, a few steps); `curve --path cubic` saves both points
and `barrier --path cubic` walks them."""
import json

import pytest
import torch

from modeconn.analysis.bezier import CurveConfig, fit_path, start_path
from modeconn.evaluator.data import load_split
from modeconn.evaluator.evaluate import EvalConfig, evaluate_path
from modeconn.evaluator.models import checkpoints_dir, load_base
from modeconn.lora.adapters import LoraWeights, load_adapter
from modeconn.lora.paths import kind_path, linear_path

SEQ, DATA = checkpoints_dir() / "seq", checkpoints_dir() / "data"


def random_lora(seed: int, modules=("layer.0.q", "layer.1.v")) -> LoraWeights:
    g = torch.Generator().manual_seed(seed)
    return LoraWeights({m: (torch.randn(3, 7, generator=g), torch.randn(5, 3, generator=g)) for m in modules},
                       {m: 2.0 for m in modules}, "base")


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_ends_and_hand_weights(space):
    a, c1, c2, b = (random_lora(k) for k in range(4))
    path = kind_path("cubic", a, [c1, c2], b, space=space)
    m = a.modules[0]
    assert torch.allclose(path.at(0).delta(m), a.delta(m), atol=1e-5)
    assert torch.allclose(path.at(1).delta(m), b.delta(m), atol=1e-5)
    t = 0.25
    weights = torch.tensor([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3], dtype=torch.float64)
    assert torch.allclose(path.coefficients([t])[0], weights)


def test_started_on_the_line_it_is_the_line():
    a, b = random_lora(0), random_lora(1)
    start, line = start_path("cubic", a, b, "factor"), linear_path(a, b)
    for t in (0.1, 0.5, 0.8):
        for m in a.modules:
            assert torch.allclose(start.at(t).factors[m][0], line.at(t).factors[m][0], atol=1e-5)


def test_fitting_both_controls_lowers_the_loss_along_the_curve():
    model, tokenizer = load_base("tiny-llama")
    a, b = load_adapter(SEQ / "news"), load_adapter(SEQ / "gloss")
    tasks = {t: load_split(DATA / t, "train", 4) for t in ("news", "gloss")}
    train = [e for examples in tasks.values() for e in examples]
    start = start_path("cubic", a, b, "factor")
    fit = fit_path(model, tokenizer, start, train, config=CurveConfig(steps=8, batch_size=4, lr=1e-2, path="cubic"),
                   progress=False)
    assert fit.path == "cubic" and len(fit.controls) == 2 and fit.folders() == ["control_1", "control_2"]
    ts, quiet = [0.25, 0.5, 0.75], EvalConfig(accuracy=False, progress=False)
    mean = lambda path: sum(sum(c.loss) for c in evaluate_path(model, tokenizer, path, ts, tasks, quiet).tasks.values())  # noqa: E731
    assert mean(kind_path("cubic", a, fit.controls, b)) < 0.8 * mean(start)


def test_a_cubic_curve_is_saved_as_two_adapters_and_walked_by_barrier(tmp_path, capsys):
    from modeconn.cli import main

    out = tmp_path / "curve"
    assert main(["curve", str(SEQ / "news"), str(SEQ / "gloss"), "--path", "cubic", "--steps", "1", "--train-limit", "4",
                 "--out", str(out)]) == 0
    record = json.loads((out / "curve.json").read_text())
    assert record["path"] == "cubic" and record["controls"] == ["control_1", "control_2"]
    assert all(load_adapter(out / name).modules for name in record["controls"])
    assert main(["barrier", str(SEQ / "news"), str(SEQ / "gloss"), "--path", "cubic", "--control", str(out),
                 "--points", "3", "--limit", "4", "--no-accuracy", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "barrier.json").read_text())["path"] == "cubic"
    capsys.readouterr()
    assert main(["barrier", str(SEQ / "news"), str(SEQ / "gloss"), "--path", "polychain", "--control", str(out),
                 "--points", "3", "--limit", "4", "--out", str(tmp_path / "c")]) == 2
    assert "holds a fitted cubic curve" in capsys.readouterr().err
