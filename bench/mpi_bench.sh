#!/bin/bash
# Data-parallel training step on MobileLLM-125M (B=4, T=256 per micro-batch, 8 rows per step):
#   1 process x 2 threads with --grad-accum 2   against   2 MPI ranks x 1 thread (and 4 ranks x 1 thread
#   with B=2, oversubscribed on 2 cores, for the scaling model), then the all-reduce bandwidth on loopback.
# The ZeRO-1 run (2 steps) is there for its memory line. Reports tokens/s (median of steps 2..STEPS), backward, all-reduce span and the wait after backward per step.
# usage: bench/mpi_bench.sh [BUILD_DIR] [STEPS]
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$SRC/build}
STEPS=${2:-5}
M=$B/mobilellm
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat /usr/include/*.h /usr/include/linux/*.h 2>/dev/null | head -c 4000000 >"$W/text.txt"
"$M" tokenize --tokenizer bytes --input "$W/text.txt" --out "$W/train.shard" >/dev/null 2>&1
A=(--config "$SRC/configs/mobilellm-125m.json" --data "$W/train.shard" --seq 256 --steps "$STEPS" --quiet --ckpt-every 0 --keep 1)
MR=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
summary() {
    python3 - "$1" "$2" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[2]) if '"loss"' in l][1:]
med = lambda k: statistics.median(r[k] for r in rows) if rows and k in rows[0] else float("nan")
span, wait = med("allreduce_s"), med("allreduce_wait_s")
hid = (span - wait) / span if span == span and span > 0 else float("nan")
print(f"| {sys.argv[1]} | {med('tokens_per_s'):.1f} | {med('backward_s'):.2f} | {span:.3f} | {wait:.3f} | {hid:.0%} |")
PY
}
echo "| run | tokens/s | backward s | all-reduce span s | wait after backward s | all-reduce hidden |"
echo "|---|---|---|---|---|---|"
OMP_NUM_THREADS=2 "$M" train "${A[@]}" --batch 4 --grad-accum 2 --out "$W/p1" >/dev/null
summary "1 process x 2 threads, B=4, accum 2" "$W/p1/metrics.jsonl"
OMP_NUM_THREADS=1 "${MR[@]}" -np 2 "$M" train "${A[@]}" --batch 4 --out "$W/r2" >"$W/r2.txt"
summary "2 ranks x 1 thread, B=4" "$W/r2/metrics.jsonl"
grep "memory per rank" "$W/r2.txt" || true
OMP_NUM_THREADS=1 "${MR[@]}" -np 2 "$M" train "${A[@]}" --steps 2 --batch 4 --zero1 --out "$W/z2" >"$W/z2.txt"
grep "memory per rank" "$W/z2.txt" || true
if [ "${ML_BENCH_4:-0}" = 1 ]; then
    OMP_NUM_THREADS=1 "${MR[@]}" -np 4 "$M" train "${A[@]}" --batch 2 --out "$W/r4" >/dev/null
    summary "4 ranks x 1 thread (oversubscribed), B=2" "$W/r4/metrics.jsonl"
fi
OMP_NUM_THREADS=1 "${MR[@]}" -np 2 "$B/allreduce_bench" 512
