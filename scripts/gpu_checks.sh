#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md (issue 3) in one short run on a lent GPU machine.
#
# The GPU machine has torch, numpy and tqdm but not astropy (catalogue I/O). Here, once per session:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl astropy==8.0.2 pyerfa==2.0.1.5 astropy-iers-data==0.2026.11.16.0.37.44
# (.whl/ is git-ignored; 13 MB), then with the device tool:
#   run(command="bash scripts/gpu_checks.sh", carry=[".whl"], timeout_s=480)
# What it writes to $OUT comes back: env.txt, bench_cuda.json, train_cuda.log, predict_cuda.json.
# DEVICE=cpu BENCH_GALAXIES=200 bash scripts/gpu_checks.sh tries it here (no wheels needed).
set -euo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/deepz_gpu_checks}
BENCH_GALAXIES=${BENCH_GALAXIES:-8000}
mkdir -p "$OUT"
PY=${PY:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export DEEPZ_QUIET=1 PYTHONUNBUFFERED=1 DEEPZ_CACHE_DIR=$OUT/cache DEEPZ_PRETRAIN_CACHE=0

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  > "$OUT/env.txt"

# 1. Issue 3 section 7: inference rates, batched vs sequential epochs, the 50-network protocol
$PY -m deepz_core bench --device "$DEVICE" --galaxies "$BENCH_GALAXIES" --protocol \
  | tee "$OUT/bench_cuda.json"

# 2. The training path on the device end to end: randomized coadds, an ensemble, a kill-free resume
#    call on a finished run, and prediction, on a synthetic catalogue (no bagpipes on the machine)
work=$(mktemp -d)
$PY - "$work/cat.fits" <<'EOF'
import sys
from deepz_core.catalog.io import write_catalog
from tests.synthetic import synthetic_catalog
write_catalog(synthetic_catalog(3000, 0, max_exposures=6), sys.argv[1])
EOF
{ time $PY -m deepz_core train --catalog "$work/cat.fits" --pretrain none --preset smoke \
    --epochs 20 --members 2 --device "$DEVICE" --ref-band subaru_i --out "$work/run"
  $PY -m deepz_core resume --run "$work/run"
  $PY -m deepz_core predict --run "$work/run" --catalog "$work/cat.fits" --out "$work/pz.fits"
  $PY -m deepz_core evaluate --pred "$work/pz.fits" --out "$OUT/predict_cuda.json"
  tail -n 3 "$work/run/log.txt"; } > "$OUT/train_cuda.log" 2>&1
cat "$OUT/train_cuda.log"
