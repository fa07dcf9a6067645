"""Native precision: `modeconn barrier` with the base loaded in bfloat16 against float32, on the same points and data.

Each run is its own process; its peak resident memory (max RSS of the child) is measured from outside. The bf16 base
should take at most 0.6× the float32 run's memory, and its losses should stay within 1e-2 relative of float32's.
Prints a JSON line per run and the comparison; writes benchmarks/results/precision.{json,md}.

    python benchmarks/precision.py [--base smollm2-135m] [--points 11] [--limit 16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_adapters(base: str, folder: Path) -> list[str]:
    """Two random LoRA adapters (q/v, rank 8) on ``base``, written by peft, as a sequence with the embedded tasks."""
    import torch
    from peft import LoraConfig, get_peft_model

    from modeconn.evaluator.models import checkpoints_dir, load_base

    model, _ = load_base(base)
    tasks = ["news", "gloss"]
    for seed, task in enumerate(tasks):
        torch.manual_seed(seed)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        peft.peft_config["default"].base_model_name_or_path = base
        peft.save_pretrained(folder / task, save_embedding_layers=False)
        model = peft.unload()
    data = checkpoints_dir() / "data"
    (folder / "sequence.json").write_text(json.dumps({"name": "precision", "base_model": base, "tasks": [
        {"name": t, "data": str(data / t), "adapter": t} for t in tasks]}))
    return [str(folder / t) for t in tasks]


def run(adapters: list[str], dtype: str, points: int, limit: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "modeconn", "barrier", *adapters, "--points", str(points), "--limit", str(limit),
           "--no-accuracy", "--dtype", dtype, "--out", str(out), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        sys.exit("the children's peak memory did not rise: run each dtype in a fresh parent (or the fp32 run first)")
    record = json.loads((out / "barrier.json").read_text())
    return {"dtype": dtype, "peak_rss_mb": peak / 1024, "losses": {t: v["loss"] for t, v in record["tasks"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--points", type=int, default=11)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "precision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        adapters = make_adapters(args.base, Path(tmp) / "seq")
        # bf16 first: max RSS of children only grows, so the smaller run must come first to be seen on its own
        runs = [run(adapters, dtype, args.points, args.limit, Path(tmp) / dtype) for dtype in ("bfloat16", "float32")]
    half, full = runs
    worst = max(abs(h - f) / abs(f) for task in full["losses"] for h, f in zip(half["losses"][task], full["losses"][task]))
    summary = {"base": args.base, "points": args.points, "limit": args.limit, "bf16_peak_rss_mb": round(half["peak_rss_mb"], 1),
               "fp32_peak_rss_mb": round(full["peak_rss_mb"], 1),
               "memory_ratio": round(half["peak_rss_mb"] / full["peak_rss_mb"], 3), "max_relative_loss_difference": worst,
               "command": "python benchmarks/precision.py " + " ".join(sys.argv[1:])}
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        f"`modeconn barrier` on {args.base}, {args.points} points, {args.limit} examples per task (news, gloss), loss only, "
        "each run its own process (peak resident memory of the whole process).\n\n"
        "| base dtype | peak RSS MB | max relative loss difference to float32 |\n|---|---|---|\n"
        f"| float32 | {full['peak_rss_mb']:.0f} | – |\n| bfloat16 | {half['peak_rss_mb']:.0f} | {worst:.2e} |\n\n"
        f"Ratio bf16 / fp32: {summary['memory_ratio']:.2f}. Command: `{summary['command']}`.\n")


if __name__ == "__main__":
    main()
