#!/bin/bash
# CLI tests of init / train / resume / eval / logits / info / export / import:
# bit-exact resume (split run and Ctrl-C), checkpoint contents, and bad input (truncated or
# corrupted checkpoint, invalid config, missing file, token id out of range, non-shard data).
# usage: train_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"

# Data: this repository's own C sources (always present, deterministic for a commit).
cat "$SRC"/train/*.c "$SRC"/model/*.c "$SRC"/model/ops/*.c >"$W/corpus.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" \
    --val-fraction 0.1 --val-out "$W/val.shard" >/dev/null 2>&1


A=(--data "$W/train.shard" --batch 3 --seq 32 --lr 3e-3 --warmup 2 --quiet)
# 1. one run of 12 steps == 6 steps (--stop-after, same cosine schedule) + resume to 12
ok "$M" train --config "$CFG/tiny-pro.json" "${A[@]}" --steps 12 --out "$W/full" >/dev/null
ok "$M" train --config "$CFG/tiny-pro.json" "${A[@]}" --steps 12 --stop-after 6 --out "$W/split" >/dev/null
[ -f "$W/split/ckpt_00000006.h5" ] || fail "no checkpoint at the stop"
ok "$M" train --resume "$W/split/ckpt_00000006.h5" --out "$W/split" --quiet >/dev/null
same_state "$W/full/ckpt_00000012.h5" "$W/split/ckpt_00000012.h5" || fail "split run differs from the full run"

# 2. constant schedule: --steps 5, then resume with --steps 10 == --steps 10 (layer sharing, grad accum)
B=(--data "$W/train.shard" --batch 2 --seq 16 --grad-accum 2 --schedule constant --lr 1e-3 --quiet)
ok "$M" train --config "$CFG/tiny-v1.json" "${B[@]}" --steps 10 --out "$W/c10" >/dev/null
ok "$M" train --config "$CFG/tiny-v1.json" "${B[@]}" --steps 5 --out "$W/c5" >/dev/null
ok "$M" train --resume "$W/c5/ckpt_00000005.h5" --steps 10 --out "$W/c5" >/dev/null
same_state "$W/c10/ckpt_00000010.h5" "$W/c5/ckpt_00000010.h5" || fail "resumed constant-lr run differs"

# 3. SGD with momentum also resumes exactly (momentum buffer in the checkpoint)
S=(--data "$W/train.shard" --batch 2 --seq 16 --optim sgd --momentum 0.9 --lr 0.05 --quiet)
ok "$M" train --config "$CFG/tiny-r1.json" "${S[@]}" --steps 8 --out "$W/s8" >/dev/null
ok "$M" train --config "$CFG/tiny-r1.json" "${S[@]}" --steps 8 --stop-after 3 --out "$W/s3" >/dev/null
ok "$M" train --resume "$W/s3/ckpt_00000003.h5" --out "$W/s3" >/dev/null
same_state "$W/s8/ckpt_00000008.h5" "$W/s3/ckpt_00000008.h5" || fail "resumed SGD run differs"

# 3b. packed documents with a document mask, restarting positions and a raised RoPE theta resume exactly
P=(--config "$CFG/tiny-pro.json" --data "$W/train.shard" --batch 2 --seq 64 --steps 6 --doc-mask --doc-positions
   --rope-theta 50000 --quiet)
ok "$M" train "${P[@]}" --out "$W/p6" >/dev/null
ok "$M" train "${P[@]}" --stop-after 3 --out "$W/p3" >/dev/null
ok "$M" train --resume "$W/p3/ckpt_00000003.h5" --out "$W/p3" >/dev/null
same_state "$W/p6/ckpt_00000006.h5" "$W/p3/ckpt_00000006.h5" || fail "packed/masked run resumed differently"
$PY -c "import h5py, json, sys; assert json.loads(h5py.File(sys.argv[1], 'r').attrs['config_json'])['rope_theta'] == 50000" \
    "$W/p3/ckpt_00000006.h5" || fail "raised RoPE theta not kept in the checkpoint"

# 3c. activation recomputation changes memory, not results
ok "$M" train "${P[@]}" --recompute --out "$W/r6" >/dev/null
same_state "$W/p6/ckpt_00000006.h5" "$W/r6/ckpt_00000006.h5" || fail "--recompute changed the training result"

# 4. Ctrl-C: a usable checkpoint, no temporary files, and the resumed run matches an uninterrupted one
C=(--data "$W/train.shard" --batch 2 --seq 32 --schedule constant --lr 1e-3)
"$M" train --config "$CFG/tiny-v1.json" "${C[@]}" --steps 100000 --out "$W/int" >"$W/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    [ -f "$W/int/metrics.jsonl" ] && [ "$(wc -l <"$W/int/metrics.jsonl")" -ge 5 ] && break
    sleep 0.05
done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "interrupted train exited $rc, expected 130"
ck=$(ls "$W"/int/ckpt_*.h5 2>/dev/null | tail -1)
[ -n "$ck" ] || fail "no checkpoint after Ctrl-C"
find "$W/int" -name '*.tmp.*' | grep -q . && fail "temporary file left after Ctrl-C"
if [ -n "$ck" ]; then
    n=$(basename "$ck" .h5 | sed 's/ckpt_0*//')
    ok "$M" info "$ck" >/dev/null
    ok "$M" train --resume "$ck" --steps $((n + 3)) --out "$W/int" --quiet >/dev/null
    ok "$M" train --config "$CFG/tiny-v1.json" "${C[@]}" --steps $((n + 3)) --out "$W/ref" --quiet >/dev/null
    same_state "$W/int/ckpt_$(printf %08d $((n + 3))).h5" "$W/ref/ckpt_$(printf %08d $((n + 3))).h5" ||
        fail "run interrupted at step $n and resumed differs from an uninterrupted one"
