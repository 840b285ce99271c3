#!/bin/bash
# scripts/hf_to_executorch.py: the Meta-style checkpoint it writes reads back (torch.load), carries
# every tensor under ExecuTorch's names with the tied output duplicated, and - mapped back to HF names
# and run through the repo's PyTorch reference with the params.json settings - gives our logits.
# Sliding-window (Pro) models are refused. --8da4w 32 of an int4-g32 checkpoint: every linear layer as int4 values
# and scales whose product is the exported (dequantized) weight bit for bit, zero zeros, params.json's
# quantization_args; a model off the grid or a group size that does not divide a row is refused, nothing written.
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
ok "$M" quantize --ckpt "$W/tiny-v1.h5" --scheme int4-g32 --out "$W/q.h5" >/dev/null
ok "$M" export --ckpt "$W/q.h5" --out "$W/q.hf" >/dev/null
ok "$PY" "$SRC/scripts/hf_to_executorch.py" "$W/q.hf" "$W/q.et" --8da4w 32 >/dev/null
$PY - "$SRC" "$W/q.et" "$W/q.hf" <<'PYEOF' || fail "--8da4w: pre-quantized layers"
import json, os, sys
import torch
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "reference"))
from mobilellm_torch import load_hf_weights
sd = torch.load(os.path.join(sys.argv[2], "consolidated.pth"))
p = json.load(open(os.path.join(sys.argv[2], "params.json")))
hf = {k: torch.from_numpy(v.copy()) for k, v in load_hf_weights(sys.argv[3]).items()}
assert p["quantization_args"] == {"group_size": 32}, p
n = 0
for i in range(p["n_layers"]):
    for a, b in [("self_attn.q_proj", "attention.wq"), ("self_attn.o_proj", "attention.wo"), ("mlp.down_proj", "feed_forward.w2"),
                 ("mlp.gate_proj", "feed_forward.w1"), ("mlp.up_proj", "feed_forward.w3"), ("self_attn.k_proj", "attention.wk"),
                 ("self_attn.v_proj", "attention.wv")]:
        q, s, z = (sd[f"layers.{i}.{b}.{t}"] for t in ("weight", "scales", "zeros"))
        w = hf[f"model.layers.{i}.{a}.weight"]
        assert q.dtype == torch.int8 and int(q.min()) >= -8 and int(q.max()) <= 7
        assert s.dtype == torch.float32 and s.shape == (w.shape[0], w.shape[1] // 32) and not z.any()
        deq = (q.float().reshape(w.shape[0], -1, 32) * s[..., None]).reshape(w.shape)
        assert torch.equal(deq, w), f"{b}: q * scale is not the exported weight"
        n += 1
assert sd["output.weight"].dtype == torch.float32 and "output.scales" not in sd
print(f"{n} linear layers pre-quantized exactly")
PYEOF
"$PY" "$SRC/scripts/hf_to_executorch.py" "$W/tiny-v1.hf" "$W/off.et" --8da4w 32 2>"$W/err" && fail "off-grid model accepted"
grep -q "is not on the int4 group-32 grid" "$W/err" || fail "off-grid message: $(cat "$W/err")"
"$PY" "$SRC/scripts/hf_to_executorch.py" "$W/q.hf" "$W/g.et" --8da4w 128 2>"$W/err" && fail "group 128 accepted"
grep -q "must divide every linear" "$W/err" || fail "group message: $(cat "$W/err")"
[ -e "$W/off.et/consolidated.pth" ] || [ -e "$W/g.et/consolidated.pth" ] && fail "refused conversion left a file"
ok "$M" init --config "$CFG/tiny-pro.json" --out "$W/pro.h5" >/dev/null
ok "$M" export --ckpt "$W/pro.h5" --out "$W/pro.hf" >/dev/null
"$PY" "$SRC/scripts/hf_to_executorch.py" "$W/pro.hf" "$W/pro.et" 2>"$W/err" && fail "sliding-window model accepted"
grep -q "not supported" "$W/err" || fail "refusal message"
[ -e "$W/pro.et/consolidated.pth" ] && fail "refused conversion left a file"
finish
