"""benchmarks/finding.py on a hand-written report.json: the rows read the joint gaps and best points of each run,
space and pair, and the claim counts are the hand counts (a point at a minimum does not count as between them)."""
import json

from benchmarks.finding import claims, finding_rows, main


def best(a, b, path, t, at, own, by="accuracy"):
    return {"a": a, "b": b, "path": path, "by": by, "t": t, "at": at, "endpoints": own,
            "keeps_both": all(x >= e - 0.05 for x, e in zip(at, own))}


REPORT = {"runs": [{"label": "seq-seed0", "spaces": {"factor": {
    "linear": [{"from": "A", "to": "B", "joint_gap": 0.30}, {"from": "B", "to": "C", "joint_gap": 0.0}],
    "bezier": [{"from": "A", "to": "B", "joint_gap": 0.004}, {"from": "B", "to": "C", "joint_gap": -0.02}]}},
    "best_points": {"factor": [
        best("A", "B", "linear", 0.5, (0.5, 0.6), (0.8, 0.9)),    # the line loses A: no
        best("A", "B", "bezier", 0.5, (0.78, 0.88), (0.8, 0.9)),  # the curve keeps both, strictly between
        best("A", "B", "bezier", 0.25, (0.1, 0.1), (0.8, 0.9), by="rank accuracy"),
        best("B", "C", "linear", 1.0, (0.7, 0.9), (0.7, 0.9)),    # C's minimum keeps B: no forgetting
        best("B", "C", "bezier", 1.0, (0.7, 0.9), (0.7, 0.9))]}}]}


def test_rows_and_claim_counts_match_the_hand_reading():
    rows = finding_rows(REPORT)
    assert [(r["from"], r["to"], r["line"], r["curve"]) for r in rows] == [("A", "B", 0.30, 0.004),
                                                                           ("B", "C", 0.0, -0.02)]
    assert rows[0]["best_curve"]["at"] == (0.78, 0.88) and rows[0]["best_line"]["keeps_both"] is False
    assert claims(rows, valley=0.01) == {"pairs": 2, "valley_nats": 0.01, "joined_by_a_valley": 2,
                                         "joined_by_the_line": 1, "a_point_keeps_both": 2,
                                         "a_point_strictly_between_keeps_both": 1}
    assert claims(finding_rows(REPORT, by="rank accuracy"), valley=0.001)["a_point_keeps_both"] == 0
    assert claims(rows, valley=0.001)["joined_by_a_valley"] == 1


def test_the_cli_prints_the_table_and_refuses_a_bad_file(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main([str(tmp_path / "report.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| seq-seed0 | factor | A → B | 0.300 → 0.004 |") and "✓" in out[2]
    assert json.loads(out[-1])["a_point_strictly_between_keeps_both"] == 1
    (tmp_path / "bad.json").write_text("{}")
    assert main([str(tmp_path / "bad.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
