#!/usr/bin/env bash
# On a machine with a CUDA GPU, in under 5 minutes: the evaluator's equivalence tests on the GPU (batched points
# against peft's own forward, chunking, shared prefix, OOM fallback), then the path benchmark on the GPU in float32
# and bfloat16. Results go to benchmarks/results/path_eval_cuda*.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
MODECONN_TEST_DEVICE=cuda "$PY" -m pytest -q tests/test_evaluate.py -k "not embedded_default"
"$PY" benchmarks/path_eval.py --device cuda --models embedded large --ks 5 21 --sequences 32 --out benchmarks/results/path_eval_cuda
"$PY" benchmarks/path_eval.py --device cuda --dtype bfloat16 --models large --ks 21 --sequences 32 --out benchmarks/results/path_eval_cuda_bf16
