#!/bin/bash
# CLI tests of distill: the divergence to a trained teacher falls, an interrupted distillation
# resumes bit-exactly (teacher path and loss settings come back from the checkpoint), and a
# teacher with another vocabulary is refused.
# usage: distill_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
cat "$SRC"/train/*.c "$SRC"/model/*.c "$SRC"/optim/*.c >"$W/corpus.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" >/dev/null 2>&1
ok "$M" train --config "$CFG/tiny-pro.json" --data "$W/train.shard" --batch 4 --seq 32 --steps 60 --lr 3e-3 --quiet \
    --out "$W/teacher" >/dev/null
T="$W/teacher/ckpt_00000060.h5"

# the forward KL to the teacher falls (first vs last 5 steps, from metrics.jsonl)
D=(--teacher "$T" --config "$CFG/tiny-r1.json" --data "$W/train.shard" --batch 4 --seq 32 --lr 3e-3 --quiet)
ok "$M" distill "${D[@]}" --steps 30 --loss fkl --temperature 2 --ce-weight 0.1 --out "$W/s" >/dev/null
$PY - "$W/s/metrics.jsonl" <<'PYEOF' || fail "distillation did not reduce the divergence"
import json, sys
kd = [json.loads(l)["kd"] for l in open(sys.argv[1]) if '"kd"' in l]
first, last = sum(kd[:5]) / 5, sum(kd[-5:]) / 5
print(f"fkl {first:.3f} -> {last:.3f}")
assert len(kd) == 30 and last < 0.6 * first
PYEOF

# resume: 10 steps == 4 (--stop-after) + resume, for reverse KL and JSD
for loss in rkl jsd; do
    ok "$M" distill "${D[@]}" --steps 10 --loss $loss --out "$W/full_$loss" >/dev/null
    ok "$M" distill "${D[@]}" --steps 10 --loss $loss --stop-after 4 --out "$W/half_$loss" >/dev/null
    ok "$M" distill --resume "$W/half_$loss/ckpt_00000004.h5" --out "$W/half_$loss" --quiet >/dev/null
    same_state "$W/full_$loss/ckpt_00000010.h5" "$W/half_$loss/ckpt_00000010.h5" || fail "$loss resume differs"
done

# bad input
$PY -c "
import json, sys; c = json.load(open(sys.argv[1])); c['vocab_size'] = 300
json.dump(c, open(sys.argv[2], 'w'))" "$CFG/tiny-v1.json" "$W/v300.json"
ok "$M" init --config "$W/v300.json" --out "$W/v300.h5" >/dev/null
expect_fail "teacher with another vocabulary" "$W/x/ckpt_00000002.h5" -- "$M" distill --teacher "$W/v300.h5" \
    --config "$CFG/tiny-r1.json" --data "$W/train.shard" --steps 2 --out "$W/x"
expect_fail "distill without a teacher" "$W/x/ckpt_00000002.h5" -- "$M" distill --config "$CFG/tiny-r1.json" \
    --data "$W/train.shard" --steps 2 --out "$W/x"
expect_fail "unknown loss" "$W/x/ckpt_00000002.h5" -- "$M" distill --teacher "$T" --config "$CFG/tiny-r1.json" \
    --data "$W/train.shard" --steps 2 --loss kl --out "$W/x"
expect_fail "bad temperature" "$W/x/ckpt_00000002.h5" -- "$M" distill --teacher "$T" --config "$CFG/tiny-r1.json" \
    --data "$W/train.shard" --steps 2 --temperature 0 --out "$W/x"
expect_fail "missing teacher" "$W/x/ckpt_00000002.h5" -- "$M" distill --teacher "$W/nope.h5" --config "$CFG/tiny-r1.json" \
    --data "$W/train.shard" --steps 2 --out "$W/x"
finish
