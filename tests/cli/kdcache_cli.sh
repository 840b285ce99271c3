#!/bin/bash
# CLI tests of the offline teacher-logit cache: teacher-logits writes it; distill --cache lowers the
# divergence (renorm and bucket); an interrupted run resumes bit-exactly from the cache; a cache
# written by scripts/teacher_logits_hf.py's writer (same layout) replays too; bad input (other
# data, other B or T, truncated cache, a run longer than the cache, both --teacher and --cache) is a
# one-line error with no output.
# usage: kdcache_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
cat "$SRC"/train/*.c "$SRC"/model/*.c "$SRC"/optim/*.c >"$W/corpus.txt"
cat "$SRC"/formats/*.c >"$W/other.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" >/dev/null 2>&1
ok "$M" tokenize --tokenizer bytes --input "$W/other.txt" --doc-split blank-lines --out "$W/other.shard" >/dev/null 2>&1
ok "$M" train --config "$CFG/tiny-pro.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 60 --lr 3e-3 --quiet \
    --out "$W/teacher" >/dev/null
T="$W/teacher/ckpt_00000060.h5"
ok "$M" teacher-logits --teacher "$T" --data "$W/train.shard" --batch 4 --seq 32 --topk 16 --batches 40 \
    --out "$W/cache.h5" >"$W/tl.log"
grep -q "batch 40/40 .* tok/s | ETA" "$W/tl.log" || fail "teacher-logits shows no progress"

D=(--cache "$W/cache.h5" --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --lr 3e-3 --quiet)
for tail in renorm bucket; do
    ok "$M" distill "${D[@]}" --steps 30 --tail $tail --temperature 2 --ce-weight 0.1 --out "$W/s_$tail" >/dev/null
    $PY - "$W/s_$tail/metrics.jsonl" $tail <<'PYEOF' || fail "distillation from the cache ($tail) did not reduce the divergence"
import json, sys
kd = [json.loads(l)["kd"] for l in open(sys.argv[1]) if '"kd"' in l]
first, last = sum(kd[:5]) / 5, sum(kd[-5:]) / 5
print(f"{sys.argv[2]}: fkl {first:.3f} -> {last:.3f}")
assert len(kd) == 30 and last < 0.6 * first
PYEOF
done

# resume: 10 steps == 4 (--stop-after) + resume (cache, loss and tail come back from the checkpoint)
ok "$M" distill "${D[@]}" --steps 10 --loss jsd --tail bucket --grad-accum 2 --out "$W/full" >/dev/null
ok "$M" distill "${D[@]}" --steps 10 --loss jsd --tail bucket --grad-accum 2 --stop-after 4 --out "$W/half" >/dev/null
ok "$M" distill --resume "$W/half/ckpt_00000004.h5" --out "$W/half" --quiet >/dev/null
$PY - "$W/full/ckpt_00000010.h5" "$W/half/ckpt_00000010.h5" <<'PYEOF' || fail "resume from the cache differs"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
for g in ("params", "optim/exp_avg", "optim/exp_avg_sq"):
    for k in a[g]:
        assert np.array_equal(a[g][k][()], b[g][k][()]), (g, k)
print("resume from the cache: bit-exact")
PYEOF

# the Python writer (scripts/teacher_logits_hf.py) makes a cache the trainer replays, with the same numbers
if $PY -c "import zstandard" 2>/dev/null; then
    $PY - "$SRC/scripts" "$W/cache.h5" "$W/train.shard" "$W/py.h5" <<'PYEOF' || fail "the Python writer's cache differs"
import sys; sys.path.insert(0, sys.argv[1])
import numpy as np, teacher_logits_hf as t
attrs, d = t.read_cache(sys.argv[2])
s = t.TokenStream(shards=[t.Shard(sys.argv[3])])
w = t.CacheWriter(sys.argv[4], 4, 32, 16, int(attrs["vocab_size"]), s.total, 1, s.tokenizer, s.cursor(), "copy", "copy", "{}")
for n in range(d["ids"].shape[0]):
    tokens, cur = s.next_batch(4, 32)
    assert tuple(cur) == tuple(d["cursor"][n]) and t.token_hash(tokens) == int(d["token_hash"][n]), n
    w.append(cur, tokens, d["ids"][n], d["logprobs"][n], d["tail"][n])
w.commit()
z = np.random.RandomState(0).randn(5, 50).astype(np.float32)
ids, lp, tail = t.topk_logprobs(z, 4)
assert (np.diff(lp, axis=1) <= 0).all() and np.allclose(np.exp(lp).sum(1) + tail, 1, atol=1e-6)
print("python writer: same cursors and token hashes as the C reader")
PYEOF
    ok "$M" distill --cache "$W/py.h5" --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 \
        --steps 10 --loss jsd --tail bucket --grad-accum 2 --lr 3e-3 --quiet --out "$W/py" >/dev/null
    $PY -c "
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'r')
assert all(np.array_equal(a['params'][k][()], b['params'][k][()]) for k in a['params'])" \
        "$W/full/ckpt_00000010.h5" "$W/py/ckpt_00000010.h5" || fail "distilling from the Python-written cache differs"
else
    skip_part "python3-zstandard not installed (Python writer not tested)"
fi

# bad input
head -c 20000 "$W/cache.h5" >"$W/cut.h5"
expect_fail "cache from other data" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cache.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/other.shard" --batch 4 --seq 32 --steps 2 --out "$W/x"
expect_fail "cache for another T" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cache.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 16 --steps 2 --out "$W/x"
expect_fail "cache for another B" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cache.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 2 --seq 32 --steps 2 --out "$W/x"
expect_fail "truncated cache" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cut.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 2 --out "$W/x"
expect_fail "run longer than the cache" "$W/x/ckpt_00000041.h5" -- "$M" distill --cache "$W/cache.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 41 --quiet --out "$W/x"
expect_fail "teacher and cache" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cache.h5" --teacher "$T" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 2 --out "$W/x"
expect_fail "unknown tail" "$W/x/ckpt_00000002.h5" -- "$M" distill --cache "$W/cache.h5" --tail drop \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 2 --out "$W/x"
expect_fail "top-K above the vocabulary" "$W/y.h5" -- "$M" teacher-logits --teacher "$T" --data "$W/train.shard" \
    --batch 4 --seq 32 --topk 300 --out "$W/y.h5"
expect_fail "teacher-logits, missing teacher" "$W/y.h5" -- "$M" teacher-logits --teacher "$W/nope.h5" \
    --data "$W/train.shard" --out "$W/y.h5"
finish