fi

# 5. checkpoint contents: HF names, run arguments, and readable by h5py
CK="$W/full/ckpt_00000012.h5"
$PY - "$CK" <<'PYEOF' || fail "checkpoint layout"
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
# string attributes are fixed-length (h5py gives bytes); older checkpoints have variable-length ones (str)
a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
assert a["format"] == "mobilellm-checkpoint" and a["step"] == 12
assert "model.layers.0.self_attn.q_proj.weight" in f["params"] and "lm_head.weight" not in f["params"]
assert set(f["optim"]) == {"exp_avg", "exp_avg_sq"}
assert json.loads(a["config_json"])["model_type"] == "ministral"
assert json.loads(a["args_json"])["steps"] == 12
PYEOF

# 6. eval, logits, info, init
ok "$M" eval --ckpt "$CK" --data "$W/val.shard" --batch 2 --seq 32 >"$W/eval.json"
grep -q '"perplexity"' "$W/eval.json" || fail "eval output"
ok "$M" logits --ckpt "$CK" --tokens "72 101 108 108 111 32 119 111 114 108 100" --out "$W/l.npy"
$PY -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(11,259) and a.dtype==n.float32" "$W/l.npy" ||
    fail "logits shape"
ok "$M" init --config "$CFG/tiny-r1.json" --seed 3 --out "$W/r1.h5" >/dev/null
"$M" info "$W/r1.h5" | grep -q "parameters   78336" || fail "tiny-r1 parameter count"

# 7. export -> import -> export reproduces every byte of the safetensors file
ok "$M" export --ckpt "$CK" --format hf --out "$W/hf" >/dev/null
ok "$M" import --from "$W/hf" --out "$W/re.h5" >/dev/null
ok "$M" export --ckpt "$W/re.h5" --format hf --out "$W/hf2" >/dev/null
cmp -s "$W/hf/model.safetensors" "$W/hf2/model.safetensors" || fail "export/import/export changed the weights"
cmp -s "$W/hf/config.json" "$W/hf2/config.json" || fail "export/import/export changed config.json"
# ... and bf16 export of a trained model round-trips exactly too
ok "$M" export --ckpt "$CK" --out "$W/hfb" --dtype bf16 >/dev/null
ok "$M" import --from "$W/hfb" --out "$W/reb.h5" >/dev/null
ok "$M" export --ckpt "$W/reb.h5" --out "$W/hfb2" >/dev/null
cmp -s "$W/hfb/model.safetensors" "$W/hfb2/model.safetensors" || fail "bf16 round trip"
# config.json names the weights' dtype under "dtype" (transformers >= 4.56) and "torch_dtype" (older)
for k in dtype torch_dtype; do
    grep -q "\"$k\": \"bfloat16\"" "$W/hfb/config.json" || fail "bf16 export: config.json $k is not bfloat16"
    grep -q "\"$k\": \"float32\"" "$W/hf/config.json" || fail "f32 export: config.json $k is not float32"
done
ok "$M" export --ckpt "$CK" --out "$W/hfh" --dtype f16 >/dev/null
grep -q '"dtype": "float16"' "$W/hfh/config.json" || fail "f16 export: config.json dtype is not float16"
# tokenizer files beside the weights: the byte tokenizer as a byte-level tokenizer.json
ok "$M" export --ckpt "$CK" --out "$W/hft" --tokenizer bytes >/dev/null
$PY - "$W/hft" <<'PYEOF' || fail "byte tokenizer.json"
import json, sys
t = json.load(open(sys.argv[1] + "/tokenizer.json")); c = json.load(open(sys.argv[1] + "/tokenizer_config.json"))
v = t["model"]["vocab"]
assert len(v) == 256 and sorted(v.values()) == list(range(256)) and v["\u0120"] == 32 and t["model"]["merges"] == []
assert [a["id"] for a in t["added_tokens"]] == [256, 257, 258] and c["eos_token"] == "</s>"
PYEOF
# layer sharing is unrolled for transformers: 2 blocks x 2 applications -> 4 HF layers
ok "$M" export --ckpt "$W/c10/ckpt_00000010.h5" --out "$W/hf_ls" >/dev/null
grep -q '"num_hidden_layers": 4' "$W/hf_ls/config.json" || fail "layer-shared export not unrolled"
# the real GPU-trained teacher (sharded BF16): import then export is byte-identical per tensor
T=$SHARED/teachers/mobilellm-28m-llama2tok
if need_shared "$T"; then
    ok "$M" import --from "$T" --out "$W/teacher.h5" >/dev/null
    ok "$M" export --ckpt "$W/teacher.h5" --out "$W/teacher_hf" >/dev/null
    $PY - "$T" "$W/teacher_hf/model.safetensors" <<'PYEOF' || fail "teacher round trip"
