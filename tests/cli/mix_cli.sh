#!/bin/bash
# mobilellm mix: the same seed gives the same weights (influence from a given checkpoint and with a trained
# proxy), a simulate run continues from its finished runs, train --mixture trains on the written mixture and
# records it, and bad input (a domain without a window of tokens, shards of different tokenizers, a missing
# target, a hand-written mixture.json whose weights do not sum to a positive number) fails with one line.
# usage: mix_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs/tiny-v1.json"
cat "$SRC"/model/*.c >"$W/code.txt"
cat "$SRC"/README.md "$SRC"/docs/*.md >"$W/prose.txt"
head -c 3000 /dev/urandom | base64 >"$W/junk.txt"
for d in code prose junk; do ok "$M" tokenize --tokenizer bytes --input "$W/$d.txt" --domain $d --out "$W/$d.shard" >/dev/null 2>&1; done
head -c 20000 "$W/prose.txt" >"$W/val.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/val.txt" --out "$W/val.shard" >/dev/null 2>&1
ok "$M" init --config "$CFG" --seed 3 --out "$W/init.h5" >/dev/null
S=(--source code="$W/code.shard" prose="$W/prose.shard" junk="$W/junk.shard" --target val="$W/val.shard" code="$W/code.shard:0.5"
   --batch 2 --seq 16 --samples 6 --target-batches 2)

# 1. determinism: influence at a given checkpoint, twice; then with a 4-step proxy, twice
for k in 1 2; do ok "$M" mix "${S[@]}" --ckpts "$W/init.h5" --out "$W/ck$k" >/dev/null 2>&1; done
for k in 1 2; do ok "$M" mix "${S[@]}" --config "$CFG" --steps 4 --checkpoints 2 --out "$W/px$k" >/dev/null 2>&1; done
$PY - "$W" <<'PYEOF' || fail "same seed, different weights"
import json, sys
w = sys.argv[1]
for a, b in (("ck1", "ck2"), ("px1", "px2")):
    A, B = (json.load(open(f"{w}/{x}/mixture.json")) for x in (a, b))
    wa, wb = ([(d["name"], d["weight"]) for d in m["domains"]] for m in (A, B))
    assert wa == wb, (wa, wb)
    assert abs(sum(x for _, x in wa) - 1) < 1e-9, wa
    assert A["influence"]["utility"] == B["influence"]["utility"]
    assert len(A["influence"]["checkpoints"]) == (1 if a == "ck1" else 2)
    assert A["influence"]["cost"]["ratio_to_train_pass"] > 0
PYEOF

# 1b. --filter: positive-influence windows of every domain as new shards, recorded in mixture.json
ok "$M" mix "${S[@]}" --ckpts "$W/init.h5" --filter --filter-windows 12 --out "$W/flt" >/dev/null 2>&1
$PY - "$W/flt" <<'PYEOF' || fail "filter output"
import json, os, sys
m = json.load(open(os.path.join(sys.argv[1], "mixture.json")))
assert len(m["filter"]) == 3 and all(0 < f["kept"] <= f["windows"] == 12 for f in m["filter"]), m["filter"]
assert all(os.path.exists(os.path.join(sys.argv[1], f["shard"])) for f in m["filter"])
PYEOF
"$M" data info "$W/flt/filtered/code.shard" 2>&1 | grep -q "code" || fail "filtered shard lacks its domain"
"$PY" "$SRC/scripts/plot_mix.py" --mixture "$W/ck1/mixture.json" "$W/ck1.svg" || fail "plot of a mixture.json"

# 2. simulate: finished runs are kept on a rerun, which writes the same weights
ok "$M" mix "${S[@]}" --method simulate --config "$CFG" --runs 5 --sim-steps 2 --heldout 1 --out "$W/sim" >/dev/null 2>&1
cp "$W/sim/mixture.json" "$W/sim1.json"
rm "$W/sim/mixture.json" "$W/sim/sim/run_004/result.json"
"$M" mix "${S[@]}" --method simulate --config "$CFG" --runs 5 --sim-steps 2 --heldout 1 --out "$W/sim" >"$W/sim2.log" 2>&1 || fail "simulate rerun"
[ "$(grep -c 'finished earlier, kept' "$W/sim2.log")" = 4 ] || fail "simulate rerun did not keep its 4 finished runs"
$PY -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert [d['weight'] for d in a['domains']] == [d['weight'] for d in b['domains']]
assert len(a['runs']) == 5 and 'heldout_rmse' in a['regression']['fit']['val']
" "$W/sim1.json" "$W/sim/mixture.json" || fail "simulate rerun differs"

# 3. train --mixture: the mixture's sources, recorded in the checkpoint's run arguments
ok "$M" train --config "$CFG" --mixture "$W/ck1/mixture.json" --batch 2 --seq 16 --steps 2 --out "$W/tr" >"$W/tr.log" 2>&1
grep -q "source 0: code, weight" "$W/tr.log" || fail "train --mixture: no source lines: $(head -5 "$W/tr.log")"
$PY -c "
import h5py, json, sys
a = json.loads(h5py.File(sys.argv[1], 'r').attrs['args_json'])
assert a['mixture'].endswith('ck1/mixture.json') and len(a['source']) == 3, a
" "$W/tr/ckpt_00000002.h5" || fail "checkpoint does not record the mixture"

# 4. bad input
printf 'ab' >"$W/tiny.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/tiny.txt" --out "$W/tiny.shard" >/dev/null 2>&1
expect_fail "domain without tokens" "$W/bad1/mixture.json" -- "$M" mix --source a="$W/code.shard" b="$W/tiny.shard" \
    --target val="$W/val.shard" --ckpts "$W/init.h5" --seq 16 --out "$W/bad1"
ok "$M" tokenizer train --vocab 300 --input "$W/prose.txt" --out "$W/tok.json" >/dev/null 2>&1
ok "$M" tokenize --tokenizer "$W/tok.json" --input "$W/prose.txt" --out "$W/bpe.shard" >/dev/null 2>&1
expect_fail "different tokenizers" "$W/bad2/mixture.json" -- "$M" mix --source a="$W/code.shard" b="$W/bpe.shard" \
    --target val="$W/val.shard" --ckpts "$W/init.h5" --seq 16 --out "$W/bad2"
expect_fail "missing target" "$W/bad3/mixture.json" -- "$M" mix --source a="$W/code.shard" b="$W/prose.shard" \
    --target val="$W/nope.shard" --ckpts "$W/init.h5" --seq 16 --out "$W/bad3"
expect_fail "unknown method" "$W/bad4/mixture.json" -- "$M" mix --source a="$W/code.shard" b="$W/prose.shard" \
    --target val="$W/val.shard" --ckpts "$W/init.h5" --method guess --out "$W/bad4"
echo '{"domains":[{"name":"a","weight":0,"shards":["code.shard"]},{"name":"b","weight":0,"shards":["prose.shard"]}]}' >"$W/zero.json"
expect_fail "mixture weights sum to zero" "$W/trz/ckpt_00000002.h5" -- "$M" train --config "$CFG" --mixture "$W/zero.json" \
    --batch 2 --seq 16 --steps 2 --out "$W/trz"
echo '{"domains":[{"name":"a","weight":-1,"shards":["code.shard"]},{"name":"b","weight":2,"shards":["prose.shard"]}]}' >"$W/neg.json"
expect_fail "negative mixture weight" "$W/trn/ckpt_00000002.h5" -- "$M" train --config "$CFG" --mixture "$W/neg.json" \
    --batch 2 --seq 16 --steps 2 --out "$W/trn"
finish
