"""The mode-connectivity study of a shipped task sequence (the README's real-LLM section and its pictures):

    python scripts/real_llm_study.py --sequence checkpoints/smollm2 --out docs/smollm2 --ilora-run /tmp/smollm2-ilora
    python scripts/real_llm_study.py --sequence checkpoints/seq --out docs/tiny --ilora-run /tmp/tiny-ilora

1. the consecutive pairs along straight lines and fitted Bézier curves, loss and accuracy (`sweep_sequence`);
2. on each straight line, the points where both tasks keep ≥ 95% of their endpoint accuracy (the paper's claim);
3. the plane through the pair with the largest straight-line joint gap and its fitted control point;
4. an I-LoRA run on the same tasks and settings (trained unless ``--ilora-run`` holds a finished one), and the plane
   through three of its fast minima (the pair's two and the one before) with its slow adapters placed on it at their
   projections: where the slow learner sits.

Writes sweep/, plane/, ilora-plane/ (JSON + PNG) and findings.json under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEEP = 0.95  # a point "keeps" a task when its accuracy is at least 95% of the task's endpoint accuracy


def kept_points(pair, a: str, b: str) -> list[dict]:
    """The t of the straight line where both tasks keep ≥ 95% of their own endpoint's accuracy (a at t=0, b at t=1)."""
    line = pair.linear
    acc_a, acc_b = line.tasks[a].accuracy, line.tasks[b].accuracy
    return [{"t": t, a: acc_a[i], b: acc_b[i]} for i, t in enumerate(line.t)
            if acc_a[i] >= KEEP * acc_a[0] and acc_b[i] >= KEEP * acc_b[-1]]


