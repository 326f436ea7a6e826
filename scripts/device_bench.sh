#!/usr/bin/env bash
# Throughput on one GPU (an H100 or H200) in under 5 minutes: first the CUDA checks of the data path, the
# perf settings and the non-finite guard (pytest, including the tests that CPU-only machines skip; 80 s at
# most), then benchmarks/bench.py (210 s at most) at the paper's sizes: 176x176, batch 128, eccv16
# width 1, bf16 + channels_last + compile.
# Extra arguments go to bench.py. With OUT set, everything printed is also written to $OUT/bench.txt.
#
# It installs nothing from a network. It uses the machine's python3 (PyTorch, torchvision, Lightning, timm,
# torchmetrics, scikit-image and scikit-learn preinstalled) and, when the folder .whl/ holds wheels (kornia,
# kornia_rs, omegaconf: see docs/benchmarks.md), installs those into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
report=/dev/null
if [ -n "${OUT:-}" ]; then
    report="$OUT/bench.txt"
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
    # A failing check is reported but does not stop the benchmark: both are wanted from one short lease.
    timeout 80 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_encoded.py tests/test_perf.py tests/test_guards.py || echo "pytest: exit $?"
    timeout 210 "$PYTHON" benchmarks/bench.py --device cuda "$@"
} 2>&1 | tee "$report"
