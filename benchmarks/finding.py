"""The mode-connectivity finding of a `modeconn report` as a markdown table and one JSON line: per run, space and
consecutive pair, the joint gap along the line and the fitted curve, and the best point of each path (the worse task's
accuracy highest) against the two minima, with whether it keeps both within 5 points; then the counts that test the
paper's two claims (a low-loss valley joins consecutive minima; a point on it keeps both tasks), the second also
counted for points strictly between the minima (where the later minimum keeps the earlier task, nothing was lost).

    python benchmarks/finding.py REPORT.json [--by accuracy|"rank accuracy"] [--valley 0.01]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def finding_rows(report: dict, by: str = "accuracy") -> list[dict]:
    """One row per run, space and consecutive pair, read from report.json's ``spaces`` and ``best_points``."""
    rows = []
    for run in report["runs"]:
        for space, paths in (run.get("spaces") or {}).items():
            best = {(b["a"], b["b"], b["path"]): b for b in run.get("best_points", {}).get(space, []) if b["by"] == by}
            curves = {(c["from"], c["to"]): c for c in paths.get("bezier", [])}
            for line in paths.get("linear", []):
                pair = (line["from"], line["to"])
                curve = curves.get(pair)
                rows.append({"run": run["label"], "space": space, "from": pair[0], "to": pair[1],
                             "line": line["joint_gap"], "curve": curve["joint_gap"] if curve else None,
                             "best_line": best.get((*pair, "linear")), "best_curve": best.get((*pair, "bezier"))})
    return rows


def claims(rows: list[dict], valley: float) -> dict:
    """How many pairs a path with joint gap ≤ ``valley`` (nats) joins, and on how many a point keeps both tasks."""
    joined = [r for r in rows if min(g for g in (r["line"], r["curve"]) if g is not None) <= valley]
    bests = [[b for b in (r["best_line"], r["best_curve"]) if b] for r in rows]
    kept = [r for r in bests if any(b["keeps_both"] for b in r)]
    inside = [r for r in bests if any(b["keeps_both"] and 0 < b["t"] < 1 for b in r)]
    return {"pairs": len(rows), "valley_nats": valley, "joined_by_a_valley": len(joined),
            "joined_by_the_line": sum(r["line"] <= valley for r in rows), "a_point_keeps_both": len(kept),
            # the later minimum itself keeping the earlier task is no forgetting, not a valley's gift
            "a_point_strictly_between_keeps_both": len(inside)}


def _best(b: dict | None) -> str:
    if not b:
        return "n/a"
    return (f"t {b['t']:.2f}: {b['at'][0]:.2f} / {b['at'][1]:.2f} (minima {b['endpoints'][0]:.2f} / "
            f"{b['endpoints'][1]:.2f}){' ✓' if b['keeps_both'] else ''}")


def markdown(rows: list[dict], by: str) -> str:
    head = (f"| run | space | pair | joint gap, line → curve (nats) | best point of the line ({by}) | "
            f"best point of the curve |\n|---|---|---|---|---|---|")
    body = [f"| {r['run']} | {r['space']} | {r['from']} → {r['to']} | {r['line']:.3f} → "
            f"{'n/a' if r['curve'] is None else format(r['curve'], '.3f')} | {_best(r['best_line'])} | "
            f"{_best(r['best_curve'])} |" for r in rows]
    return "\n".join([head, *body]) + "\n\n✓: both tasks within 5 accuracy points of their own minimum's."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="a report.json written by modeconn report")
    parser.add_argument("--by", default="accuracy", choices=["accuracy", "rank accuracy"],
                        help="the accuracy definition of the best points")
    parser.add_argument("--valley", type=float, default=0.01, help="the joint gap (nats) that counts as no barrier")
    args = parser.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text())
        rows = finding_rows(report, args.by)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"error: {args.report} is not a readable report.json ({err})", file=sys.stderr)
        return 2
    print(markdown(rows, args.by))
    print(json.dumps({"report": str(args.report), "by": args.by, **claims(rows, args.valley)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
