#!/usr/bin/env bash
# Every CUDA path once on a lent H100/H200, in one command of under 10 minutes (docs/benchmarks.md, "Device
# check"): scripts/device_check.py's functional parts side by side, then bench.py's core rows, then its preset
# rows (eccv16_imagenet and alexnet_imagenet as shipped), then the profile of a step. Everything printed is also
# written under $OUT (check.txt: the verdicts and tables; parts.log: each part's own output).
#
# It installs nothing from a network: the machine's python3 has PyTorch, torchvision, Lightning, timm,
# torchmetrics, scikit-image and scikit-learn; the project's other imports travel as wheels in .whl/
# (kornia, kornia_rs, omegaconf, pycocotools: see docs/benchmarks.md), installed into /tmp/site first.
# Extra arguments go to device_check.py (--quick rehearses every command at tiny sizes on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import kornia, omegaconf" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OUT="${OUT:-$PWD/device-check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader \
    | tee -a "$OUT/check.txt" || true
exec "$PYTHON" scripts/device_check.py --out "$OUT" "$@"
