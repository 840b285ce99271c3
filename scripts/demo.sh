#!/usr/bin/env bash
# The demo: train a small MobileLLM-style model on this machine's Python standard library (byte
# tokens), show the loss falling, and leave a checkpoint, a loss plot and a Hugging Face export.
# Usage: scripts/demo.sh [STEPS]        (default 200 steps: a few minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-200}
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
M=build/mobilellm
OUT=runs/demo
mkdir -p "$OUT"
STDLIB=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
echo "== tokenizing the Python standard library in $STDLIB (bytes)"
$M tokenize --tokenizer bytes --input "$STDLIB" --out "$OUT/train.shard" --val-fraction 0.02 --val-out "$OUT/val.shard"
echo "== training configs/demo-10m.json for $STEPS steps of 8 x 256 tokens"
rm -f "$OUT"/run/ckpt_*.h5
$M train --config configs/demo-10m.json --data "$OUT/train.shard" --val "$OUT/val.shard" --batch 8 --seq 256 \
    --steps "$STEPS" --lr 2e-3 --warmup 20 --schedule cosine --eval-every 50 --eval-batches 4 --ckpt-every 50 \
    --out "$OUT/run"
CKPT=$(ls "$OUT"/run/ckpt_*.h5 | tail -1)
echo "== the loss, every 25 steps"
/usr/bin/python3 - "$OUT/run/metrics.jsonl" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "val_loss" in r:
        print(f"  step {r['step']:5d}  held-out loss {r['val_loss']:.3f} (perplexity {r['val_ppl']:.2f})")
    elif r["step"] == 1 or r["step"] % 25 == 0:
        print(f"  step {r['step']:5d}  training loss {r['loss']:.3f}")
PYEOF
/usr/bin/python3 scripts/plot_metrics.py "$OUT/run/metrics.jsonl" "$OUT/loss.svg" >/dev/null
$M export --ckpt "$CKPT" --format hf --out "$OUT/hf" --tokenizer bytes
echo "== done: checkpoint $CKPT, loss plot $OUT/loss.svg, Hugging Face export $OUT/hf"
