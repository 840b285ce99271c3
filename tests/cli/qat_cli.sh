# qat / quantize end to end (tiny-v1: tied embedding, layer sharing, half-split RoPE):
#  - QAT with self-distillation resumes bit-exactly (q4_0; int4-channel-lsq with int8-token activations; int4-g32
#    with int8-token on the int8 engine), whose logits are the fake-quant forward's up to the stated bound;
#  - a QAT checkpoint exported to GGUF q4_0 holds, block for block and byte for byte, Q4_0 of its latent weights
#    computed here independently in NumPy (norms F32, the unquantized embedding F32);
#  - `logits` of the QAT checkpoint equal a PyTorch forward (tests/reference/mobilellm_torch.py) on weights
#    dequantized independently from the latent ones;
#  - llama.cpp's logits of that GGUF agree with ours, closer when our model rounds activations as llama.cpp does
#    (--act q8_0) (skipped without node-llama-cpp, see gguf_llamacpp.sh);
#  - bad input: unknown scheme, a group that does not divide a row, a checkpoint quantized with another scheme,
#    a teacher with another vocabulary, a --type that disagrees: one line, nothing written.
source "$(dirname "$0")/common.bash"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
CFG="$SRC/configs/tiny-v1.json"
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0; do cat "$f"; done >"$W/corpus.txt"
ok $M tokenize --tokenizer bytes --input "$W/corpus.txt" --out "$W/train.shard" >/dev/null
ok $M train --config "$CFG" --data "$W/train.shard" --batch 2 --seq 32 --steps 30 --lr 3e-3 --out "$W/fp" --quiet >/dev/null
FP="$W/fp/ckpt_00000030.h5"

# --- resume is bit-exact
Q=(--data "$W/train.shard" --batch 2 --seq 32 --steps 6 --quiet)
ok $M qat --init "$FP" --scheme q4_0 "${Q[@]}" --out "$W/full" >/dev/null
ok $M qat --init "$FP" --scheme q4_0 "${Q[@]}" --out "$W/half" --stop-after 3 >/dev/null
ok $M qat --resume "$W/half/ckpt_00000003.h5" --out "$W/half" --quiet >/dev/null
same_state "$W/full/ckpt_00000006.h5" "$W/half/ckpt_00000006.h5" || fail "q4_0 QAT resume differs"
L=(--scheme int4-channel-lsq --act int8-token --lr 1e-3)
ok $M qat --init "$FP" "${L[@]}" "${Q[@]}" --out "$W/lfull" >/dev/null
ok $M qat --init "$FP" "${L[@]}" "${Q[@]}" --out "$W/lhalf" --stop-after 2 >/dev/null
ok $M qat --resume "$W/lhalf/ckpt_00000002.h5" --out "$W/lhalf" --quiet >/dev/null
same_state "$W/lfull/ckpt_00000006.h5" "$W/lhalf/ckpt_00000006.h5" || fail "learned-scale QAT resume differs"
G=(--scheme int4-g32 --act int8-token --gemm-engine int8 --lr 1e-3) # the integer forward (model/ops/gemm_int8.h)
ok $M qat --init "$FP" "${G[@]}" "${Q[@]}" --out "$W/gfull" >/dev/null
ok $M qat --init "$FP" "${G[@]}" "${Q[@]}" --out "$W/ghalf" --stop-after 3 >/dev/null
ok $M qat --resume "$W/ghalf/ckpt_00000003.h5" --out "$W/ghalf" --quiet >/dev/null
same_state "$W/gfull/ckpt_00000006.h5" "$W/ghalf/ckpt_00000006.h5" || fail "QAT resume on the int8 engine differs"
$M info "$W/lfull/ckpt_00000006.h5" | grep -q "scheme=int4-channel-lsq embedding=none act=int8-token.*14 learned scale" ||
    fail "info does not show the scheme and the scales"
QAT="$W/full/ckpt_00000006.h5"

