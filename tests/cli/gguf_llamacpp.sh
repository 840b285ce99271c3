# GGUF export checked in real llama.cpp: the refusals (R1 QK-norm, NoPE, Pro sliding windows, bad
# options: one line, no file), then logits of the exported file in llama.cpp against
# `mobilellm logits` for f32 / f16 / q8_0 / q4_0.
#
# llama.cpp comes from npm: node-llama-cpp@3.22.1 ships llama.cpp's sources (a git bundle, for the
# headers) and @node-llama-cpp/linux-x64 the prebuilt libllama / libggml of the same release. They
# are installed once into $MOBILELLM_CACHE (default ~/.cache/mobilellm)/node-llama-cpp, outside the
# repository. Without npm, git, a C compiler, x86-64 Linux or the network, the llama.cpp part is
# SKIPPED with a message (the refusal checks still run).
#
# Tolerances (max |diff| / max |logit| over every position and vocabulary entry): f32 1e-4 (measured
# 2.4e-7 tiny, 1.1e-6 on the 28M teacher); f16 5e-3 (5e-4); q8_0 5e-2 and top-1 >= 90% (1.9e-2,
# 99%); q4_0 0.5 and top-1 >= 60% (0.16-0.20, 80-92%). The teacher part (../shared) also checks that
# llama.cpp tokenizes llama.cpp's own SPM test strings with our exported vocabulary exactly as
# expected.
source "$(dirname "$0")/common.bash"

# --- refusals and bad options (no llama.cpp needed) ---
ok $M init --config "$SRC/configs/tiny-r1.json" --seed 1 --out "$W/r1.h5" >/dev/null
ok $M init --config "$SRC/configs/tiny-pro.json" --seed 1 --out "$W/pro.h5" >/dev/null
ok $M init --config "$SRC/configs/tiny-v1.json" --seed 1 --out "$W/v1.h5" >/dev/null
sed 's/"use_qk_norm": true/"use_qk_norm": false/' "$SRC/configs/tiny-r1.json" >"$W/adjacent.json"
sed 's/"no_rope_layers": \[1, 1\]/"no_rope_layers": [1, 0]/' "$W/adjacent.json" >"$W/nope.json"
ok $M init --config "$W/adjacent.json" --seed 3 --out "$W/adj.h5" >/dev/null
ok $M init --config "$W/nope.json" --seed 3 --out "$W/nope.h5" >/dev/null

expect_fail "R1 (QK-norm) refused" "$W/r1.gguf" -- $M export --ckpt "$W/r1.h5" --format gguf --out "$W/r1.gguf"
grep -q 'QK-norm' "$W/stderr" || fail "R1 refusal does not say QK-norm"
expect_fail "Pro (sliding window) refused" "$W/pro.gguf" -- $M export --ckpt "$W/pro.h5" --format gguf --out "$W/pro.gguf"
grep -q 'sliding-window' "$W/stderr" || fail "Pro refusal does not say sliding-window"
expect_fail "NoPE layer refused" "$W/nope.gguf" -- $M export --ckpt "$W/nope.h5" --format gguf --out "$W/nope.gguf"
grep -q 'NoPE' "$W/stderr" || fail "NoPE refusal does not say NoPE"
expect_fail "bad --type" "$W/x.gguf" -- $M export --ckpt "$W/v1.h5" --format gguf --out "$W/x.gguf" --type q5_k
expect_fail "--dtype with gguf" "$W/x.gguf" -- $M export --ckpt "$W/v1.h5" --format gguf --out "$W/x.gguf" --dtype f16
expect_fail "--type with hf" "$W/hfdir" -- $M export --ckpt "$W/v1.h5" --format hf --out "$W/hfdir" --type f16
expect_fail "missing tokenizer file" "$W/x.gguf" -- $M export --ckpt "$W/v1.h5" --format gguf --out "$W/x.gguf" --tokenizer "$W/none.model"
echo "not a protobuf" >"$W/bad.model"
expect_fail "tokenizer not SentencePiece" "$W/x.gguf" -- $M export --ckpt "$W/v1.h5" --format gguf --out "$W/x.gguf" --tokenizer "$W/bad.model"
for t in f32 f16 q8_0 q4_0; do
    ok $M export --ckpt "$W/v1.h5" --format gguf --out "$W/v1-$t.gguf" --type $t >/dev/null
