#!/bin/bash
# bench: the per-kernel profile table (--profile or ML_PROFILE=1), the JSON result file (--out), the
# memory lines; ML_PROFILE=1 on train prints the profile too; bad input fails cleanly.
# usage: bench_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
export OMP_NUM_THREADS=1
B=(bench --config "$SRC/configs/tiny-v1.json" --batch 1 --seq 16 --steps 2 --warmup 1)
ok "$M" "${B[@]}" --profile --out "$W/b.json" >"$W/table"
for w in "attention.fwd" "matmul.qkv.bwd" "optimizer" "other (untimed)" "step (wall)" "peak RSS" "minimum"; do
    grep -q "$w" "$W/table" || fail "table lacks '$w'"
done
$PY - "$W/b.json" "$W/table" <<'PYEOF' || fail "bench JSON"
import json, sys
r = json.loads(open(sys.argv[1]).read())
last = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert last["profile"] == r["profile"] and last["ms_per_step"] == r["ms_per_step"]
names = [p["name"] for p in r["profile"]]
assert names[-1] == "other" and len(set(names)) == len(names), names
timed = sum(p["ms_per_step"] for p in r["profile"] if p["name"] != "other")
assert 0 < timed <= r["ms_per_step"] * 1.0001 + 0.01, (timed, r["ms_per_step"])
assert abs(r["min_mib"] - (r["param_mib"] + r["grad_mib"] + r["moment_mib"] + r["act_saved_mib"])) < 0.2
assert r["mem_ratio"] > 1 and r["peak_rss_mib"] > 0
print("profile sums to", round(timed, 3), "of", r["ms_per_step"], "ms; memory ratio", r["mem_ratio"])
PYEOF
ML_PROFILE=1 "$M" "${B[@]}" --json >"$W/env.json" || fail "ML_PROFILE=1 bench"
$PY -c "import json,sys; assert 'profile' in json.loads(open(sys.argv[1]).read())" "$W/env.json" || fail "ML_PROFILE=1: no profile"
"$M" "${B[@]}" --json >"$W/plain.json" || fail "bench --json"
$PY -c "import json,sys; assert 'profile' not in json.loads(open(sys.argv[1]).read())" "$W/plain.json" || fail "profile without --profile"
# train under ML_PROFILE=1 prints the table after the run
printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 60) >"$W/t.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/t.txt" --out "$W/t.shard" >/dev/null 2>&1
ML_PROFILE=1 "$M" train --config "$SRC/configs/tiny-v1.json" --data "$W/t.shard" --batch 1 --seq 16 --steps 2 \
    --out "$W/run" >"$W/train.out" 2>&1 || { fail "train under ML_PROFILE"; cat "$W/train.out" >&2; }
grep -q "^profile (ML_PROFILE, 2 steps" "$W/train.out" || fail "train: no profile header"
grep -q "^clip_grad" "$W/train.out" || fail "train: no clip_grad row"
expect_fail "bench --out into a missing directory" "$W/nodir/b.json" -- "$M" "${B[@]}" --out "$W/nodir/b.json"
expect_fail "bench --batch 0" -- "$M" bench --config "$SRC/configs/tiny-v1.json" --batch 0
finish
