"""Planes, random-direction landscapes and sweeps: geometry against float64 flat vectors, evaluation against the
path evaluator, the sweep's symmetry, redrawing from JSON, and the expected mode-connectivity finding."""
import json
from dataclasses import replace

import pytest
import torch

from modeconn.lora.adapters import load_adapter, save_adapter
from modeconn.analysis.measure import measure_barrier, measure_plane, sweep_sequence
from modeconn.analysis.bezier import CurveConfig
from modeconn.cli import main
from modeconn.lora.directions import filter_normalize, landscape_coefficients, random_direction, random_span
from modeconn.errors import ConfigError
from modeconn.analysis.settings import StudySettings
from modeconn.evaluator.models import checkpoints_dir
from modeconn.lora.paths import linear_path
from modeconn.lora.plane import gram, grid_axes, plane_basis

SEQ = checkpoints_dir() / "seq"
NEWS, GLOSS, FORTUNE = (str(SEQ / t) for t in ("news", "gloss", "fortune"))
QUIET = StudySettings(limit=6, accuracy=False, progress=False)


def flat(weights, space: str) -> torch.Tensor:
    """The point as one float64 vector: folded A and B factors, or the merged ΔW = B·A of every module."""
    parts = []
    for m, (a, b) in sorted(weights.folded().items()):
        a, b = a.double(), b.double()
        parts += [a.flatten(), b.flatten()] if space == "factor" else [(b @ a).flatten()]
    return torch.cat(parts)


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_plane_basis_is_orthonormal_and_the_points_land_on_their_coordinates(space):
    anchors = [load_adapter(p) for p in (NEWS, GLOSS, FORTUNE)]
    basis = plane_basis(gram(anchors, space))
    vectors = torch.stack([flat(w, space) for w in anchors])  # [3, D]
    u, v = basis.u @ vectors, basis.v @ vectors
    assert abs(float(u @ u) - 1) < 1e-9 and abs(float(v @ v) - 1) < 1e-9 and abs(float(u @ v)) < 1e-9
    for k in range(3):
        x, y = basis.coords[k].tolist()
        assert torch.allclose(vectors[0] + x * u + y * v, vectors[k], atol=1e-6 * vectors.abs().max())
        assert torch.allclose(basis.coefficients(basis.coords[k : k + 1])[0], torch.eye(3, dtype=torch.float64)[k], atol=1e-9)


@pytest.mark.parametrize("space", ["factor", "delta"])
def test_a_marked_point_lands_at_its_orthogonal_projection(space):
    """Against a float64 least-squares projection of the flattened points onto the plane's span."""
    from modeconn.lora.plane import place

    points = [load_adapter(p) for p in (NEWS, GLOSS, FORTUNE, str(SEQ / "stdlib"))]
    g = gram(points, space)
    basis = plane_basis(g[:3, :3])
    x, y, off = place(g, basis, 3)
    vectors = torch.stack([flat(w, space) for w in points])
    u, v = basis.u @ vectors[:3], basis.v @ vectors[:3]
    d = vectors[3] - vectors[0]
    coef = torch.linalg.lstsq(torch.stack([u, v], 1), d[:, None]).solution[:, 0]
    residual = d - coef[0] * u - coef[1] * v
    assert (x, y) == pytest.approx(coef.tolist(), rel=1e-6) and off == pytest.approx(float(residual.norm()), rel=1e-6)
    inside = place(gram(points[:3] + [linear_path(points[0], points[1], space).at(0.25)], space), basis, 3)
    if space == "factor":  # a point of the straight line lies on the plane, a quarter of the way along u
        assert inside[0] == pytest.approx(0.25 * float(basis.coords[1, 0]), rel=1e-6) and inside[2] < 1e-6 * inside[0]


@pytest.mark.slow
def test_plane_marks_score_the_marked_adapter_itself():
    plane = measure_plane([NEWS, GLOSS, FORTUNE], QUIET, grid=3, marks=[str(SEQ / "stdlib")])
    alone = measure_barrier([str(SEQ / "stdlib"), NEWS], QUIET, points=2)
    assert len(plane.points) == len(plane.labels) == 4
    mark = plane.extra["marks"][str(SEQ / "stdlib")]
    assert mark["off_plane"] > 0 and [mark["x"], mark["y"]] == plane.points[3]
    for name in alone.tasks:  # its own loss, not the loss of its projection
        assert plane.tasks[name].at_points[3] == pytest.approx(alone.tasks[name].loss[0], abs=1e-5)


def test_identical_and_collinear_points_are_refused(tmp_path):
    news, gloss = load_adapter(NEWS), load_adapter(GLOSS)
    with pytest.raises(ConfigError, match="identical"):
        plane_basis(gram([news, news, gloss], "factor"))
    with pytest.raises(ConfigError, match="identical"):
        plane_basis(gram([news, gloss, news], "factor"))
    middle = linear_path(news, gloss).at(0.3)
    with pytest.raises(ConfigError, match="collinear"):
        plane_basis(gram([news, gloss, middle], "factor"))
    with pytest.raises(ConfigError, match="grid"):
        grid_axes(torch.zeros(3, 2), 1, 0.2)