def best_joint(result, a: str, b: str) -> dict:
    """The point of a path where the worse of the two tasks' accuracy relative to its endpoint is highest."""
    acc_a, acc_b = result.tasks[a].accuracy, result.tasks[b].accuracy
    ratio = [min(acc_a[i] / max(acc_a[0], 1e-9), acc_b[i] / max(acc_b[-1], 1e-9)) for i in range(len(result.t))]
    i = max(range(len(ratio)), key=ratio.__getitem__)
    return {"t": result.t[i], a: acc_a[i], b: acc_b[i], "kept_fraction": ratio[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ilora-run", type=Path, required=True, help="I-LoRA run folder (trained here if unfinished)")
    parser.add_argument("--phases", default="sequence,ilora", help="sequence (1–3), ilora (4; needs the first's results)")
    parser.add_argument("--points", type=int, default=11)
    parser.add_argument("--limit", type=int, default=32, help="eval-split examples per task for paths and plane")
    parser.add_argument("--curve-steps", type=int, default=60)
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from modeconn.files import write_json
    from modeconn.lora.sequence import load_sequence

    seq = load_sequence(args.sequence)
    record = args.out / "findings.json"
    phases = args.phases.split(",")
    findings = json.loads(record.read_text()) if record.is_file() and "sequence" not in phases else {}
    if "sequence" in phases:
        findings = sequence_phase(args, seq)
    if "ilora" in phases:
        findings["ilora"] = ilora_phase(args, seq, *findings["largest_line_gap_pair"])
    write_json(record, findings)
    print(json.dumps(findings, indent=2))


def sequence_phase(args, seq) -> dict:
    """Steps 1–3: the consecutive pairs along lines and fitted curves, and the plane of the largest gap."""
    from modeconn.analysis.bezier import CurveConfig
    from modeconn.analysis.measure import measure_plane, sweep_sequence
    from modeconn.evaluator.evaluate import EvalConfig
    from modeconn.plots.kinds import save_result

    names = [t.name for t in seq.tasks]
    sweep = sweep_sequence(str(args.sequence), points=args.points, pairs="consecutive", bezier=True,
                           curve_config=CurveConfig(steps=args.curve_steps, seed=args.seed), limit=args.limit,
                           seed=args.seed, eval_config=EvalConfig(accuracy=True, progress=False),
                           curves_out=str(args.out / "curves"))
    save_result(sweep, args.out / "sweep")
    pairs = []
    for pair in sweep.pairs:
        a, b = names[pair.a], names[pair.b]
        pairs.append({"from": a, "to": b, "joint_gap_line": pair.linear.joint_gap, "joint_gap_curve": pair.bezier.joint_gap,
                      "barrier_line": {t: pair.linear.tasks[t].barrier for t in (a, b)},
                      "barrier_curve": {t: pair.bezier.tasks[t].barrier for t in (a, b)},
                      "endpoint_accuracy": {a: pair.linear.tasks[a].accuracy[0], b: pair.linear.tasks[b].accuracy[-1]},
                      "line_points_keeping_both": kept_points(pair, a, b),
                      "best_on_line": best_joint(pair.linear, a, b), "best_on_curve": best_joint(pair.bezier, a, b)})
    top = max(pairs, key=lambda p: p["joint_gap_line"])
    a, b = top["from"], top["to"]
    ends = [str(seq.adapter_dir(seq.task(n))) for n in (a, b)]
    plane = measure_plane(*ends, str(args.out / "curves" / f"{a}-{b}"), grid=args.grid, limit=args.limit, seed=args.seed)
    save_result(plane, args.out / "plane")
    return {"sequence": str(args.sequence), "base": seq.base_model, "tasks": names,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "keep": KEEP, "pairs": pairs, "largest_line_gap_pair": [a, b],
            "plane_mean_loss_min": min(min(r) for r in plane.mean_loss())}


def ilora_phase(args, seq, a: str, b: str) -> dict:
    """Step 4: I-LoRA on the same tasks and settings; its slow adapters on the plane of three of its fast minima (the
    pair's two and the one before, else after, them), at their projections."""
    from modeconn.analysis.measure import measure_plane
    from modeconn.continual import TrainConfig, get_method, train_sequence
    from modeconn.plots.kinds import save_result

    names = [t.name for t in seq.tasks]
    options = {"ema": 0.9, "gamma": 1.0, "buffer_fraction": 0.025}  # selected on the embedded stream's eval split
    if not (args.ilora_run / "metrics.json").is_file():
        settings = json.loads((args.sequence / "train_config.json").read_text())
        config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        train_sequence(seq.base_model, [(t.name, seq.data_dir(t)) for t in seq.tasks],
                       get_method("ilora", seed=args.seed, **options), config, args.ilora_run, name="ilora")
    k = names.index(a)
    third = names[k - 1] if k > 0 else names[k + 2]
    fast = [str(args.ilora_run / "fast" / n) for n in (a, b, third)]
    slows = [str(args.ilora_run / "slow" / n) for n in (a, b)]
    data = [str(seq.data_dir(seq.task(n))) for n in (a, b)]
    placed = measure_plane(*fast, data, grid=args.grid, limit=args.limit, seed=args.seed, curve=False, marks=slows)
    save_result(placed, args.out / "ilora-plane")
    size = placed.points[1][0]  # the distance between the pair's fast minima
    ilora = json.loads((args.ilora_run / "metrics.json").read_text())
    labels = [f"fast/{n}" for n in (a, b, third)] + [f"slow/{n}" for n in (a, b)]
    return {"run": str(args.ilora_run), "AP": ilora["AP"], "BWT": ilora["BWT"], "accuracy": ilora["accuracy"],
            "options": options, "other_learner": ilora.get("method_record", {}).get("other_learner"),
            "plane": labels[:3],
            # each slow adapter on the plane: x along fast_a → fast_b (0 at fast_a, 1 at fast_b), y towards the third
            # fast minimum, and its distance from the plane, all in units of |fast_b − fast_a|
            "slow": {f"slow/{n}": {"along": placed.points[3 + i][0] / size, "across": placed.points[3 + i][1] / size,
                                   "off_plane": placed.extra["marks"][slows[i]]["off_plane_relative"]}
                     for i, n in enumerate((a, b))},
            "loss_at": {label: {t: task.at_points[i] for t, task in placed.tasks.items()} for i, label in enumerate(labels)}}


if __name__ == "__main__":
    main()
