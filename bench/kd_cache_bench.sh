#!/bin/bash
# Cost of a distillation step from a teacher-logit cache against a cross-entropy step, same model,
# data, batch and threads: median ms/step over the steps after the first (metrics.jsonl).
# usage: bench/kd_cache_bench.sh [CONFIG] [B] [T] [K] [STEPS]   (default mobilellm-125m 2 128 64 8)
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
M="$SRC/build/mobilellm"
CFG="$SRC/configs/${1:-mobilellm-125m}.json"
B=${2:-2} T=${3:-128} K=${4:-64} STEPS=${5:-8}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat "$SRC"/train/*.c "$SRC"/model/*.c "$SRC"/model/ops/*.c "$SRC"/formats/*.c >"$W/corpus.txt"
"$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --out "$W/d.shard" >/dev/null
"$M" init --config "$CFG" --out "$W/m.h5" >/dev/null
"$M" teacher-logits --teacher "$W/m.h5" --data "$W/d.shard" --batch $B --seq $T --topk $K --batches $STEPS \
    --out "$W/c.h5" --quiet
common=(--init "$W/m.h5" --data "$W/d.shard" --batch $B --seq $T --steps $STEPS --quiet)
"$M" train "${common[@]}" --out "$W/ce" >/dev/null
for tail in renorm bucket; do
    "$M" distill "${common[@]}" --cache "$W/c.h5" --tail $tail --out "$W/kd_$tail" >/dev/null
done
/usr/bin/python3 - "$W" "$(basename "$CFG" .json)" $B $T $K <<'PYEOF'
import json, statistics, sys
w, cfg, B, T, K = sys.argv[1:]
def ms(run):
    rows = [json.loads(l) for l in open(f"{w}/{run}/metrics.jsonl") if '"tokens_per_s"' in l][1:]
    return statistics.median(int(B) * int(T) / r["tokens_per_s"] * 1e3 for r in rows)
ce = ms("ce")
for tail in ("renorm", "bucket"):
    kd = ms("kd_" + tail)
    print(f"{cfg} B={B} T={T} top-{K}: cross-entropy step {ce:.0f} ms, KD from cache ({tail}) {kd:.0f} ms: {kd / ce:.3f}x")
PYEOF