def test_grid_covers_the_points_with_the_margin():
    coords = torch.tensor([[0.0, 0.0], [10.0, 0.0], [4.0, 5.0]], dtype=torch.float64)
    xs, ys = grid_axes(coords, 11, 0.2)
    assert xs[0] == pytest.approx(-2.0) and xs[-1] == pytest.approx(12.0) and len(xs) == 11
    assert ys[0] == pytest.approx(-1.0) and ys[-1] == pytest.approx(6.0)


def test_filter_normalisation_matches_the_definition():
    weights = load_adapter(NEWS)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    direction = random_direction(weights, gen_a)
    for m, (a, b) in weights.folded().items():  # the same draws, normalised row by row in float64
        for w, d in ((a, direction[m][0]), (b, direction[m][1])):
            raw = torch.randn(w.shape, generator=gen_b, dtype=w.dtype).double()
            for row in range(w.shape[0]):
                expected = raw[row] / raw[row].norm() * w[row].double().norm()
                assert torch.allclose(d[row].double(), expected, atol=1e-6)
    zero = filter_normalize(torch.randn(2, 3), torch.tensor([[0.0, 0, 0], [1.0, 2.0, 2.0]]))
    assert torch.equal(zero[0], torch.zeros(3)) and zero[1].norm().item() == pytest.approx(3.0)


def test_landscape_points_are_the_centre_plus_scaled_directions():
    weights = load_adapter(NEWS)
    span = random_span(weights, 2, seed=5)
    centre, one, two = (flat(w, "factor") for w in span.anchors)
    coeffs = landscape_coefficients([-0.5, 0.25], [0.75, 1.0])
    assert coeffs.shape == (4, 3)
    for (c0, alpha, beta) in coeffs.tolist():
        point = flat(span.combine([c0, alpha, beta]), "factor")
        assert torch.allclose(point, centre + alpha * (one - centre) + beta * (two - centre), atol=1e-5)


@pytest.mark.slow
def test_plane_points_score_like_the_path_endpoints():
    plane = measure_plane([NEWS, GLOSS, FORTUNE], QUIET, grid=3)
    line = measure_barrier([NEWS, GLOSS], QUIET, points=2)
    assert len(plane.x) == len(plane.y) == 3 and plane.curve is None
    for name in line.tasks:
        assert plane.tasks[name].at_points[0] == pytest.approx(line.tasks[name].loss[0], abs=1e-5)
        assert plane.tasks[name].at_points[1] == pytest.approx(line.tasks[name].loss[1], abs=1e-5)
        assert len(plane.tasks[name].loss) == 3 and all(len(row) == 3 for row in plane.tasks[name].loss)


@pytest.mark.slow
def test_sweep_matrix_is_symmetric_with_zero_diagonal_and_matches_a_reversed_path():
    result = sweep_sequence(str(SEQ), QUIET, points=3)
    assert len(result.pairs) == 6
    for name, matrix in result.matrix("mean").items():
        n = len(matrix)
        assert all(matrix[i][i] == 0.0 for i in range(n))
        assert all(matrix[i][j] == matrix[j][i] is not None for i in range(n) for j in range(n))
    reversed_path = measure_barrier([GLOSS, NEWS], QUIET, points=3)  # measured the other way round
    for name, tb in reversed_path.tasks.items():
        assert result.matrix("mean")[name][0][1] == pytest.approx(tb.barrier_mean_endpoint, abs=1e-6)
        assert result.matrix("barrier")[name][0][1] == pytest.approx(tb.barrier, abs=1e-6)


