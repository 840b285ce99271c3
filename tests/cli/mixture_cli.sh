#!/bin/bash
# train --source: a two-source mixture with a shuffle buffer resumes bit-exactly (a split run
# equals the full run, the mixture state included), metrics carry the rows per domain, and bad
# sources fail with one line.
# usage: mixture_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
cat "$SRC"/train/*.c "$SRC"/model/*.c >"$W/c.txt"
cat "$SRC"/README.md "$SRC"/docs/*.md "$SRC"/configs/README.md >"$W/doc.txt" 2>/dev/null
ok "$M" tokenize --tokenizer bytes --input "$W/c.txt" --domain code --out "$W/code.shard" >/dev/null 2>&1
ok "$M" tokenize --tokenizer bytes --input "$W/doc.txt" --domain prose --out "$W/prose.shard" >/dev/null 2>&1


A=(--config "$CFG/tiny-pro.json" --source "$W/code.shard:0.7" "$W/prose.shard:0.3:docs" --shuffle-rows 8
   --batch 3 --seq 32 --grad-accum 2 --lr 3e-3 --steps 8 --doc-mask --doc-positions --quiet)
# 1. full run == stop after 4 + resume (the stored arguments bring back the sources and buffer)
ok "$M" train "${A[@]}" --out "$W/full" >"$W/full.log"
grep -q "source 0: code, weight 0.700" "$W/full.log" || fail "source line missing: $(cat "$W/full.log")"
grep -q "source 1: docs, weight 0.300" "$W/full.log" || fail "domain override missing"
ok "$M" train "${A[@]}" --stop-after 4 --out "$W/split" >/dev/null
ok "$M" train --resume "$W/split/ckpt_00000004.h5" --out "$W/split" >/dev/null
same_state "$W/full/ckpt_00000008.h5" "$W/split/ckpt_00000008.h5" || fail "split mixture run differs from the full run"
$PY -c "import h5py, sys; assert 'state/mixture' in h5py.File(sys.argv[1], 'r')" "$W/split/ckpt_00000008.h5" ||
    fail "no mixture state stored"
cmp <(grep -v '"val' "$W/full/metrics.jsonl" | sed 's/"tokens_per_s.*//') \
    <(sed 's/"tokens_per_s.*//' "$W/split/metrics.jsonl") || fail "split metrics differ"

# 2. metrics: rows per domain add up to batch x grad-accum each step, both domains used
$PY - "$W/full/metrics.jsonl" <<'PYEOF' || fail "domain rows in metrics"
import json, sys
rows = [json.loads(l)["domain_rows"] for l in open(sys.argv[1]) if "domain_rows" in l]
assert len(rows) == 8 and all(set(r) == {"code", "docs"} and sum(r.values()) == 6 for r in rows), rows
assert sum(r["code"] for r in rows) > 0 and sum(r["docs"] for r in rows) > 0, rows
PYEOF

# 3. another seed gives another data order (the mixture RNG follows --seed)
ok "$M" train "${A[@]}" --seed 2 --steps 2 --out "$W/seed2" >/dev/null
$PY -c "
import h5py, sys, numpy as np
a, b = h5py.File(sys.argv[1], 'r')['state/mixture'][()], h5py.File(sys.argv[2], 'r')['state/mixture'][()]
assert not np.array_equal(a, b)" "$W/seed2/ckpt_00000002.h5" "$W/split/ckpt_00000004.h5" || fail "seed does not change the mixture"

# 4. bad input: one line, non-zero exit, no checkpoint
B=(--config "$CFG/tiny-pro.json" --batch 2 --seq 16 --steps 1 --quiet)
expect_fail "weight 0" "$W/bad1/ckpt_00000001.h5" -- "$M" train "${B[@]}" --source "$W/code.shard:0" --out "$W/bad1"
expect_fail "missing shard" "$W/bad2/ckpt_00000001.h5" -- "$M" train "${B[@]}" --source "$W/code.shard:1" "$W/nope.shard:1" --out "$W/bad2"
expect_fail "no weight" "$W/bad3/ckpt_00000001.h5" -- "$M" train "${B[@]}" --source "$W/code.shard" --out "$W/bad3"
expect_fail "data and source" "$W/bad4" -- "$M" train "${B[@]}" --data "$W/code.shard" --source "$W/code.shard:1" --out "$W/bad4"
ok "$M" train "${B[@]}" --data "$W/code.shard" --out "$W/plain" >/dev/null
expect_fail "resume --data run with --source" "$W/plain/ckpt_00000002.h5" -- \
    "$M" train --resume "$W/plain/ckpt_00000001.h5" --steps 2 --source "$W/code.shard:1" --out "$W/plain"
expect_fail "resume with another buffer" "$W/split/ckpt_00000005.h5" -- \
    "$M" train --resume "$W/split/ckpt_00000004.h5" --shuffle-rows 4 --out "$W/split"
finish
