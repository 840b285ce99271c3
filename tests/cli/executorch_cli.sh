#!/bin/bash
# scripts/hf_to_executorch.py: the Meta-style checkpoint it writes reads back (torch.load), carries
# every tensor under ExecuTorch's names with the tied output duplicated, and - mapped back to HF names
# and run through the repo's PyTorch reference with the params.json settings - gives our logits.
# Sliding-window (Pro) models are refused.
# usage: executorch_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
TOK="72 101 108 108 111 44 32 119 111 114 108 100 33 10 73 116"
for preset in tiny-v1 tiny-r1; do
    ok "$M" init --config "$CFG/$preset.json" --seed 5 --out "$W/$preset.h5" >/dev/null
    ok "$M" export --ckpt "$W/$preset.h5" --out "$W/$preset.hf" >/dev/null
    ok "$PY" "$SRC/scripts/hf_to_executorch.py" "$W/$preset.hf" "$W/$preset.et" >/dev/null
    ok "$M" logits --ckpt "$W/$preset.h5" --tokens "$TOK" --out "$W/$preset.npy"
    $PY - "$SRC" "$W/$preset.et" "$W/$preset.hf" "$W/$preset.npy" "$TOK" <<'PYEOF' || fail "$preset: ExecuTorch checkpoint"
import json, os, sys
import numpy as np, torch
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "reference"))
from mobilellm_torch import MobileLLM, MobileLLMConfig, load_weights
sd = torch.load(os.path.join(sys.argv[2], "consolidated.pth"))
p = json.load(open(os.path.join(sys.argv[2], "params.json")))
hf = json.load(open(os.path.join(sys.argv[3], "config.json")))
assert torch.equal(sd["output.weight"], sd["tok_embeddings.weight"]), "tied output not duplicated"
assert p["n_layers"] == hf["num_hidden_layers"] and p["dim"] == hf["hidden_size"]
assert p["use_hf_rope"] == (hf["model_type"] == "llama") and p["use_qk_norm"] == bool(hf.get("use_qk_norm"))
ffn = "feed_forward" if hf["model_type"] == "llama4_text" else "mlp"
back = {"model.embed_tokens.weight": sd["tok_embeddings.weight"], "model.norm.weight": sd["norm.weight"]}
for i in range(p["n_layers"]):
    m, q = f"model.layers.{i}.", f"layers.{i}."
    for a, b in [("self_attn.q_proj", "attention.wq"), ("self_attn.k_proj", "attention.wk"),
                 ("self_attn.v_proj", "attention.wv"), ("self_attn.o_proj", "attention.wo"),
                 ("input_layernorm", "attention_norm"), ("post_attention_layernorm", "ffn_norm"),
                 (ffn + ".gate_proj", "feed_forward.w1"), (ffn + ".up_proj", "feed_forward.w3"),
                 (ffn + ".down_proj", "feed_forward.w2")]:
        back[m + a + ".weight"] = sd[q + b + ".weight"]
assert len(sd) == len(back) + 1, "unexpected tensors"
model = MobileLLM(MobileLLMConfig.from_hf_dict(hf))
load_weights(model, {k: v.numpy() for k, v in back.items()}, "executorch checkpoint")
ids = torch.tensor([[int(t) for t in sys.argv[5].split()]])
with torch.no_grad():
    ref = model(ids)[0].numpy()
ours = np.load(sys.argv[4])
err = np.abs(ours - ref).max() / np.abs(ref).max()
print(f"max rel diff {err:.2e}")
assert err < 1e-5
PYEOF
done
ok "$M" init --config "$CFG/tiny-pro.json" --out "$W/pro.h5" >/dev/null
ok "$M" export --ckpt "$W/pro.h5" --out "$W/pro.hf" >/dev/null
"$PY" "$SRC/scripts/hf_to_executorch.py" "$W/pro.hf" "$W/pro.et" 2>"$W/err" && fail "sliding-window model accepted"
grep -q "not supported" "$W/err" || fail "refusal message"
[ -e "$W/pro.et/consolidated.pth" ] && fail "refused conversion left a file"
finish