@pytest.mark.slow
def test_fitted_curves_lower_the_joint_gap_of_consecutive_tasks():
    """The expected finding on the embedded default. Each task's loss rises monotonically away from its own
    minimum, so the per-task barrier is 0 on the line and on the curve alike; what the curve lowers is the joint
    gap: how far the path's best point is from being as good as both minima."""
    result = sweep_sequence(str(SEQ), replace(QUIET, limit=12), points=5, pairs="consecutive",
                            curve=CurveConfig(steps=30, seed=0))
    line, curve = result.consecutive("linear"), result.consecutive("bezier")
    assert len(line) == len(curve) == 3
    for lin, bez in zip(line, curve):
        assert bez["joint_gap"] < 0.75 * lin["joint_gap"], (lin, bez)


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_plane_cli_then_plot_redraws_the_same_png(tmp_path, capsys):
    out = tmp_path / "plane"
    code, stdout, err = _cli(["plane", NEWS, GLOSS, FORTUNE, "--grid", "3", "--limit", "4", "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".modeconn.owned.json", "plane.html", "plane.json", "plane.png"]
    assert json.loads((out / "plane.json").read_text())["kind"] == "plane"
    again = tmp_path / "again"
    code, _, err = _cli(["plot", str(out / "plane.json"), "--out", str(again)], capsys)
    assert code == 0, err
    assert (again / "plane.png").read_bytes() == (out / "plane.png").read_bytes()
    assert not (again / "plane.json").exists()


@pytest.mark.slow
def test_sweep_cli_saves_the_control_points_a_plane_then_draws(tmp_path, capsys):
    code, _, err = _cli(["sweep", str(SEQ), "--pairs", "consecutive", "--bezier", "--curve-steps", "2", "--points", "3",
                         "--limit", "4", "--out", str(tmp_path / "sweep"), "--curves-out", str(tmp_path / "curves")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == [".modeconn.owned.json", "fortune-stdlib", "gloss-fortune", "news-gloss"]
    # each pair was kept in sweep/pairs/ while the sweep ran (a stopped one resumes), and removed once it was written
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [".modeconn.owned.json", "sweep.html", "sweep.json",
                                                                       "sweep.png"]
    code, _, err = _cli(["sweep", str(SEQ), "--pairs", "consecutive", "--points", "3", "--limit", "4", "--out",
                         str(tmp_path / "sweep")], capsys)
    assert code == 0, err  # the folder is still the sweep's own
    code, _, err = _cli(["plane", NEWS, GLOSS, str(tmp_path / "curves" / "news-gloss"), "--grid", "3", "--limit", "4",
                         "--out", str(tmp_path / "plane")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "plane" / "plane.json").read_text())["curve"] is not None  # the fitted curve, drawn


@pytest.mark.slow
def test_landscape_cli_one_dimension(tmp_path, capsys):
    code, _, err = _cli(["landscape", NEWS, "--dimensions", "1", "--grid", "5", "--limit", "4", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "landscape.json").read_text())
    assert result["kind"] == "landscape" and result["y"] == [0.0] and len(result["x"]) == 5
    centre = result["tasks"]["news"]
    assert centre["loss"][0][2] == pytest.approx(centre["at_points"][0], abs=1e-6)  # α = 0 is the minimum itself


def _refused(args, capsys, out_dir, match):
    code, _, err = _cli(args + ["--out", str(out_dir)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("modeconn: error:") and match in lines[0], err
    assert not out_dir.exists()


def test_bad_plane_and_landscape_input(tmp_path, capsys):
    middle = linear_path(load_adapter(NEWS), load_adapter(GLOSS)).at(0.5)
    save_adapter(middle, tmp_path / "middle")
    out = tmp_path / "out"
    _refused(["plane", NEWS, NEWS, GLOSS], capsys, out, "identical")
    _refused(["plane", NEWS, GLOSS, str(tmp_path / "middle"), "--base", "tiny-llama"], capsys, out, "collinear")
    _refused(["plane", NEWS, GLOSS, FORTUNE, "--grid", "1"], capsys, out, "--grid")
    _refused(["plane", NEWS, GLOSS, FORTUNE, "--margin", "-1"], capsys, out, "--margin")
    _refused(["landscape", NEWS, "--span", "0"], capsys, out, "--span")
    _refused(["landscape", NEWS, "--grid", "1"], capsys, out, "--grid")
    _refused(["landscape", NEWS, "--dimensions", "3"], capsys, out, "dimensions")


def test_bad_sweep_and_plot_input(tmp_path, capsys):
    out = tmp_path / "out"
    one = tmp_path / "one"
    one.mkdir()
    manifest = json.loads((SEQ / "sequence.json").read_text())
    manifest["tasks"] = [{**t, "adapter": str(SEQ / t["adapter"]), "data": str((SEQ / t["data"]).resolve())} for t in manifest["tasks"][:1]]
    (one / "sequence.json").write_text(json.dumps(manifest))
    _refused(["sweep", str(one)], capsys, out, "at least two tasks")
    _refused(["sweep", str(tmp_path / "missing")], capsys, out, "no sequence manifest")
    _refused(["sweep", str(SEQ), "--points", "1"], capsys, out, "--points")
    (tmp_path / "bad.json").write_text('{"kind": "nope"}')
    _refused(["plot", str(tmp_path / "bad.json")], capsys, out, "not a modeconn result")
    (tmp_path / "broken.json").write_text("{")
    _refused(["plot", str(tmp_path / "broken.json")], capsys, out, "not a JSON file")


def test_points_with_the_same_folder_name_keep_distinct_labels():
    from modeconn.analysis.surface import SurfaceResult

    def labels(*paths):
        return SurfaceResult("plane", "factor", [0.0], [0.0], [], list(paths), {}, list(paths), "tiny-llama").short_labels()

    assert labels("runs/seq/news", "runs/seq/gloss", "curves/news-gloss") == ["news", "gloss", "news-gloss"]
    assert labels("run/fast/news", "run/fast/gloss", "run/slow/gloss") == ["fast/news", "fast/gloss", "slow/gloss"]
