#!/bin/bash
# distill --mixture FILE: a hand-written mixture.json (shards relative to its folder, a domain of weight 0)
# drives the rows drawn per domain, the checkpoint records the file and its expanded sources, a resume takes
# the sources from the checkpoint (the file may be gone by then) and is bit-exact, and bad mixture files fail
# with one line and no checkpoint.
# usage: distill_mixture_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
mkdir -p "$W/shards" "$W/mix"
cat "$SRC"/train/*.c "$SRC"/model/*.c >"$W/code.txt"
cat "$SRC"/README.md "$SRC"/docs/*.md >"$W/prose.txt"
cat "$SRC"/scripts/*.py >"$W/py.txt"
for d in code prose py; do
    ok "$M" tokenize --tokenizer bytes --input "$W/$d.txt" --doc-split blank-lines --domain "$d" \
        --out "$W/shards/$d.shard" >/dev/null 2>&1
done
# a small trained teacher of another shape (same byte vocabulary)
ok "$M" train --config "$CFG/tiny-pro.json" --data "$W/shards/code.shard" "$W/shards/prose.shard" --batch 4 --seq 32 \
    --steps 20 --lr 3e-3 --quiet --out "$W/teacher" >/dev/null
T="$W/teacher/ckpt_00000020.h5"

# weights 3 : 1 : 0 (need not be normalised); "py" is left out
cat >"$W/mix/mixture.json" <<'EOF'
{"format": "mobilellm-mixture", "version": 1, "method": "hand-written",
 "domains": [{"name": "code", "weight": 3, "shards": ["../shards/code.shard"]},
             {"name": "prose", "weight": 1, "shards": ["../shards/prose.shard"]},
             {"name": "py", "weight": 0, "shards": ["../shards/py.shard"]}]}
EOF
D=(--teacher "$T" --config "$CFG/tiny-r1.json" --batch 4 --seq 32 --lr 3e-3 --loss fkl --temperature 2 --quiet)

# 1. the mixture's weights per domain: source lines, rows drawn per domain, a distillation loss each step
ok "$M" distill "${D[@]}" --mixture "$W/mix/mixture.json" --steps 60 --out "$W/run" >"$W/run.log" 2>&1
grep -q "source 0: code, weight 0.750" "$W/run.log" || fail "code source line: $(grep source "$W/run.log")"
grep -q "source 1: prose, weight 0.250" "$W/run.log" || fail "prose source line: $(grep source "$W/run.log")"
grep -q "source 2" "$W/run.log" && fail "a weight-0 domain became a source"
$PY - "$W/run/metrics.jsonl" <<'PYEOF' || fail "rows per domain do not follow the mixture's weights"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"domain_rows"' in l]
assert len(recs) == 60 and all("kd" in r for r in recs), "not 60 distillation steps"
rows = [r["domain_rows"] for r in recs]
assert all(set(r) == {"code", "prose"} and sum(r.values()) == 4 for r in rows), rows[:3]
frac = sum(r["code"] for r in rows) / 240
print(f"code rows: {frac:.3f} of 240 (weight 0.75)")
assert 0.65 <= frac <= 0.85, frac  # 240 rows: the binomial sd is 0.028
PYEOF

# 2. the checkpoint records the file and the expanded sources (paths resolved against the file's folder)
$PY - "$W/run/ckpt_00000060.h5" "$W/mix/mixture.json" "$W/shards" <<'PYEOF' || fail "checkpoint does not record the mixture"
import h5py, json, os, sys
a = json.loads(h5py.File(sys.argv[1], "r").attrs["args_json"])
assert os.path.realpath(a["mixture"]) == os.path.realpath(sys.argv[2]), a["mixture"]
src = a["source"]
assert len(src) == 2, src
for s, (dom, w) in zip(src, (("code", 3), ("prose", 1))):
    path, weight, name = s.rsplit(":", 2)
    assert name == dom and float(weight) == w, s
    assert os.path.realpath(path) == os.path.realpath(os.path.join(sys.argv[3], dom + ".shard")), s
assert a.get("teacher"), "no teacher recorded"
PYEOF

# 3. resume: 10 steps == 4 (--stop-after) + resume, with the mixture file gone before the resume
cp -r "$W/mix" "$W/mix2"
ok "$M" distill "${D[@]}" --mixture "$W/mix2/mixture.json" --steps 10 --out "$W/full" >/dev/null 2>&1
ok "$M" distill "${D[@]}" --mixture "$W/mix2/mixture.json" --steps 10 --stop-after 4 --out "$W/half" >/dev/null 2>&1
rm -r "$W/mix2"
ok "$M" distill --resume "$W/half/ckpt_00000004.h5" --out "$W/half" --quiet >/dev/null 2>&1
same_state "$W/full/ckpt_00000010.h5" "$W/half/ckpt_00000010.h5" || fail "mixture resume differs from the full run"

# 4. bad mixture files: one line naming the problem, non-zero exit, no checkpoint
bad() { # NAME JSON
    local f="$W/mix/bad.json"
    printf '%s\n' "$2" >"$f"
    expect_fail "$1" "$W/bad/ckpt_00000002.h5" -- "$M" distill "${D[@]}" --mixture "$f" --steps 2 --out "$W/bad"
    grep -q "bad.json" "$W/stderr" || fail "$1: the message does not name the file"
}
bad "not JSON" '{"domains": [ {"name": "code", "weight": 1, '
bad "no domains array" '{"format": "mobilellm-mixture", "weights": {"code": 1}}'
bad "domain without a name" '{"domains": [{"weight": 1, "shards": ["../shards/code.shard"]}]}'
bad "negative weight" '{"domains": [{"name": "code", "weight": -1, "shards": ["../shards/code.shard"]},
 {"name": "prose", "weight": 2, "shards": ["../shards/prose.shard"]}]}'
bad "weight not a number" '{"domains": [{"name": "code", "weight": "1", "shards": ["../shards/code.shard"]}]}'
bad "weights sum to zero" '{"domains": [{"name": "code", "weight": 0, "shards": ["../shards/code.shard"]}]}'
bad "domain without shards" '{"domains": [{"name": "code", "weight": 1, "shards": []}]}'
bad "shard not a string" '{"domains": [{"name": "code", "weight": 1, "shards": [7]}]}'
bad "missing shard" '{"domains": [{"name": "code", "weight": 1, "shards": ["../shards/nope.shard"]}]}'
expect_fail "missing mixture file" "$W/bad/ckpt_00000002.h5" -- "$M" distill "${D[@]}" --mixture "$W/nope.json" \
    --steps 2 --out "$W/bad"
expect_fail "mixture and data" "$W/bad/ckpt_00000002.h5" -- "$M" distill "${D[@]}" --mixture "$W/mix/mixture.json" \
    --data "$W/shards/code.shard" --steps 2 --out "$W/bad"
expect_fail "mixture and source" "$W/bad/ckpt_00000002.h5" -- "$M" distill "${D[@]}" --mixture "$W/mix/mixture.json" \
    --source "$W/shards/code.shard:1" --steps 2 --out "$W/bad"
finish
