#!/bin/bash
# Data-parallel training over MPI (common/dist.c, train/trainer.c), checked against one process:
#   1. N ranks with --deterministic-reduce == one process with --grad-accum N, bit for bit (N = 2, 3; many
#      small buckets; mixture data with a held-out set); without the flag, equal up to summation order
#   2. ZeRO-1 (optimizer state sharded) == the same run without it, bit for bit
#   3. resume: 2 ranks stopped and resumed on 2 ranks, on 1 rank (grad-accum recomputed) and with ZeRO-1
#      == the uninterrupted run; 3 ranks cannot keep a global batch of 2 (one-line error)
#   4. ranks started with different arguments: one line from rank 0 naming the difference, no hang
#   5. a rank killed mid-run: the job ends within seconds with one line from rank 0; the last checkpoint
#      is whole and resumes
# Skipped (exit 77) without mpirun or without an MPI build.
# usage: mpi_cli.sh <mobilellm> <source-dir>
# In the sanitizer build, OpenMPI's dlopen'ed plugins keep allocations until exit that LeakSanitizer cannot
# attribute (two-frame stacks into unloaded modules, so no suppression matches): leak detection is off for
# the ranks here. The same trainer code runs leak-checked in every single-process test.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
set -u
source "$(dirname "$0")/common.bash"
if ! command -v mpirun >/dev/null; then echo "skipped: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; fi
MR=(mpirun --oversubscribe --allow-run-as-root)
export OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
CFG="$SRC/configs"
cat "$SRC"/optim/*.c "$SRC"/train/*.c >"$W/corpus.txt"
cat "$SRC"/model/*.c >"$W/corpus2.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" >/dev/null 2>&1
ok "$M" tokenize --tokenizer bytes --input "$W/corpus2.txt" --doc-split blank-lines --out "$W/other.shard" >/dev/null 2>&1
if ! "${MR[@]}" -np 2 "$M" train --config "$CFG/tiny-v1.json" --data "$W/train.shard" --batch 2 --seq 16 --steps 1 \
    --out "$W/probe" >"$W/probe.txt" 2>&1; then
    grep -q "no MPI" "$W/probe.txt" && { echo "skipped: this build has no MPI"; exit 77; }
    fail "2-rank probe run failed: $(cat "$W/probe.txt")"
fi
A=(--config "$CFG/tiny-v1.json" --data "$W/train.shard" --batch 2 --seq 16 --steps 6 --quiet)
loss() { $PY -c "import json,sys; print(' '.join('%.5f' % json.loads(l)['loss'] for l in open(sys.argv[1]) if 'loss' in l))" "$1"; }

# 1. equivalence with gradient accumulation
ok "$M" train "${A[@]}" --grad-accum 2 --deterministic-reduce --out "$W/s2" >/dev/null
ok "${MR[@]}" -np 2 "$M" train "${A[@]}" --deterministic-reduce --out "$W/m2" >/dev/null
same_state "$W/s2/ckpt_00000006.h5" "$W/m2/ckpt_00000006.h5" || fail "2 ranks differ from --grad-accum 2"
ok "$M" train "${A[@]}" --grad-accum 3 --deterministic-reduce --out "$W/s3" >/dev/null
ok "${MR[@]}" -np 3 "$M" train "${A[@]}" --deterministic-reduce --bucket-mb 0.01 --out "$W/m3" >/dev/null
same_state "$W/s3/ckpt_00000006.h5" "$W/m3/ckpt_00000006.h5" || fail "3 ranks (13 buckets) differ from --grad-accum 3"
ok "$M" train "${A[@]}" --grad-accum 4 --deterministic-reduce --out "$W/s4" >/dev/null
ok "${MR[@]}" -np 2 "$M" train "${A[@]}" --grad-accum 2 --deterministic-reduce --out "$W/m22" >/dev/null
[ "$(loss "$W/s4/metrics.jsonl")" = "$(loss "$W/m22/metrics.jsonl")" ] || fail "2 ranks x 2 micro-batches: other losses than --grad-accum 4"
ok "$M" train "${A[@]}" --grad-accum 3 --out "$W/n1" >/dev/null
ok "${MR[@]}" -np 3 "$M" train "${A[@]}" --bucket-mb 0.01 --out "$W/n3" >/dev/null
[ "$(loss "$W/n1/metrics.jsonl")" = "$(loss "$W/n3/metrics.jsonl")" ] || fail "3 ranks (MPI_SUM) drift from --grad-accum 3"
grep -q '"allreduce_s"' "$W/n3/metrics.jsonl" || fail "no all-reduce timing in the metrics"
X=(--config "$CFG/tiny-v1.json" --source "$W/train.shard:0.7:a" "$W/other.shard:0.3:b" --shuffle-rows 8 --val "$W/other.shard"
   --eval-every 3 --eval-batches 5 --batch 2 --seq 16 --steps 6 --quiet --deterministic-reduce)
ok "$M" train "${X[@]}" --grad-accum 2 --out "$W/xs" >/dev/null
ok "${MR[@]}" -np 2 "$M" train "${X[@]}" --out "$W/xm" >/dev/null
same_state "$W/xs/ckpt_00000006.h5" "$W/xm/ckpt_00000006.h5" || fail "mixture run on 2 ranks differs"
$PY - "$W/xs/metrics.jsonl" "$W/xm/metrics.jsonl" <<'PYEOF' || fail "held-out loss or domain rows differ across ranks"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
va, vb = [r["val_loss"] for r in a if "val_loss" in r], [r["val_loss"] for r in b if "val_loss" in r]
assert len(va) == len(vb) == 2 and all(abs(x - y) < 1e-9 for x, y in zip(va, vb)), (va, vb)
assert [r.get("domain_rows") for r in a if "loss" in r] == [r.get("domain_rows") for r in b if "loss" in r]
PYEOF
[ "$(wc -l <"$W/xm/metrics.jsonl")" = "$(wc -l <"$W/xs/metrics.jsonl")" ] || fail "metrics written by more than rank 0"

# 2. ZeRO-1
ok "${MR[@]}" -np 2 "$M" train "${A[@]}" --deterministic-reduce --zero1 --out "$W/z2" >"$W/z2.txt"
same_state "$W/m2/ckpt_00000006.h5" "$W/z2/ckpt_00000006.h5" || fail "ZeRO-1 changed the result"
ok "${MR[@]}" -np 3 "$M" train "${A[@]}" --deterministic-reduce --zero1 --bucket-mb 0.01 --out "$W/z3" >/dev/null
same_state "$W/s3/ckpt_00000006.h5" "$W/z3/ckpt_00000006.h5" || fail "ZeRO-1 on 3 ranks changed the result"

# 3. resume on 2, on 1 and on 3 ranks
ok "${MR[@]}" -np 2 "$M" train "${A[@]}" --deterministic-reduce --stop-after 3 --out "$W/r2" >/dev/null
ok "${MR[@]}" -np 2 "$M" train --resume "$W/r2/ckpt_00000003.h5" --quiet --out "$W/r2" >/dev/null
same_state "$W/m2/ckpt_00000006.h5" "$W/r2/ckpt_00000006.h5" || fail "2-rank run resumed on 2 ranks differs"
ok "$M" train --resume "$W/r2/ckpt_00000003.h5" --quiet --out "$W/r1" >"$W/r1.txt"
grep -q "1 rank(s) x 2" "$W/r1.txt" || fail "resume on 1 rank did not say how it keeps the global batch"
same_state "$W/m2/ckpt_00000006.h5" "$W/r1/ckpt_00000006.h5" || fail "2-rank run resumed on 1 rank differs"
ok "${MR[@]}" -np 2 "$M" train "${A[@]}" --deterministic-reduce --zero1 --stop-after 3 --out "$W/rz" >/dev/null
ok "${MR[@]}" -np 2 "$M" train --resume "$W/rz/ckpt_00000003.h5" --zero1 --quiet --out "$W/rz" >/dev/null
same_state "$W/m2/ckpt_00000006.h5" "$W/rz/ckpt_00000006.h5" || fail "ZeRO-1 run resumed differs"
"${MR[@]}" -np 3 "$M" train --resume "$W/r2/ckpt_00000003.h5" --quiet --out "$W/r3" >"$W/r3.out" 2>"$W/r3.err" &&
    fail "3 ranks resumed a global batch of 2"
[ "$(grep -c '^mobilellm' "$W/r3.err")" = 1 ] && grep -q "global batch must stay the same" "$W/r3.err" ||
    fail "resume on 3 ranks: not one line about the global batch: $(cat "$W/r3.err")"

# 4. ranks that disagree
SECONDS=0
"${MR[@]}" -np 2 sh -c 'exec "$@" --lr "$((OMPI_COMM_WORLD_RANK + 1))e-3"' sh "$M" train "${A[@]}" --out "$W/bad" \
    >"$W/bad.out" 2>"$W/bad.err" && fail "ranks with different --lr ran"
[ "$(grep -c '^mobilellm' "$W/bad.err")" = 1 ] && grep -q "^mobilellm train: rank 1: run arguments.*lr" "$W/bad.err" ||
    fail "argument mismatch: not one line from rank 0 naming lr: $(cat "$W/bad.err")"
[ $SECONDS -lt 60 ] || fail "argument mismatch took $SECONDS s"
echo "ok: mismatch: $(grep '^mobilellm' "$W/bad.err")"

# 5. a rank killed after checkpoint 3 of a long run (every checkpoint kept: with pruning, checkpoint 3 can
#    come and go between two polls of the killer on a loaded machine, and the run would never be killed)
SECONDS=0
timeout 120 "${MR[@]}" -np 2 sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then
      (while [ ! -e "$0/ckpt_00000003.h5" ]; do sleep 0.05; done; kill -9 $$) & fi; exec "$@"' "$W/kill" \
    "$M" train --config "$CFG/tiny-v1.json" --data "$W/train.shard" --batch 2 --seq 64 --steps 100000 --ckpt-every 1 \
    --keep 100000 --quiet --out "$W/kill" >"$W/kill.out" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed rank: exit $rc (124: hang)"
[ $SECONDS -lt 60 ] || fail "killed rank: the job took $SECONDS s to end"
grep -q "^mobilellm train: rank 0: .*a rank died" "$W/kill.out" || fail "killed rank: no line from rank 0: $(cat "$W/kill.out")"
last=$(ls "$W/kill"/ckpt_*.h5 | tail -1)
find "$W/kill" -name '*.tmp.*' | grep -q . && fail "killed rank: a temporary file was left"
ok "$M" train --resume "$last" --steps "$(( $(basename "$last" .h5 | sed 's/ckpt_0*//') + 1 ))" --quiet --out "$W/kill" >/dev/null
echo "ok: killed rank: $(grep '^mobilellm' "$W/kill.out") ($SECONDS s)"
finish
