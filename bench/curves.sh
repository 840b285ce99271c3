#!/usr/bin/env bash
# Benchmark curves of `mobilellm bench` (tokens/s, MFU, peak RSS, per-kernel profile) and their plots:
#   tokens/s against sequence length (MobileLLM-125M, T = 256 ... 8192 at B·T = 8192),
#   against model size (tiny-v1, demo-10m, 125M, 350M, 600M, 1B at B=4 T=256),
#   against threads (1, 2, ... nproc), and the share of step time per kernel (stacked bars).
# Writes bench/plots/curves.json and bench/plots/*.svg (scripts/plot_metrics.py --curves).
#
#   bench/curves.sh                 the full curves (about 30-60 minutes on 2 cores; points estimated
#                                   above 24 GiB or 120 s a step are skipped, with the reason in the JSON)
#   bench/curves.sh --smoke         2 points per curve, 1 step each, small models: proves the pipeline
#                                   (writes to $TMPDIR/mobilellm-curves-smoke unless OUT_DIR is set)
# Any bench/curves.py option can follow (e.g. --curves seq --seqs 256,1024 --steps 3).
# Environment: OUT_DIR (default bench/plots), OMP_NUM_THREADS (default nproc), OPENBLAS_CORETYPE as given.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x build/mobilellm ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
ARGS=()
if [ "${1:-}" = --smoke ]; then
    shift
    OUT_DIR=${OUT_DIR:-${TMPDIR:-/tmp}/mobilellm-curves-smoke}
    ARGS=(--seq-config configs/demo-10m.json --seqs 64,128 --tokens 256 --sizes tiny-v1,demo-10m
          --size-batch 2 --size-seq 64 --threads-config configs/demo-10m.json --threads-batch 2 --threads-seq 64
          --threads "1,$OMP_NUM_THREADS" --steps 1 --warmup 0)
else
    OUT_DIR=${OUT_DIR:-bench/plots}
    THREADS_LIST=$(seq -s, 1 "$OMP_NUM_THREADS")
    ARGS=(--threads "$THREADS_LIST")
fi
mkdir -p "$OUT_DIR"
$PY bench/curves.py --bin build/mobilellm --out "$OUT_DIR/curves.json" "${ARGS[@]}" "$@"
$PY scripts/plot_metrics.py --curves "$OUT_DIR/curves.json" "$OUT_DIR"
