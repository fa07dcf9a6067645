#!/usr/bin/env bash
# Every GPU check, in one run of about 8 minutes on one H100/H200, on the lent machine as it is: its own python3 (3.12,
# torch + CUDA, transformers, peft, accelerate, …; no datasets), the project on PYTHONPATH, and the wheels of
# benchmarks/gpu_wheels.txt carried in .whl/ (bash benchmarks/gpu_wheels.sh here; the device call names .whl in carry).
# Nothing is fetched there. Log and JSON in benchmarks/results/ (gpu_check.log, gpu_check.json and one file per step):
#  0. the environment: the carried wheels are the listed ones, their requirements are met, every modeconn module
#     imports, CUDA is there (benchmarks/gpu_env.py);
#  1. the evaluator's equivalence tests on the GPU (batched points against peft's own forward, the architecture table,
#     chunking, shared prefix, the OOM fallbacks of the loss pass and of decoding, a bfloat16 base);
#  2. the path benchmark on the GPU: a 1B-class random LLaMA (hidden 2048, 16 layers) in bfloat16 at K = 21, modeconn
#     against the per-point loop, peft's mixed batch and the floor (the bare model), tokens/s, peak memory, and the share
#     of the bf16 matmul rate measured in the same run;
#  3. `modeconn barrier`'s code path on that model with --device-map auto (a base spread over the visible GPUs);
#  4. one I-LoRA training run on that model in bfloat16 with gradient checkpointing: step time, peak memory, tokens/s,
#     and the printed memory plan for the same settings at 7B.
# A failed step is logged and the next one runs; the exit status is non-zero if any failed.
#
#   bash benchmarks/gpu_check.sh             on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run   here, before a GPU minute is spent: every step at toy size on the CPU, in a
#       virtual environment of the image's packages only (benchmarks/gpu_image.txt, cached under build/gpu_dryrun/) plus
#       the same wheels for this Python, the project on PYTHONPATH only; results in a temporary folder ($RESULTS if
#       set). Exit 3: that environment cannot be built (no package index reachable), with the reason on stderr.
#       GPU_DRYRUN_CACHE moves the cache (default build/gpu_dryrun; the venv is about 1.7 GB).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

