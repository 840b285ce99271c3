#!/bin/bash
# eval --data reports loss and perplexity per domain when the shards carry several domain labels:
# each domain's figure equals evaluating its shards alone, and the total is their token-weighted mean.
# usage: eval_domains.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
cat "$SRC"/train/*.c "$SRC"/model/*.c >"$W/c.txt"
cat "$SRC"/README.md "$SRC"/configs/README.md >"$W/doc.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/c.txt" --domain code --out "$W/code.shard" >/dev/null 2>&1
ok "$M" tokenize --tokenizer bytes --input "$W/doc.txt" --domain prose --out "$W/prose.shard" >/dev/null 2>&1
ok "$M" init --config "$SRC/configs/tiny-pro.json" --out "$W/m.h5" >/dev/null
E=(--ckpt "$W/m.h5" --batch 2 --seq 32 --max-batches 4)
ok "$M" eval "${E[@]}" --data "$W/code.shard" "$W/prose.shard" >"$W/both"
ok "$M" eval "${E[@]}" --data "$W/code.shard" >"$W/code"
ok "$M" eval "${E[@]}" --data "$W/prose.shard" >"$W/prose"
$PY - "$W/both" "$W/code" "$W/prose" <<'PYEOF' || fail "per-domain figures"
import json, sys
both = [json.loads(l) for l in open(sys.argv[1])]
code, prose = json.loads(open(sys.argv[2]).read()), json.loads(open(sys.argv[3]).read())
assert [d.get("domain") for d in both] == ["code", "prose", None], both
assert abs(both[0]["loss"] - code["loss"]) < 1e-6 and abs(both[1]["loss"] - prose["loss"]) < 1e-6
total = (both[0]["loss"] * both[0]["tokens"] + both[1]["loss"] * both[1]["tokens"]) / (both[0]["tokens"] + both[1]["tokens"])
assert abs(both[2]["loss"] - total) < 1e-6 and both[2]["tokens"] == both[0]["tokens"] + both[1]["tokens"]
print(both)
PYEOF
finish
