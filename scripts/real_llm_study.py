"""The mode-connectivity study of a shipped task sequence (the README's real-LLM section and its pictures):

    python scripts/real_llm_study.py --sequence checkpoints/smollm2 --out docs/smollm2 --ilora-run /tmp/smollm2-ilora
    python scripts/real_llm_study.py --sequence checkpoints/seq --out docs/tiny --ilora-run /tmp/tiny-ilora

1. each consecutive pair along its straight line (loss and accuracy on its two tasks) and a fitted Bézier curve;
2. on each straight line, the points where both tasks keep ≥ 95% of their endpoint accuracy (the paper's claim);
3. the plane through the pair with the largest straight-line joint gap and its fitted control point;
4. an I-LoRA run on the same tasks and settings (trained unless ``--ilora-run`` holds a finished one), and the plane
   through three of its fast minima (the pair's two and the one before) with its slow adapters placed on it at their
   projections: where the slow learner sits.

Writes pairs/, plane/, ilora-plane/ (JSON + PNG) and findings.json under --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEEP = 0.95  # a point "keeps" a task when its accuracy is at least 95% of the task's endpoint accuracy


def kept_points(line, a: str, b: str) -> list[dict]:
    """The t of the straight line where both tasks keep ≥ 95% of their own endpoint's accuracy (a at t=0, b at t=1)."""
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
    parser.add_argument("--train-limit", type=int, default=64, help="training examples per task for the curve fits")
    parser.add_argument("--curve-steps", type=int, default=60)
    parser.add_argument("--curve-batch", type=int, default=8, help="examples per curve-fitting step")
    parser.add_argument("--curve-t", type=int, default=4, help="t values per curve-fitting step")
    parser.add_argument("--curve-accuracy", action="store_true", help="also decode along the fitted curves")
    parser.add_argument("--curves", choices=["all", "largest"], default="all",
                        help="fit a curve for every consecutive pair, or only for the largest straight-line joint gap")
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--plane-curve-points", type=int, default=41, help="points of the curve drawn on the plane")
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
    """Steps 1–3: each consecutive pair along its straight line (loss and accuracy on the pair's two tasks) and along a
    Bézier curve fitted on their training data (loss; accuracy with --curve-accuracy), then the plane of the largest
    straight-line joint gap through its control point."""
    from modeconn.analysis.bezier import CurveConfig
    from dataclasses import replace

    from modeconn.analysis.measure import fit_curve, measure_barrier, measure_plane
    from modeconn.analysis.settings import StudySettings
    from modeconn.plots.kinds import save_result

    names = [t.name for t in seq.tasks]
    curve_config = CurveConfig(steps=args.curve_steps, batch_size=args.curve_batch, points_per_step=args.curve_t,
                               seed=args.seed)
    pairs, common = [], StudySettings(limit=args.limit, manifest=False, seed=args.seed, progress=False)
    for a, b in zip(names, names[1:]):  # every straight line first (a result already in --out is read back)
        line = _cached(args.out / "pairs" / f"{a}-{b}-line", lambda: measure_barrier(
            _ends(seq, a, b), replace(common, data=_data(seq, a, b)), points=args.points))
        pairs.append({"from": a, "to": b, "joint_gap_line": line.joint_gap,
                      "barrier_line": {t: line.tasks[t].barrier for t in (a, b)},
                      "endpoint_accuracy": {a: line.tasks[a].accuracy[0], b: line.tasks[b].accuracy[-1]},
                      "line_points_keeping_both": kept_points(line, a, b), "best_on_line": best_joint(line, a, b)})
        print(json.dumps(pairs[-1]), flush=True)
    largest = max(pairs, key=lambda p: p["joint_gap_line"])
    for pair in pairs if args.curves == "all" else [largest]:  # then the fitted curves
        a, b = pair["from"], pair["to"]
        control = args.out / "curves" / f"{a}-{b}"
        if not (control / "curve.json").is_file():
            fit_curve(_ends(seq, a, b), replace(common, data=_data(seq, a, b), limit=args.train_limit),
                      config=curve_config).save(control)
        curve = _cached(args.out / "pairs" / f"{a}-{b}-curve", lambda: measure_barrier(
            _ends(seq, a, b), replace(common, data=_data(seq, a, b), accuracy=args.curve_accuracy), points=args.points,
            path="bezier", control=str(control)))
        pair.update({"joint_gap_curve": curve.joint_gap, "barrier_curve": {t: curve.tasks[t].barrier for t in (a, b)},
                     "best_on_curve": best_joint(curve, a, b) if args.curve_accuracy else None})
        print(json.dumps(pair), flush=True)
    a, b = largest["from"], largest["to"]
    plane = measure_plane([*_ends(seq, a, b), str(args.out / "curves" / f"{a}-{b}")],
                          replace(common, data=_data(seq, a, b), progress=True), grid=args.grid,
                          curve_points=args.plane_curve_points)
    save_result(plane, args.out / "plane")
    return {"sequence": str(args.sequence), "base": seq.base_model, "tasks": names,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "keep": KEEP, "pairs": pairs, "largest_line_gap_pair": [a, b],
            "plane_mean_loss_min": min(min(r) for r in plane.mean_loss())}


def _ends(seq, a: str, b: str) -> list[str]:
    return [str(seq.adapter_dir(seq.task(n))) for n in (a, b)]


def _data(seq, a: str, b: str) -> list[str]:
    return [str(seq.data_dir(seq.task(n))) for n in (a, b)]


def _cached(folder: Path, compute, kind: str = "barrier"):
    """The ``kind`` result (barrier, plane) saved in ``folder`` by an earlier call, else computed and saved there."""
    from modeconn.plots.kinds import load_result, save_result

    if (folder / f"{kind}.json").is_file():
        return load_result(folder / f"{kind}.json")
    result = compute()
    save_result(result, folder)
    return result


def ilora_phase(args, seq, a: str, b: str) -> dict:
    """Step 4: I-LoRA on the same tasks and settings; its slow adapters on the plane of three of its fast minima (the
    pair's two and the one before, else after, them), at their projections."""
    from modeconn.analysis.measure import measure_plane
    from modeconn.analysis.settings import StudySettings
    from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence

    names = [t.name for t in seq.tasks]
    options = {"ilora_ema": 0.9, "ilora_gamma": 1.0, "buffer_fraction": 0.025}  # selected on the embedded stream's eval split
    if not (args.ilora_run / "metrics.json").is_file():
        settings = json.loads((args.sequence / "train_config.json").read_text())
        config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        train_sequence(TrainRequest(seq.base_model, [(t.name, seq.data_dir(t)) for t in seq.tasks],
                                    get_method("ilora", seed=args.seed, **options), config),
                       args.ilora_run, name="ilora")
    k = names.index(a)
    third = names[k - 1] if k > 0 else names[k + 2]
    fast = [str(args.ilora_run / "fast" / n) for n in (a, b, third)]
    slows = [str(args.ilora_run / "slow" / n) for n in (a, b)]
    # the same plane made earlier (or by `modeconn plane --mark`) is read back
    placed = _cached(args.out / "ilora-plane", lambda: measure_plane(
        fast, StudySettings(data=_data(seq, a, b), manifest=False, limit=args.limit, seed=args.seed), grid=args.grid,
        curve=False, marks=slows), kind="plane")
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
