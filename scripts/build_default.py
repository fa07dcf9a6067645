"""Rebuild the embedded default under checkpoints/ bit for bit (same seed, same machine and versions):
task data, tokenizer + pretrained tiny LLaMA base, and the plain sequential LoRA adapters.

    python scripts/build_default.py [--out checkpoints] [--seed 0] [--stages data,base,seq]

Needs the source corpora (see scripts/sources.py) and about 15 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import build_tasks  # noqa: E402
import pretrain_base  # noqa: E402

TASKS = ["news", "gloss", "fortune", "stdlib"]
PRETRAIN_STEPS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default="data,base,seq")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out = args.out
    if "data" in stages or "base" in stages:
        held_out = build_tasks.build(out / "data", args.seed)
    if "base" in stages:
        docs = pretrain_base.corpus(set().union(*held_out.values()), args.seed)
        tokenizer = pretrain_base.train_tokenizer(docs, out / "base")
        _, n_tokens = pretrain_base.pretrain(docs, tokenizer, out / "base", args.seed, PRETRAIN_STEPS)
        (out / "base" / "pretraining.json").write_text(json.dumps(
            {"documents": len(docs), "tokens": n_tokens, "steps": PRETRAIN_STEPS, "seed": args.seed,
             "config": pretrain_base.CONFIG}, indent=2) + "\n")
    if "seq" in stages:
        import os

        from modeconn.continual import TrainConfig, get_method, train_sequence
        from modeconn.continual.config import EMBEDDED_TRAINING

        os.environ["MODECONN_CHECKPOINTS"] = str(out.resolve())
        config = TrainConfig(**EMBEDDED_TRAINING, epochs=5, seed=args.seed)
        train_sequence("tiny-llama", [(t, out / "data" / t) for t in TASKS], get_method("seq"), config, out / "seq", name="embedded-seq")


if __name__ == "__main__":
    main()
