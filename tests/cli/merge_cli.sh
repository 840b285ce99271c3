#!/bin/bash
# mobilellm merge: bad recipes fail with one line (the recipe line where it applies) and no output; a merge
# of native and HF inputs is a checkpoint that train --init, eval and export take, with the recipe stored;
# DARE is reproducible by seed; --search writes the best recipe and a table of every trial.
# usage: merge_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
cd "$W" || exit 1
CFG="$SRC/tests/merge/tiny.json"
for i in 0 1 2; do ok "$M" init --config "$CFG" --seed $((i + 1)) --out m$i.h5 >/dev/null; done
ok "$M" export --ckpt m1.h5 --format hf --out hf1 --dtype bf16 >/dev/null
ok "$M" export --ckpt m2.h5 --format hf --out hf2s --dtype f16 >/dev/null
$PY - hf2s <<'PYEOF' || fail "sharding hf2s"
# split the fp16 model.safetensors into two shards + index, as transformers writes big checkpoints
import json, os, struct, sys
d = sys.argv[1]
raw = open(f"{d}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); hdr.pop("__metadata__", None)
names = sorted(hdr); halves = [names[: len(names) // 2], names[len(names) // 2 :]]
wmap = {}
for i, part in enumerate(halves):
    fname = f"model-{i + 1:05d}-of-00002.safetensors"
    h, blobs, off = {}, [], 0
    for k in part:
        b, e = hdr[k]["data_offsets"]
        blob = raw[8 + n + b : 8 + n + e]
        h[k] = dict(hdr[k], data_offsets=[off, off + len(blob)]); off += len(blob); blobs.append(blob); wmap[k] = fname
    js = json.dumps(h).encode(); js += b" " * (-len(js) % 8)
    open(f"{d}/{fname}", "wb").write(struct.pack("<Q", len(js)) + js + b"".join(blobs))
json.dump({"metadata": {}, "weight_map": wmap}, open(f"{d}/model.safetensors.index.json", "w"))
os.remove(f"{d}/model.safetensors")
PYEOF

# ---------------------------------------------------------------- bad input
recipe() { cat >"$1"; }
expect_line() { grep -q "$1" "$W/stderr" || fail "$2: message lacks '$1': $(cat "$W/stderr")"; }

recipe unknown.yaml <<'EOF'
merge_method: frankenmerge
models:
  - model: m1.h5
EOF
expect_fail "unknown method" out.h5 -- "$M" merge --config unknown.yaml --out out.h5
expect_line "unknown.yaml:1: unknown merge_method 'frankenmerge'" "unknown method"

recipe nobase.yaml <<'EOF'
merge_method: ties
models:
  - model: m1.h5
    parameters: {weight: 1, density: 0.5}
  - model: m2.h5
    parameters: {weight: 1, density: 0.5}
EOF
expect_fail "ties without base_model" out.h5 -- "$M" merge --config nobase.yaml --out out.h5
expect_line "nobase.yaml:1: merge_method ties needs a base_model" "ties without base_model"

for d in 0 1.5 -0.2; do
    recipe density.yaml <<EOF
merge_method: dare_ties
base_model: m0.h5
models:
  - model: m1.h5
    parameters: {weight: 1, density: 0.5}
  - model: m2.h5
    parameters: {weight: 1, density: $d}
EOF
    expect_fail "density $d" out.h5 -- "$M" merge --config density.yaml --out out.h5
    expect_line "density.yaml:6: density $d for model.embed_tokens.weight of m2.h5 is outside (0, 1\]" "density $d"
done

recipe noweight.yaml <<'EOF'
merge_method: task_arithmetic
base_model: m0.h5
models:
  - model: m1.h5
    parameters: {weight: 0.5}
  - model: m2.h5
EOF
expect_fail "missing weight" out.h5 -- "$M" merge --config noweight.yaml --out out.h5
expect_line "noweight.yaml:6: model m2.h5 has no weight" "missing weight"

recipe typo.yaml <<'EOF'
merge_method: ties
base_model: m0.h5
models:
  - model: m1.h5
    parameters: {weight: 1, densty: 0.5}
EOF
expect_fail "unknown parameter" out.h5 -- "$M" merge --config typo.yaml --out out.h5
expect_line "typo.yaml:5: unknown parameter 'densty' for merge_method ties" "unknown parameter"

recipe missing.yaml <<'EOF'
merge_method: linear
models:
  - model: m1.h5
    parameters: {weight: 1}
  - model: nowhere.h5
    parameters: {weight: 1}
EOF
expect_fail "missing model file" out.h5 -- "$M" merge --config missing.yaml --out out.h5
expect_line "missing.yaml:5: model nowhere.h5: No such file or directory" "missing model file"

recipe broken.yaml <<'EOF'
merge_method: linear
models:
  - model: m1.h5
    parameters: {weight: [1, 2}
EOF
expect_fail "malformed YAML" out.h5 -- "$M" merge --config broken.yaml --out out.h5
expect_line "broken.yaml:4: malformed YAML" "malformed YAML"

# shapes and vocabularies that differ
$PY - "$CFG" wide.json vocab.json <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
json.dump(dict(c, hidden_size=96), open(sys.argv[2], "w"))
json.dump(dict(c, vocab_size=300), open(sys.argv[3], "w"))
PYEOF
ok "$M" init --config wide.json --out wide.h5 >/dev/null
ok "$M" init --config vocab.json --out vocab.h5 >/dev/null
for other in wide vocab; do
    recipe shape.yaml <<EOF
merge_method: linear
models:
  - model: m1.h5
    parameters: {weight: 1}
  - model: $other.h5
    parameters: {weight: 1}
EOF
    expect_fail "different $other" out.h5 -- "$M" merge --config shape.yaml --out out.h5
done
expect_line "shape.yaml:5: m1.h5 and vocab.h5 have different vocabularies (259 vs 300 tokens)" "different vocabularies"

recipe slerp3.yaml <<'EOF'
merge_method: slerp
base_model: m0.h5
models:
  - model: m1.h5
  - model: m2.h5
parameters: {t: 0.5}
EOF
expect_fail "slerp of three" out.h5 -- "$M" merge --config slerp3.yaml --out out.h5
: >empty.yaml
expect_fail "empty recipe" out.h5 -- "$M" merge --config empty.yaml --out out.h5

# ---------------------------------------------------------------- a merge every command takes
recipe good.yaml <<'EOF'
merge_method: dare_ties
base_model: m0.h5
models:
  - model: hf1            # bf16 HF directory beside native checkpoints
    parameters: {weight: 0.6, density: [0.3, 0.9]}
  - model: hf2s
    parameters: {weight: 0.4, density: 0.5}
dtype: bfloat16
seed: 3
EOF
ok "$M" merge --config good.yaml --out good.h5 --quiet >merge.json
grep -q '"tensors":38' merge.json || fail "merge summary: $(cat merge.json)"
ok "$M" merge --config good.yaml --out again.h5 --quiet >/dev/null
ok "$M" merge --config good.yaml --out other.h5 --seed 4 --quiet >/dev/null
ok "$M" merge --config good.yaml --out goodhf --format hf --quiet >/dev/null
expect_fail "hf output over a file" -- "$M" merge --config good.yaml --out good.h5 --format hf --quiet
$PY - good.h5 again.h5 other.h5 goodhf good.yaml <<'PYEOF' || fail "merged checkpoint contents"
import json, struct, sys, h5py, numpy as np
a, b, c = (h5py.File(p, "r") for p in sys.argv[1:4])
def text(v):  # fixed-length string attributes come back as bytes
    return v.decode() if isinstance(v, bytes) else v
assert text(a.attrs["merge_recipe"]) == open(sys.argv[5]).read(), "recipe attribute"
assert text(a.attrs["source_dtype"]) == "BF16" and "optim" not in a and "state" not in a
names = list(a["params"])
assert all(np.array_equal(a["params"][n][()], b["params"][n][()]) for n in names), "same seed, same merge"
assert any(not np.array_equal(a["params"][n][()], c["params"][n][()]) for n in names), "another seed differs"
x = a["params"]["model.layers.0.mlp.up_proj.weight"][()]
assert np.all(x.view(np.uint32) & 0xFFFF == 0), "values rounded to bf16"
raw = open(sys.argv[4] + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
assert hdr["__metadata__"]["merge_recipe"] == open(sys.argv[5]).read()
assert hdr["model.layers.0.mlp.up_proj.weight"]["dtype"] == "BF16"
PYEOF
cat "$SRC"/README.md "$SRC"/docs/*.md >text.txt
ok "$M" tokenize --tokenizer bytes --input text.txt --out text.shard >/dev/null 2>&1
ok "$M" eval --ckpt good.h5 --data text.shard --batch 2 --seq 32 --max-batches 2 >/dev/null
ok "$M" train --init good.h5 --data text.shard --batch 2 --seq 32 --steps 2 --out run --quiet >/dev/null
ok "$M" export --ckpt good.h5 --format hf --out exported >/dev/null
ok "$M" import --from goodhf --out imported.h5 >/dev/null
cp -r hf2s overwrite    # a sharded checkpoint already there: its index and shards must go
ok "$M" merge --config good.yaml --out overwrite --format hf --quiet >/dev/null
ls overwrite | grep -q -e index -e "-of-" && fail "stale shards left: $(ls overwrite)"
ok "$M" import --from overwrite --out overwrite.h5 >/dev/null
ok "$M" info good.h5 >/dev/null

# slices: layers from different models; the output has as many layers as the slices
recipe slices.yaml <<'EOF'
slices:
  - sources:
      - model: m1.h5
        layer_range: [0, 3]
  - sources:
      - model: goodhf
        layer_range: [1, 4]
merge_method: linear
parameters: {weight: 1}
EOF
ok "$M" merge --config slices.yaml --out sliced.h5 --quiet >sliced.json
grep -q '"layers":6' sliced.json || fail "slices: $(cat sliced.json)"
$PY - sliced.h5 m1.h5 <<'PYEOF' || fail "slices copy layers"
import sys, h5py, numpy as np
s, m = h5py.File(sys.argv[1], "r")["params"], h5py.File(sys.argv[2], "r")["params"]
assert np.array_equal(s["model.layers.2.self_attn.q_proj.weight"][()], m["model.layers.2.self_attn.q_proj.weight"][()])
assert "model.layers.5.mlp.down_proj.weight" in s
PYEOF

# ---------------------------------------------------------------- search
head -c 60000 "$SRC"/README.md >a.txt
cat "$SRC"/model/*.c | head -c 60000 >b.txt
for d in a b; do
    ok "$M" tokenize --tokenizer bytes --input $d.txt --out $d.shard --domain $d >/dev/null 2>&1
    ok "$M" train --init m0.h5 --data $d.shard --batch 2 --seq 32 --steps 15 --lr 3e-3 --schedule linear --min-lr-ratio 0 \
        --out spec_$d --quiet >/dev/null
done
recipe search.yaml <<EOF
merge_method: ties
base_model: m0.h5
models:
  - model: $(ls spec_a/ckpt_*.h5 | tail -1)
    parameters: {weight: 0.5, density: 0.5}
  - model: $(ls spec_b/ckpt_*.h5 | tail -1)
    parameters: {weight: 0.5, density: 0.5}
EOF
ok "$M" merge --config search.yaml --search --search-data a=a.shard b=b.shard --search-weight b=2 --search-density \
    --trials 5 --batch 2 --seq 32 --max-batches 2 --out best.yaml >search.out
grep -c '^trial ' search.out | grep -qx 5 || fail "search progress: $(cat search.out)"
[ "$(wc -l <best.tsv)" -eq 6 ] || fail "trials table: $(cat best.tsv)"
head -1 best.tsv | grep -q "density:" || fail "trials table has no density columns"
ok "$M" merge --config best.yaml --out best.h5 --quiet >/dev/null
expect_fail "search without data" best2.yaml -- "$M" merge --config search.yaml --search --out best2.yaml
finish
