#!/bin/bash
# --precision bf16 against fp32, back to back in one run, with the load average before and after:
#  1. GEMM GFLOP/s of every engine (OpenBLAS sgemm, the bf16 kernel, oneDNN when built) on MobileLLM-125M's shapes
#     at 1024 tokens, each layout (forward, dX, dW), with OpenBLAS forced to its Haswell (AVX2) and SkylakeX (AVX-512) kernels,
#     on 2 threads and on 1 (one thread is less hurt by a shared machine: no barrier waits on a descheduled
#     partner);
#  2. `bench` on a model (default mobilellm-125m, B=4, T=256): fp32 with both OpenBLAS kernels, bf16 twice
#     (before and after the fp32 runs, so drifting machine load shows up).
# usage: bench/bf16_bench.sh [CONFIG] [B] [T] [STEPS]      (run it under `nice -n 19` on a shared machine)
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
M="$SRC/build/mobilellm"
CFG="$SRC/configs/${1:-mobilellm-125m}.json"
B=${2:-4} T=${3:-256} STEPS=${4:-3}
echo "commit $(git -C "$SRC" rev-parse --short HEAD)$(git -C "$SRC" diff --quiet HEAD -- . ':!bench/RESULTS.md' || echo +), $(date -u +%F' '%H:%MZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for threads in 2 1; do
    for core in Haswell SkylakeX; do
        echo "== GEMM, OPENBLAS_CORETYPE=$core, $threads thread(s)"
        OMP_NUM_THREADS=$threads OPENBLAS_CORETYPE=$core "$M" bench --gemm --tokens 1024 | grep -v '^{'
    done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # LABEL CORETYPE PRECISION
    printf '%-16s ' "$1"
    OPENBLAS_CORETYPE=$2 "$M" bench --config "$CFG" --batch $B --seq $T --steps $STEPS --precision $3 --json | tail -1
}
echo "== bench $(basename "$CFG") B=$B T=$T, $STEPS timed steps"
run "bf16 (1st)" Haswell bf16
run "fp32 Haswell" Haswell fp32
run "fp32 SkylakeX" SkylakeX fp32
run "bf16 (2nd)" SkylakeX bf16
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
