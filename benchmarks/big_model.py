"""A 1B-class random LLaMA (hidden 2048, 16 layers) saved as a base folder, two random LoRA adapters on it, and
`modeconn barrier` with the base in bfloat16 spread by `--device-map auto`: where the layers went, seconds, peak GPU
memory per device, and the losses. Meant for the GPU machine (benchmarks/gpu_check.sh); on a CPU-only machine
accelerate places everything on the CPU and the run is a smoke test.

    python benchmarks/big_model.py [--device-map auto] [--points 21] [--size 1b|toy] [--out benchmarks/results/big_model.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = {"1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16),
         "toy": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)}  # the dry run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device-map", default="auto")
    parser.add_argument("--points", type=int, default=21)
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--size", default="1b", choices=list(SIZES))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "big_model.json")
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from modeconn.analysis.measure import measure_barrier
    from modeconn.analysis.settings import StudySettings
    from modeconn.evaluator.models import checkpoints_dir

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        size = SIZES[args.size]
        config = LlamaConfig(vocab_size=4096, num_key_value_heads=size["num_attention_heads"], bos_token_id=1, eos_token_id=2,
                             pad_token_id=3, **size)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(tmp / "base")
        AutoTokenizer.from_pretrained(checkpoints_dir() / "base").save_pretrained(tmp / "base")
        adapters = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
            peft.save_pretrained(tmp / f"a{seed}", save_embedding_layers=False)
            model = peft.unload()
            adapters.append(str(tmp / f"a{seed}"))
        del model
        data = [f"news={checkpoints_dir() / 'data' / 'news'}"]
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        settings = StudySettings(data=data, manifest=False, base=str(tmp / "base"), limit=args.limit, accuracy=False,
                                 dtype="bfloat16", progress=False, device_map=args.device_map)
        result = measure_barrier(adapters, settings, points=args.points)
        seconds = time.perf_counter() - start
    peaks = {f"cuda:{i}": torch.cuda.max_memory_allocated(i) / 2**30 for i in range(torch.cuda.device_count())}
    record = {"size": args.size, "device_map": args.device_map, "points": args.points, "examples": args.limit,
              "seconds": round(seconds, 2), "peak_gib_per_gpu": peaks, "gpus": torch.cuda.device_count(), "loss": result.tasks["news"].loss,
              "settings": result.made_by["settings"]}
    print(json.dumps(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