done
ok $M export --ckpt "$W/adj.h5" --format gguf --out "$W/adj-f32.gguf" >/dev/null
# a byte-level BPE tokenizer.json (tokenizer train) as llama.cpp's gpt2 vocabulary with the llama-bpe pre-tokenizer
cat "$SRC/README.md" "$SRC/docs/ARCHITECTURE.md" >"$W/bpe.txt"
ok $M tokenizer train --vocab 400 --input "$W/bpe.txt" --out "$W/bpe.json" >/dev/null
sed -e 's/"vocab_size": 259/"vocab_size": 400/' -e 's/"bos_token_id": 256/"bos_token_id": 398/' \
    -e 's/"eos_token_id": 257/"eos_token_id": 399/' -e 's/"pad_token_id": 258/"pad_token_id": 399/' \
    "$SRC/configs/tiny-v1.json" >"$W/bpe-cfg.json"
ok $M init --config "$W/bpe-cfg.json" --seed 4 --out "$W/bpe.h5" >/dev/null
ok $M export --ckpt "$W/bpe.h5" --format gguf --out "$W/bpe-f32.gguf" --tokenizer "$W/bpe.json" >/dev/null
for key in tokenizer.ggml.merges gpt2 llama-bpe; do grep -q -a "$key" "$W/bpe-f32.gguf" || fail "BPE GGUF lacks $key"; done
$PY - "$W/bpe.json" "$W/bpe-prefix.json" <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1]))
t["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True
json.dump(t, open(sys.argv[2], "w"))
PYEOF
expect_fail "BPE pre-tokenizer llama.cpp cannot name" "$W/x.gguf" -- $M export --ckpt "$W/bpe.h5" --format gguf --out "$W/x.gguf" --tokenizer "$W/bpe-prefix.json"
expect_fail "BPE vocabulary larger than the model's" "$W/x.gguf" -- $M export --ckpt "$W/v1.h5" --format gguf --out "$W/x.gguf" --tokenizer "$W/bpe.json"

# --- llama.cpp ---
skip() { skip_part "llama.cpp part: $*"; finish; }
[ "$(uname -sm)" = "Linux x86_64" ] || skip "prebuilt llama.cpp is used on x86-64 Linux only"
command -v npm >/dev/null || skip "npm is not installed (apt-get install npm)"
command -v git >/dev/null || skip "git is not installed (needed to unpack llama.cpp's headers)"
command -v cc >/dev/null || skip "no C compiler"
NLC_VERSION=3.22.1
CACHE="${MOBILELLM_CACHE:-$HOME/.cache/mobilellm}/node-llama-cpp-$NLC_VERSION"
BIN="$CACHE/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
LLAMA_SRC="$CACHE/llama.cpp"
if [ ! -f "$BIN/libllama.v0.5.0.so" ] || [ ! -f "$LLAMA_SRC/include/llama.h" ]; then
    echo "installing node-llama-cpp@$NLC_VERSION into $CACHE (once)"
    mkdir -p "$CACHE" || skip "cannot create $CACHE"
    [ -f "$CACHE/package.json" ] || echo '{"name":"mobilellm-interop","private":true}' >"$CACHE/package.json"
    (cd "$CACHE" && timeout 600 npm install --omit=optional --ignore-scripts --no-audit --no-fund \
        "node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-x64@$NLC_VERSION" >npm.log 2>&1) ||
        skip "npm install failed (no network?); see $CACHE/npm.log"
    rm -rf "$LLAMA_SRC"
    git clone -q "$CACHE/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$LLAMA_SRC" 2>/dev/null ||
        skip "cannot unpack llama.cpp's sources from the npm package"
fi
[ -f "$BIN/libllama.v0.5.0.so" ] || skip "the npm package has no libllama.v0.5.0.so"
mkdir -p "$W/lib"
ln -sf "$BIN/libllama.v0.5.0.so" "$W/lib/libllama.so"
ln -sf "$BIN/libggml.v0.5.0.so" "$W/lib/libggml.so"
ln -sf "$BIN/libggml-base.so" "$W/lib/libggml-base.so"
PROBE="$W/gguf_logits"
cc -O2 -I"$LLAMA_SRC/include" -I"$LLAMA_SRC/ggml/include" "$SRC/tests/interop/gguf_logits.c" \
    -L"$W/lib" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN" -o "$PROBE" || { fail "gguf_logits.c does not compile"; finish; exit 1; }
"$PY" -c "import numpy" 2>/dev/null || skip "$PY has no numpy (apt-get install python3-numpy)"

# compare NAME OURS.npy THEIRS.npy REL_TOL MIN_TOP1
compare() {
    "$PY" - "$@" <<'EOF'
import sys
import numpy as np
name, ours, theirs, tol, min_top1 = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
if ours.shape != theirs.shape:
    print(f"{name}: shapes differ {ours.shape} vs {theirs.shape}"); sys.exit(1)
rel = float(np.abs(ours - theirs).max() / np.abs(ours).max())
top1 = float((ours.argmax(1) == theirs.argmax(1)).mean())
print(f"{name}: max|diff|/max|logit| = {rel:.3g}, top-1 agreement {100 * top1:.1f}% ({ours.shape[0]} positions)")
sys.exit(0 if rel <= tol and top1 >= min_top1 else 1)
EOF
}
# tolerances per type: relative error, top-1
tol() { case $1 in f32) echo "1e-4 1.0";; f16) echo "5e-3 0.95";; q8_0) echo "5e-2 0.9";; q4_0) echo "0.5 0.6";; esac; }

