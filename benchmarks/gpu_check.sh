#!/usr/bin/env bash
# Every GPU check, in one run (about 8 minutes on one H100/H200), log in benchmarks/results/gpu_check.log:
#  1. the evaluator's equivalence tests on the GPU (batched points against peft's own forward, the architecture table,
#     chunking, shared prefix, the OOM fallbacks of the loss pass and of decoding, a bfloat16 base);
#  2. the path benchmark on the GPU: a 1B-class random LLaMA (hidden 2048, 16 layers) in bfloat16 at K = 21, modeconn
#     against the per-point loop, peft's mixed batch and the floor (the bare model), tokens/s and peak memory;
#  3. `modeconn barrier` on that model with --device-map auto (a base spread over the visible GPUs);
#  4. one I-LoRA training step on that model in bfloat16 with gradient checkpointing: step time, peak memory, tokens/s,
#     and the printed memory plan for the same settings at 7B.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=benchmarks/results/gpu_check.log
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 PYTHONUNBUFFERED=1
mkdir -p benchmarks/results
exec > >(tee "$LOG") 2>&1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch'); print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total --format=csv || true
MODECONN_TEST_DEVICE=cuda "$PY" -m pytest -q tests/evaluator/test_evaluate.py -k "not embedded_default"
"$PY" benchmarks/path_eval.py --device cuda --dtype bfloat16 --models 1b --ks 21 --sequences 32 --repeats 2 \
    --out benchmarks/results/path_eval_cuda_1b_bf16
"$PY" benchmarks/big_model.py --device-map auto --out benchmarks/results/big_model_cuda.json
"$PY" benchmarks/train_memory.py --device cuda --model 1b --precision bf16 --gradient-checkpointing \
    --out benchmarks/results/train_memory_cuda.json