# --- bad input
expect_fail "unknown scheme" "$W/bad" -- $M qat --init "$FP" --scheme q4_1 "${Q[@]}" --out "$W/bad"
expect_fail "unknown scheme (quantize)" "$W/x.h5" -- $M quantize --ckpt "$FP" --scheme int3 --out "$W/x.h5"
expect_fail "group does not divide a row" "$W/x.h5" -- $M quantize --ckpt "$FP" --scheme int4-g128 --out "$W/x.h5"
expect_fail "unknown activation grid" "$W/x.h5" -- $M quantize --ckpt "$FP" --scheme q4_0 --act fp8 --out "$W/x.h5"
expect_fail "already quantized (quantize)" "$W/x.h5" -- $M quantize --ckpt "$QAT" --scheme q8_0 --out "$W/x.h5"
expect_fail "already quantized (qat)" "$W/bad2/ckpt_00000006.h5" -- $M qat --init "$QAT" --scheme int4-g32 "${Q[@]}" --out "$W/bad2"
sed 's/"vocab_size": 259/"vocab_size": 300/' "$CFG" >"$W/v300.json"
ok $M init --config "$W/v300.json" --out "$W/v300.h5" >/dev/null
expect_fail "teacher with another vocabulary" "$W/bad3/ckpt_00000006.h5" -- $M qat --init "$FP" --scheme q4_0 --teacher "$W/v300.h5" "${Q[@]}" --out "$W/bad3"
expect_fail "--type disagrees with the scheme" "$W/x.gguf" -- $M export --ckpt "$QAT" --format gguf --type q8_0 --out "$W/x.gguf"
expect_fail "int4 grid to a GGUF block type" "$W/x.gguf" -- $M export --ckpt "$W/lfull/ckpt_00000006.h5" --format gguf --type q4_0 --out "$W/x.gguf"
expect_fail "logits --act of a full-precision checkpoint" "$W/x.npy" -- $M logits --ckpt "$FP" --tokens "1 2" --act int8-token --out "$W/x.npy"
expect_fail "logits: unknown --act" "$W/x.npy" -- $M logits --ckpt "$QAT" --tokens "1 2" --act fp8 --out "$W/x.npy"

# --- GGUF q4_0 blocks byte for byte, PTQ checkpoint form, logits against PyTorch on dequantized weights
ok $M export --ckpt "$QAT" --format gguf --out "$W/qat.gguf" >/dev/null
ok $M quantize --ckpt "$FP" --scheme q4_0 --out "$W/ptq.h5" >/dev/null
ok $M export --ckpt "$W/ptq.h5" --format hf --out "$W/ptq-hf" >/dev/null
ok $M export --ckpt "$W/ptq.h5" --format hf --latent --out "$W/ptq-latent" >/dev/null
IDS="72 101 108 108 111 44 32 119 111 114 108 100 33 10 84 104 101 32 101 110 100 46 32 65"
ok $M logits --ckpt "$QAT" --tokens "$IDS" --out "$W/qat-ours.npy" >/dev/null
"$PY" - "$QAT" "$W/qat.gguf" "$CFG" "$W/qat-ours.npy" "$SRC/tests/reference" "$W/ptq.h5" "$W/ptq-hf" "$W/ptq-latent" "$FP" "$IDS" <<'EOF' || fail "GGUF blocks, HF export or logits differ"
import sys, struct, json
import numpy as np, h5py, torch
ckpt, gguf, cfgp, ours, refdir, ptq, hfdir, latdir, fp, ids = sys.argv[1:11]
sys.path.insert(0, refdir)
from mobilellm_torch import MobileLLM, MobileLLMConfig, load_weights, read_safetensors

def f16(x): return np.float32(x).astype(np.float16)
def q4_0_blocks(row):  # llama.cpp quantize_row_q4_0_ref, in NumPy float32
    out = bytearray()
    for b in range(0, row.size, 32):
        x = row[b:b + 32].astype(np.float32)
        i = int(np.argmax(np.abs(x)))  # first index of the largest magnitude
        d = np.float32(x[i] / np.float32(-8))
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        q = np.minimum(15, np.trunc(x * inv + np.float32(8.5)).astype(np.int64))
        out += f16(d).tobytes() + bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
    return bytes(out)
def dequant_q4_0(row):
    y = np.empty_like(row)
    for b in range(0, row.size, 32):
        x = row[b:b + 32]; i = int(np.argmax(np.abs(x))); d = np.float32(x[i] / np.float32(-8))
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        q = np.minimum(15, np.trunc(x * inv + np.float32(8.5)))
        y[b:b + 32] = (q - 8).astype(np.float32) * f16(d).astype(np.float32)
    return y

# minimal GGUF reader: tensor infos and data offsets
buf = open(gguf, "rb").read(); p = 0
def rd(fmt):
    global p; v = struct.unpack_from(fmt, buf, p); p += struct.calcsize(fmt); return v[0]