import json, os, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n; out = {}
        for k, v in h.items():
            if k == "__metadata__": continue
            f.seek(base + v["data_offsets"][0])
            out[k] = (v["dtype"], v["shape"], f.read(v["data_offsets"][1] - v["data_offsets"][0]))
        return out
src = sys.argv[1]
orig = {}
for fn in set(json.load(open(os.path.join(src, "model.safetensors.index.json")))["weight_map"].values()):
    orig.update(load(os.path.join(src, fn)))
new = load(sys.argv[2])
assert orig.keys() == new.keys() and all(orig[k] == new[k] for k in orig), "tensors differ"
PYEOF
fi

# 8. bad input
head -c 20000 "$CK" >"$W/trunc.h5"
expect_fail "truncated checkpoint" "$W/o.npy" -- "$M" logits --ckpt "$W/trunc.h5" --tokens "1 2" --out "$W/o.npy"
expect_fail "truncated checkpoint (train)" "$W/r/ckpt_00000013.h5" -- "$M" train --resume "$W/trunc.h5" --steps 13 --out "$W/r"
cp "$CK" "$W/corrupt.h5"
# flip one byte inside a weight's raw data (HDF5 checksums only its metadata; our CRC catches this)
$PY -c "
import sys, h5py; p = sys.argv[1]
with h5py.File(p, 'r') as f: off = f['params/model.layers.1.self_attn.k_proj.weight'].id.get_offset() + 100
b = bytearray(open(p, 'rb').read()); b[off] ^= 0x40; open(p, 'wb').write(bytes(b))" "$W/corrupt.h5"
expect_fail "corrupted checkpoint" "$W/o.npy" -- "$M" logits --ckpt "$W/corrupt.h5" --tokens "1 2" --out "$W/o.npy"
expect_fail "text file as checkpoint" -- "$M" info "$W/corpus.txt"
echo '{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 5, "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 259}' >"$W/bad.json"
expect_fail "invalid config" "$W/bad_run/ckpt_00000002.h5" -- "$M" train --config "$W/bad.json" --data "$W/train.shard" --steps 2 --out "$W/bad_run"
expect_fail "config is not JSON" "$W/x.h5" -- "$M" init --config "$W/corpus.txt" --out "$W/x.h5"
expect_fail "missing config" "$W/x.h5" -- "$M" init --config "$W/nope.json" --out "$W/x.h5"
expect_fail "missing data" "$W/m/ckpt_00000002.h5" -- "$M" train --config "$CFG/tiny-v1.json" --data "$W/nope.shard" --steps 2 --out "$W/m"
expect_fail "data is not a shard" "$W/m/ckpt_00000002.h5" -- "$M" train --config "$CFG/tiny-v1.json" --data "$W/corpus.txt" --steps 2 --out "$W/m"
expect_fail "token id out of range" "$W/o.npy" -- "$M" logits --ckpt "$CK" --tokens "1 2 259" --out "$W/o.npy"
expect_fail "token id not a number" "$W/o.npy" -- "$M" logits --ckpt "$CK" --tokens "1 x" --out "$W/o.npy"
$PY -c "
import json, sys; c = json.load(open(sys.argv[1])); c.update(vocab_size=200, bos_token_id=None, eos_token_id=None)
json.dump(c, open(sys.argv[2], 'w'))" "$CFG/tiny-v1.json" "$W/small_vocab.json"
expect_fail "data vocabulary larger than the model" "$W/m/ckpt_00000002.h5" -- "$M" train --config "$W/small_vocab.json" --data "$W/train.shard" --steps 2 --out "$W/m"
expect_fail "resume with another optimizer" "$W/z/ckpt_00000013.h5" -- "$M" train --resume "$CK" --optim sgd --steps 13 --out "$W/z"
expect_fail "unknown schedule" "$W/m/ckpt_00000002.h5" -- "$M" train --config "$CFG/tiny-v1.json" --data "$W/train.shard" --schedule cosin --steps 2 --out "$W/m"
expect_fail "batch larger than the data" "$W/m/ckpt_00000002.h5" -- "$M" train --config "$CFG/tiny-v1.json" --data "$W/val.shard" --batch 64 --seq 4096 --steps 2 --out "$W/m"
expect_fail "import of a directory without weights" "$W/x.h5" -- "$M" import --from "$CFG" --out "$W/x.h5"
finish
