#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt for the GPU machine's Python (3.12) into .whl/ (ignored by git), the
# folder benchmarks/gpu_check.sh installs from there; the device call names .whl in `carry`. The folder ends up holding
# exactly the listed wheels (one version of each: two stop pip's install there).
#   bash benchmarks/gpu_wheels.sh [--python 3.12] [DEST]     (gpu_check.sh --dry-run fetches them for this Python)
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=3.12
if [[ ${1:-} == --python ]]; then PYVER=$2; shift 2; fi
DEST=${1:-.whl}
LIMIT_MB=56  # the working tree and the wheels travel together, 64 MiB in all; leave room for the tree to grow
mapfile -t WANTED < <(grep -v '^\s*#' benchmarks/gpu_wheels.txt | grep -v '^\s*$')
mkdir -p "$DEST"
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$fresh" "${WANTED[@]}"
rm -f "$DEST"/*.whl
mv "$fresh"/*.whl "$DEST"/
ls -l "$DEST"/*.whl | awk '{printf "%8.2f MB  %s\n", $5 / 1e6, $NF}'
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$( (git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null || true) | tail -1 | cut -f1)
awk -v w="$wheels" -v t="$tree" 'BEGIN { printf "wheels %.1f MiB + working tree %.1f MiB (a device call carries 64 MiB)\n", w / 2^20, t / 2^20 }'
if (( wheels + tree > LIMIT_MB * 1048576 )); then
    echo "the wheels and the working tree exceed ${LIMIT_MB} MiB: carry fewer wheels" >&2
    exit 1
fi