if [[ ${1:-} == --dry-run ]]; then
    MODE=dry-run DEVICE=cpu
    HOST_PY=${PYTHON:-python3}
    PYVER=$("$HOST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    CACHE=${GPU_DRYRUN_CACHE:-build/gpu_dryrun}
    VENV=$CACHE/venv-py$PYVER-$(sha256sum benchmarks/gpu_image.txt | cut -c1-12)
    WHEELS=$CACHE/wheels-py$PYVER-$(sha256sum benchmarks/gpu_wheels.txt | cut -c1-12)
    if [[ ! -f $VENV/.ready ]]; then
        rm -rf "$CACHE"/venv-py"$PYVER"-*
        echo "building $VENV from benchmarks/gpu_image.txt (once per version of that list)"
        if ! { "$HOST_PY" -m venv "$VENV" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
                --no-compile -r benchmarks/gpu_image.txt 2> >(grep -v "WARNING: Location" >&2); }; then
            rm -rf "$VENV"
            echo "cannot build the dry run's environment: pip could not install benchmarks/gpu_image.txt" >&2
            exit 3
        fi
        touch "$VENV/.ready"
    fi
    if [[ ! -f $WHEELS/.ready ]]; then
        rm -rf "$CACHE"/wheels-py"$PYVER"-*
        if ! bash benchmarks/gpu_wheels.sh --python "$PYVER" "$WHEELS" 2> >(grep -v "WARNING: Location" >&2); then
            echo "cannot build the dry run's environment: pip could not download benchmarks/gpu_wheels.txt for Python $PYVER" >&2
            exit 3
        fi
        touch "$WHEELS/.ready"
    fi
    PY=$(realpath "$VENV")/bin/python
    RESULTS=${RESULTS:-$(mktemp -d)}
    SITE=$(mktemp -d)/site
    trap 'rm -rf "$(dirname "$SITE")"' EXIT
    TESTS=(-x)
    MODEL=toy
    PATH_ARGS=(--ks 3 --sequences 4 --repeats 1)
    BIG_ARGS=(--points 3 --limit 4)
    TRAIN_ARGS=(--max-length 64 --examples 4 --batch-size 2)
    ENV_ARGS=()
else
    MODE=gpu DEVICE=cuda
    PY=${PY:-python3}
    WHEELS=.whl
    RESULTS=benchmarks/results
    SITE=/tmp/site
    TESTS=()
    MODEL=1b
    PATH_ARGS=(--ks 21 --sequences 32 --repeats 2)
    BIG_ARGS=(--points 21 --limit 32)
    TRAIN_ARGS=()
    ENV_ARGS=(--cuda)
fi
mkdir -p "$RESULTS"
exec > >(tee "$RESULTS/gpu_check.log") 2>&1
echo "gpu_check ($MODE) $(date -u +%FT%TZ), python $PY, results in $RESULTS"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

if [[ $MODE == dry-run ]]; then  # the folder that will travel, if it is there yet
    [[ -d .whl ]] && { "$PY" benchmarks/gpu_env.py wheels .whl || exit 1; } \
        || echo "no .whl/ yet: run bash benchmarks/gpu_wheels.sh before the device call, and name .whl in its carry"
fi
"$PY" benchmarks/gpu_env.py wheels "$WHEELS" || exit 1
rm -rf "$SITE"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl 2> >(grep -v "WARNING: Location" >&2) || exit 1
export PYTHONPATH=$SITE:$PWD

STEPS=()
step() {  # NAME COMMAND…: run, time and log one step; go on after a failure
    local name=$1 start=$SECONDS status=ok
    shift
    echo "== $name: $*"
    "$@" || status="failed (exit $?)"
    echo "== $name: $status, $((SECONDS - start)) s"
    STEPS+=("$name	$status	$((SECONDS - start))")
}

step environment "$PY" benchmarks/gpu_env.py check --site "$SITE" --out "$RESULTS/gpu_env.json" "${ENV_ARGS[@]}"
# the test drawing a figure needs plotly, which the lent machine does not have
step equivalence env MODECONN_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
    tests/evaluator/test_evaluate.py tests/evaluator/test_rank.py -k "not embedded_default and not training_run and not draw_it"
OUTPUTS=(gpu_env.json "path_eval_${DEVICE}_${MODEL}_bf16.json" "big_model_$DEVICE.json" "train_memory_$DEVICE.json")
step path_eval "$PY" benchmarks/path_eval.py --device $DEVICE --dtype bfloat16 --models $MODEL "${PATH_ARGS[@]}" \
    --out "$RESULTS/${OUTPUTS[1]%.json}"
step device_map "$PY" benchmarks/big_model.py --device-map auto --size $MODEL "${BIG_ARGS[@]}" --out "$RESULTS/${OUTPUTS[2]}"
step ilora_step "$PY" benchmarks/train_memory.py --device $DEVICE --model $MODEL --precision bf16 --gradient-checkpointing \
    "${TRAIN_ARGS[@]}" --out "$RESULTS/${OUTPUTS[3]}"

printf '%s\n' "${STEPS[@]}" | "$PY" -c '
import json, sys
from pathlib import Path
mode, results, outputs = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
steps = [dict(zip(("step", "status", "seconds"), line.split("\t"))) for line in sys.stdin.read().splitlines()]
for s in steps:
    s["seconds"] = int(s["seconds"])
files = {name: json.loads((results / name).read_text()) for name in outputs if (results / name).is_file()}
(results / "gpu_check.json").write_text(json.dumps({"mode": mode, "steps": steps, "results": files}, indent=2) + "\n")
' "$MODE" "$RESULTS" "${OUTPUTS[@]}"
failed=$(printf '%s\n' "${STEPS[@]}" | grep -vc "	ok	")
echo "gpu_check ($MODE): $((${#STEPS[@]} - failed)) of ${#STEPS[@]} steps ok, ${SECONDS} s; log and JSON in $RESULTS"
exit $(( failed > 0 ))