def rstr():
    global p; n = rd("<Q"); s = buf[p:p + n].decode(); p += n; return s
SIZES = {0: 1, 1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t):
    if t == 8: rstr()
    elif t == 9:
        et, n = rd("<I"), rd("<Q")
        for _ in range(n): skip(et)
    else:
        global p; p += SIZES[t]
assert buf[:4] == b"GGUF"; p = 4; rd("<I"); nt, nkv = rd("<Q"), rd("<Q"); align = 32
for _ in range(nkv):
    k = rstr(); t = rd("<I")
    if k == "general.alignment": align = rd("<I")
    else: skip(t)
infos = []
for _ in range(nt):
    name = rstr(); nd = rd("<I"); ne = [rd("<Q") for _ in range(nd)]; ty = rd("<I"); off = rd("<Q")
    infos.append((name, ne, ty, off))
base = (p + align - 1) // align * align
T = {n: (ne, ty, base + off) for n, ne, ty, off in infos}

h = h5py.File(ckpt, "r"); P = {k: h["params"][k][()] for k in h["params"]}
cfg = json.loads(h.attrs["config_json"]); L, rep = cfg["num_hidden_layers"], cfg.get("layer_repeat", 1)
H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
def perm(w, heads):  # half-split -> ggml adjacent pairs, per head
    o = np.array([h * D + j * (D // 2) + i for h in range(heads) for i in range(D // 2) for j in range(2)])
    return w[o]
names = {"attn_q": ("self_attn.q_proj", H), "attn_k": ("self_attn.k_proj", KV), "attn_v": ("self_attn.v_proj", 0),
         "attn_output": ("self_attn.o_proj", 0), "ffn_gate": ("mlp.gate_proj", 0), "ffn_up": ("mlp.up_proj", 0),
         "ffn_down": ("mlp.down_proj", 0)}
blocks = 0
for a in range(L * rep):
    l = a // rep
    for g, (hf, heads) in names.items():
        w = P[f"model.layers.{l}.{hf}.weight"]
        if heads: w = perm(w, heads)
        ne, ty, off = T[f"blk.{a}.{g}.weight"]
        assert ty == 2, f"blk.{a}.{g}: type {ty}, not Q4_0"
        want = b"".join(q4_0_blocks(r) for r in w)
        got = buf[off:off + len(want)]
        assert got == want, f"blk.{a}.{g}.weight: Q4_0 blocks differ"
        blocks += len(want) // 18
ne, ty, off = T["token_embd.weight"]
assert ty == 0 and np.array_equal(np.frombuffer(buf, np.float32, P["model.embed_tokens.weight"].size, off).reshape(P["model.embed_tokens.weight"].shape), P["model.embed_tokens.weight"]), "token_embd is not the F32 latent embedding"
assert T["output_norm.weight"][1] == 0 and T["blk.0.attn_norm.weight"][1] == 0, "norms are not F32"
print(f"GGUF q4_0: {blocks} blocks byte-identical to NumPy's Q4_0 of the latent weights; embedding and norms F32")

# logits of the QAT checkpoint = PyTorch forward on NumPy-dequantized weights
mc = MobileLLMConfig.from_json_file(cfgp); model = MobileLLM(mc)
deq = {k: (np.stack([dequant_q4_0(r) for r in v]) if v.ndim == 2 and "embed_tokens" not in k else v) for k, v in P.items()}
load_weights(model, deq, where=ckpt)
tok = torch.tensor([[int(t) for t in ids.split()]])
with torch.no_grad(): ref = model(tok)[0].numpy()
o = np.load(ours); err = float(np.abs(o - ref).max() / np.abs(ref).max())
print(f"logits of the QAT checkpoint vs PyTorch on dequantized weights: max|diff|/max|logit| = {err:.2e}")
assert err < 1e-5
# PTQ checkpoint: latent weights = the FP ones; HF export dequantized, --latent the latent
q, f = h5py.File(ptq, "r"), h5py.File(fp, "r")
recipe = q.attrs["quant"]  # fixed-length string attributes come back as bytes
assert (recipe.decode() if isinstance(recipe, bytes) else recipe) == "scheme=q4_0 embedding=none act=none"
assert all(np.array_equal(q["params"][k][()], f["params"][k][()]) for k in f["params"])
hfw, _ = read_safetensors(hfdir + "/model.safetensors"); lat, _ = read_safetensors(latdir + "/model.safetensors")
k = "model.layers.0.self_attn.v_proj.weight"
assert np.array_equal(hfw[k], np.stack([dequant_q4_0(r) for r in f["params"][k][()]])), "HF export is not dequantized"
assert np.array_equal(lat[k], f["params"][k][()]), "HF --latent export is not the latent weights"
print("quantize: latent weights kept, recipe stored; HF export dequantized (latent with --latent)")
EOF

# --- logits of a QAT checkpoint with int8-token activations: the int8 engine and the fake-quant forward
# (ML_GEMM_ENGINE picks it for commands without --gemm-engine) are different arithmetic within the stated bound
ML_GEMM_ENGINE=openblas ok $M logits --ckpt "$W/gfull/ckpt_00000006.h5" --tokens "$IDS" --out "$W/g-fq.npy" >/dev/null
ML_GEMM_ENGINE=int8 ok $M logits --ckpt "$W/gfull/ckpt_00000006.h5" --tokens "$IDS" --out "$W/g-i8.npy" >/dev/null
"$PY" - "$W/g-fq.npy" "$W/g-i8.npy" <<'EOF' || fail "int8 engine logits not within the bound of the fake-quant ones"
import sys, numpy as np
a, b = (np.load(p) for p in sys.argv[1:3])
e = float(np.abs(a - b).max() / np.abs(a).max())
print(f"logits, int8 engine vs fake-quant forward: max|diff|/max|logit| = {e:.2e}")
sys.exit(0 if 0 < e < 5e-2 else 1)
EOF

# --- llama.cpp: its logits of the q4_0 GGUF against ours, without and with activation rounding (q8_0)
NLC_VERSION=3.22.1
CACHE="${MOBILELLM_CACHE:-$HOME/.cache/mobilellm}/node-llama-cpp-$NLC_VERSION"
BIN="$CACHE/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
LLAMA_SRC="$CACHE/llama.cpp"
if [ -f "$BIN/libllama.v0.5.0.so" ] && [ -f "$LLAMA_SRC/include/llama.h" ] && command -v cc >/dev/null; then
    mkdir -p "$W/lib"
    ln -sf "$BIN/libllama.v0.5.0.so" "$W/lib/libllama.so"
    ln -sf "$BIN/libggml.v0.5.0.so" "$W/lib/libggml.so"
    ln -sf "$BIN/libggml-base.so" "$W/lib/libggml-base.so"
    cc -O2 -I"$LLAMA_SRC/include" -I"$LLAMA_SRC/ggml/include" "$SRC/tests/interop/gguf_logits.c" -L"$W/lib" -lllama \
        -lggml -lggml-base -Wl,-rpath,"$BIN" -o "$W/probe" || fail "gguf_logits.c does not compile"
    # the same latent weights and grids, computing with llama.cpp's activation rounding
    ok $M quantize --ckpt "$QAT" --scheme q4_0 --act q8_0 --out "$W/qat-act.h5" >/dev/null
    LIDS="256 $IDS"
    ok $M logits --ckpt "$QAT" --tokens "$LIDS" --out "$W/o-none.npy" >/dev/null
    ok $M logits --ckpt "$W/qat-act.h5" --tokens "$LIDS" --out "$W/o-act.npy" >/dev/null
    "$W/probe" "$W/qat.gguf" "$BIN" "$W/llama.npy" $LIDS 2>"$W/probe.err" || fail "llama.cpp: $(head -c 300 "$W/probe.err")"
    "$PY" - "$W/o-none.npy" "$W/o-act.npy" "$W/llama.npy" <<'EOF' || fail "llama.cpp's logits of the QAT GGUF are not closer with --act q8_0"
import sys, numpy as np
a, b, l = (np.load(p) for p in sys.argv[1:4])
e = [float(np.abs(x - l).max() / np.abs(l).max()) for x in (a, b)]
print(f"llama.cpp vs ours on the q4_0 QAT GGUF: max|diff|/max|logit| {e[0]:.2e} (act none), {e[1]:.2e} (act q8_0)")
sys.exit(0 if e[1] < e[0] and e[1] < 1e-3 else 1)
EOF
else
    echo "skip (llama.cpp part): node-llama-cpp is not installed (tests/cli/gguf_llamacpp.sh installs it)"
fi
finish
