#!/bin/bash
# Anneal K domain specialists from one base checkpoint (MobileLLM-Pro's phase 3: each specialist continues
# the base on one domain with the learning rate decayed linearly to zero), then write a uniform recipe
# that merges them. Restartable: a specialist whose checkpoint exists is skipped.
#
#   scripts/anneal_specialists.sh BASE.h5 OUT_DIR DOMAIN=SHARD[,SHARD...]... [-- extra train options]
#
# Environment: STEPS (default 500, the paper's ~500 steps per specialist), LR (default 1e-5 as in the paper;
# raise it for small models trained here), BATCH, SEQ, M (the mobilellm binary).
# Then: mobilellm merge --config OUT_DIR/uniform.yaml --search --search-data DOMAIN=VAL_SHARD... --out OUT_DIR/best.yaml
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M=${M:-$ROOT/build/mobilellm}
[ $# -ge 3 ] || { sed -n 2,11p "$0" >&2; exit 2; }
BASE=$1 OUT=$2
shift 2
SPECS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do SPECS+=("$1"); shift; done
[ $# -gt 0 ] && shift
mkdir -p "$OUT"
{ echo "merge_method: linear"; echo "models:"; } >"$OUT/uniform.yaml.tmp"
for spec in "${SPECS[@]}"; do
    d=${spec%%=*} shards=${spec#*=}
    [ "$d" != "$spec" ] && [ -n "$d" ] || { echo "expected DOMAIN=SHARD, got $spec" >&2; exit 2; }
    if [ ! -e "$OUT/$d.h5" ]; then
        rm -rf "$OUT/run_$d"
        IFS=, read -ra files <<<"$shards"
        nice -n 5 "$M" train --init "$BASE" --data "${files[@]}" --steps "${STEPS:-500}" --lr "${LR:-1e-5}" \
            --schedule linear --min-lr-ratio 0 --warmup 0 --batch "${BATCH:-8}" --seq "${SEQ:-256}" \
            --out "$OUT/run_$d" --quiet "$@"
        cp "$(ls "$OUT/run_$d"/ckpt_*.h5 | tail -1)" "$OUT/$d.h5.tmp" && mv "$OUT/$d.h5.tmp" "$OUT/$d.h5"
    fi
    printf '  - model: %s\n    parameters: {weight: 1.0}\n' "$OUT/$d.h5" >>"$OUT/uniform.yaml.tmp"
done
mv "$OUT/uniform.yaml.tmp" "$OUT/uniform.yaml"
echo "specialists in $OUT; uniform recipe: $OUT/uniform.yaml"