# tiny-v1: layer sharing (4 applied blocks from 2), tied embeddings, half-split RoPE (Q/K permuted),
# byte vocabulary; random weights, so a wrong permutation or block order shows.
IDS="256 72 101 108 108 111 44 32 119 111 114 108 100 33 10 84 104 101 32 101 110 100 46 257"
ok $M logits --ckpt "$W/v1.h5" --tokens "$IDS" --out "$W/v1-ours.npy" >/dev/null
for t in f32 f16 q8_0 q4_0; do
    if "$PROBE" "$W/v1-$t.gguf" "$BIN" "$W/v1-$t-llama.npy" $IDS 2>"$W/probe.err"; then
        compare "tiny-v1 $t" "$W/v1-ours.npy" "$W/v1-$t-llama.npy" $(tol $t) || fail "tiny-v1 $t: llama.cpp logits differ"
    else
        fail "tiny-v1 $t: llama.cpp: $(head -c 500 "$W/probe.err")"
    fi
done
# adjacent-pair RoPE without QK-norm (llama4_text dialect): written without the permutation
ok $M logits --ckpt "$W/adj.h5" --tokens "$IDS" --out "$W/adj-ours.npy" >/dev/null
"$PROBE" "$W/adj-f32.gguf" "$BIN" "$W/adj-llama.npy" $IDS && compare "adjacent-RoPE f32" "$W/adj-ours.npy" "$W/adj-llama.npy" 1e-4 1.0 ||
    fail "adjacent RoPE: llama.cpp logits differ"

