#!/bin/bash
# Import checkpoints that Hugging Face transformers itself wrote (tests/reference/fixtures/hf, made by
# tests/reference/make_hf_fixtures.py with transformers 5.17) and compare our logits with the
# logits transformers computed for them (default positions; position ids are covered by the golden test).
# Covers the llama (tied), llama4_text (QK-norm, a NoPE layer, feed_forward.*, intermediate_size_mlp)
# and ministral (per-layer sliding window, untied head; and the default layer_types) dialects.
# Tolerance: max |ours - transformers| <= 1e-4 * max |transformers|.
# usage: hf_fixtures.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
FIX="$SRC/tests/reference/fixtures/hf"
for name in llama llama4 ministral ministral_def; do
    D="$W/$name"
    # split the fixture into an HF directory (weights only) and the reference tokens/logits
    $PY - "$FIX/$name.json" "$FIX/$name.safetensors" "$D" <<'PYEOF' || { fail "$name: fixture split"; continue; }
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(sys.argv[2]), "..", ".."))
from mobilellm_torch import read_safetensors, write_safetensors
import numpy as np
cfg = json.load(open(sys.argv[1]))
# transformers' default llama4_text layer_types mark chunked attention (chunk 4096); for these
# 12-token inputs that is exactly full attention, which is what our importer supports.
if cfg.get("model_type") == "llama4_text":
    cfg["layer_types"] = ["full_attention"] * cfg["num_hidden_layers"]
t, _ = read_safetensors(sys.argv[2])
os.makedirs(sys.argv[3])
json.dump(cfg, open(os.path.join(sys.argv[3], "config.json"), "w"))
write_safetensors(os.path.join(sys.argv[3], "model.safetensors"),
                  {k: v for k, v in t.items() if k.startswith("model.") or k == "lm_head.weight"})
for k in ("tokens", "pos", "logits", "logits_pos"):
    np.save(os.path.join(sys.argv[3], k + ".npy"), t[k])
PYEOF
    ok "$M" import --from "$D" --out "$D.h5" >/dev/null
    for row in 0 1; do
        toks=$($PY -c "import numpy as n,sys; print(' '.join(map(str, n.load(sys.argv[1])[int(sys.argv[2])].astype(int))))" \
               "$D/tokens.npy" $row)
        ok "$M" logits --ckpt "$D.h5" --tokens "$toks" --out "$D/ours$row.npy"
        $PY - "$D/ours$row.npy" "$D/logits.npy" $row "$name" <<'PYEOF' || fail "$name row $row: logits differ from transformers"
import sys, numpy as np
ours, ref = np.load(sys.argv[1]), np.load(sys.argv[2])[int(sys.argv[3])]
err = np.abs(ours - ref).max() / np.abs(ref).max()
print(f"{sys.argv[4]} row {sys.argv[3]}: max rel diff {err:.2e}")
assert ours.shape == ref.shape and err <= 1e-4
PYEOF
    done
done
finish
