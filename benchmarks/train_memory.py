"""Memory and speed of an I-LoRA training step at a realistic input length, by precision and gradient checkpointing.

Two synthetic tasks whose prompts are cut to --max-length tokens; I-LoRA (replay + the slow adapter's pass) trains
both; the step time is that of the second task (where replay and the consistency loss run). Each setting runs in its
own process: peak resident memory (CPU) or peak allocated GPU memory is its own. Prints a JSON line per setting and a
memory plan for the same settings at 7B; writes --out (JSON) and its .md.

    python benchmarks/train_memory.py [--model smollm2-135m] [--max-length 512] [--device cpu]
    python benchmarks/train_memory.py --device cuda --model 1b --precision bf16 --gradient-checkpointing   (GPU check)
    (--model toy: a 2-layer random LLaMA, the GPU check's dry run on a CPU)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RANDOM = {"1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16),
          "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)}


def make_tasks(root: Path, examples: int) -> list[tuple[str, Path]]:
    """Two tasks whose prompts are long (the embedded tasks' prompts strung together) and answers short."""
    from modeconn.evaluator.data import load_split
    from modeconn.evaluator.models import checkpoints_dir

    tasks = []
    for name in ("news", "gloss"):
        source = load_split(checkpoints_dir() / "data" / name, "train")
        records = [{"prompt": " ".join(e.prompt for e in source[i : i + 12]), "answer": source[i].answer}
                   for i in range(examples)]
        for split in ("train", "eval", "test"):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / f"{split}.json").write_text(json.dumps(records[: max(2, examples // (1 if split == 'train' else 4))]))
        tasks.append((name, root / name))
    return tasks


def base_for(model: str, root: Path) -> str:
    """A named base, or a random LLaMA (1b: hidden 2048, 16 layers; toy: hidden 64, 2 layers) saved as a folder."""
    if model not in RANDOM:
        return model
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from modeconn.evaluator.models import checkpoints_dir

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=4096, num_key_value_heads=RANDOM[model]["num_attention_heads"], bos_token_id=1, eos_token_id=2,
                         pad_token_id=3, max_position_embeddings=2048, **RANDOM[model])
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root / model)
    AutoTokenizer.from_pretrained(checkpoints_dir() / "base").save_pretrained(root / model)
    return str(root / model)


def child(args) -> dict:
    import torch

    from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
    from modeconn.continual.old_names import PRECISION_VALUES

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = make_tasks(root / "data", args.examples)
        base = base_for(args.model, root)
        config = TrainConfig(rank=8, alpha=16, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                             epochs=1, batch_size=args.batch_size, max_length=args.max_length,
                             dtype=PRECISION_VALUES[args.precision],
                             gradient_checkpointing=bool(args.gradient_checkpointing), seed=0)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        train_sequence(TrainRequest(base, tasks, get_method("ilora", seed=0), config, device=args.device, eval_limit=2),
                       root / "run", progress=False)
        seconds = time.perf_counter() - start
        log = [json.loads(line) for line in (root / "run" / "train_log.jsonl").read_text().splitlines()]
    replay_steps = [r for r in log if r["task"] == "gloss"]
    per_step = sum(r["seconds"] for r in replay_steps) / len(replay_steps)
    tokens = sum(r["tokens_per_second"] * r["seconds"] for r in replay_steps) / len(replay_steps)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": args.model, "device": args.device, "precision": args.precision,
            "gradient_checkpointing": bool(args.gradient_checkpointing), "max_length": args.max_length,
            "batch_size": args.batch_size, "seconds_per_replay_step": round(per_step, 3),
            "tokens_per_second": round(tokens / per_step, 1), "peak_mb": round(peak, 1), "run_seconds": round(seconds, 1),
            "peak_kind": "cuda max allocated" if args.device.startswith("cuda") else "max RSS of the process"}


def memory_plan(params: float, layers: int, hidden: int, tokens: int, bytes_per: int, checkpointing: bool) -> dict:
    """A rough plan of a LoRA step's memory: frozen weights, the LoRA optimizer state, and activations (all layers
    kept, or one layer's inputs per layer with checkpointing plus one layer's full set)."""
    weights = params * bytes_per
    per_layer_full = tokens * hidden * 34 * bytes_per  # attention + MLP intermediates of one decoder layer
    activations = layers * tokens * hidden * bytes_per + per_layer_full if checkpointing else layers * per_layer_full
    return {"weights_gib": weights / 2**30, "activations_gib": activations / 2**30, "total_gib": (weights + activations) / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"], help="one setting (default: fp32 and bf16)")
    parser.add_argument("--gradient-checkpointing", action="store_true", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_memory.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    precisions = [args.precision] if args.precision else ["fp32", "bf16"]
    checkpointing = [args.gradient_checkpointing] if args.gradient_checkpointing is not None else [False, True]
    rows = []
    for precision in precisions:
        for gc in checkpointing:
            cmd = [sys.executable, __file__, "--child", "--model", args.model, "--device", args.device, "--max-length",
                   str(args.max_length), "--batch-size", str(args.batch_size), "--examples", str(args.examples),
                   "--precision", precision] + (["--gradient-checkpointing"] if gc else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if done.returncode != 0:
                sys.exit(done.stderr[-3000:])
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    plan = {f"7B {p}{' +GC' if gc else ''}": memory_plan(6.7e9, 32, 4096, args.batch_size * 2 * args.max_length,
                                                          4 if p == "fp32" else 2, gc)
            for p in precisions for gc in checkpointing}
    for name, entry in plan.items():
        print(f"memory plan, {name}, batch {args.batch_size} (+ as many replayed) × {args.max_length} tokens: weights "
              f"{entry['weights_gib']:.1f} GiB, activations {entry['activations_gib']:.1f} GiB, total {entry['total_gib']:.1f} GiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"rows": rows, "plan_7b": plan, "command": "python benchmarks/train_memory.py " + " ".join(sys.argv[1:])}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"I-LoRA training step, {args.model} on {args.device}, --max-length {args.max_length}, batch {args.batch_size} "
             "(+ as many replayed), the second task's steps. Each row its own process.", "",
             "| precision | gradient checkpointing | s / step | tokens / s | peak MB |", "|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {'yes' if r['gradient_checkpointing'] else 'no'} | {r['seconds_per_replay_step']} | "
              f"{r['tokens_per_second']} | {r['peak_mb']:.0f} |" for r in rows]
    lines += ["", f"Command: `{record['command']}`."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