# The BPE vocabulary: llama.cpp splits text into our ids, and computes our logits on them
sed -n '1,40p' "$SRC/docs/merge.md" >"$W/bpe-probe.txt"
printf 'def f(x):\n\treturn x  # ünïcode — 12345\n' >>"$W/bpe-probe.txt"
"$PROBE" "$W/bpe-f32.gguf" "$BIN" --tokenize "$W/bpe-probe.txt" | tr -s ' \n' ' ' >"$W/bpe-llama.ids" || fail "llama.cpp cannot tokenize with the BPE vocabulary"
$M tokenizer encode --tokenizer "$W/bpe.json" <"$W/bpe-probe.txt" | tr -s ' \n' ' ' >"$W/bpe-ours.ids" # (the file: one string)
if [ -s "$W/bpe-ours.ids" ] && cmp -s "$W/bpe-llama.ids" "$W/bpe-ours.ids"; then
    echo "BPE: llama.cpp splits $(wc -c <"$W/bpe-probe.txt") bytes into the same $(wc -w <"$W/bpe-ours.ids") ids as we do"
else
    fail "BPE vocabulary: llama.cpp's ids differ from ours"
fi
BIDS="398 $(cut -d' ' -f1-100 "$W/bpe-ours.ids")"
ok $M logits --ckpt "$W/bpe.h5" --tokens "$BIDS" --out "$W/bpe-ours.npy" >/dev/null
"$PROBE" "$W/bpe-f32.gguf" "$BIN" "$W/bpe-llama.npy" $BIDS && compare "BPE vocabulary f32" "$W/bpe-ours.npy" "$W/bpe-llama.npy" 1e-4 1.0 ||
    fail "BPE vocabulary: llama.cpp logits differ"

# The GPU-trained teacher with the Llama-2 SentencePiece vocabulary, on real text.
TEACHER="$SHARED/teachers/mobilellm-28m-llama2tok"
SPM="$SHARED/tokenizers/llama2-spm-32000.model"
if need_shared "$TEACHER" "$SPM" "$SHARED/tokenizers/llamacpp-ggml-vocab-llama-spm.gguf.inp" "$SHARED/data/stories/tinystories_valid_prefix.txt"; then
    ok $M import --from "$TEACHER" --out "$W/teacher.h5" >/dev/null
    for t in f32 f16 q8_0 q4_0; do
        ok $M export --ckpt "$W/teacher.h5" --format gguf --out "$W/t-$t.gguf" --type $t --tokenizer "$SPM" >/dev/null
    done
    INP="$SHARED/tokenizers/llamacpp-ggml-vocab-llama-spm.gguf.inp"
    "$PROBE" "$W/t-f32.gguf" "$BIN" --tokenize "$INP" >"$W/tok.out" || fail "llama.cpp cannot tokenize with the exported vocabulary"
    if diff -q <(sed 's/^ *//' "${INP%.inp}.out") "$W/tok.out" >/dev/null; then
        echo "teacher: llama.cpp tokenizes its $(grep -c '' "$W/tok.out") SPM test strings with the exported vocabulary as expected"
    else
        fail "exported SPM vocabulary: llama.cpp's tokenization differs from ${INP%.inp}.out"
    fi
    head -c 600 "$SHARED/data/stories/tinystories_valid_prefix.txt" >"$W/story.txt"
    TIDS="1 $("$PROBE" "$W/t-f32.gguf" "$BIN" --tokenize "$W/story.txt" | head -1 | cut -d' ' -f1-127)"
    ok $M logits --ckpt "$W/teacher.h5" --tokens "$TIDS" --out "$W/t-ours.npy" >/dev/null
    for t in f32 f16 q8_0 q4_0; do
        if "$PROBE" "$W/t-$t.gguf" "$BIN" "$W/t-$t-llama.npy" $TIDS 2>"$W/probe.err"; then
            compare "teacher $t" "$W/t-ours.npy" "$W/t-$t-llama.npy" $(tol $t) || fail "teacher $t: llama.cpp logits differ"
        else
            fail "teacher $t: llama.cpp: $(head -c 500 "$W/probe.err")"
        fi
    done
fi
finish
