#!/bin/bash
# CLI tests of --precision bf16 and --gemm-engine: a bf16 run resumes bit-exactly on each GEMM engine this
# machine has and keeps its precision and engine (stored in the checkpoint's run arguments), an fp32 run is
# unaffected, bench and version report the engines, and bad or unsupported requests fail with one line.
# usage: bf16_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"

cat "$SRC"/train/*.c "$SRC"/model/*.c "$SRC"/model/ops/*.c >"$W/corpus.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" >/dev/null 2>&1
A=(--data "$W/train.shard" --batch 3 --seq 32 --lr 3e-3 --warmup 2 --steps 8 --quiet)
# tiny-v1's products are small enough for the dispatcher to leave on sgemm: the kernel is forced where it is tested

if "$M" bench --config "$CFG/tiny-v1.json" --batch 1 --seq 8 --steps 1 --warmup 0 --precision bf16 --json >/dev/null 2>&1; then
    # 1. bf16: 8 steps == 4 steps + resume (the stored precision is used: --precision is not repeated)
    ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision bf16 --gemm-engine bf16 --out "$W/full" >/dev/null
    ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision bf16 --gemm-engine bf16 --stop-after 4 --out "$W/split" >/dev/null
    ok "$M" train --resume "$W/split/ckpt_00000004.h5" --out "$W/split" >"$W/resume.log"
    grep -q "bf16 GEMMs" "$W/resume.log" || fail "resumed run does not say bf16"
    same_state "$W/full/ckpt_00000008.h5" "$W/split/ckpt_00000008.h5" || fail "resumed bf16 run differs"
    $PY -c "import h5py, json, sys; assert json.loads(h5py.File(sys.argv[1], 'r').attrs['args_json'])['precision'] == 'bf16'" \
        "$W/split/ckpt_00000008.h5" || fail "precision not stored in the run arguments"
    # 2. the same run in fp32 differs (the flag does something) but only slightly (same seed and data)
    ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --out "$W/fp32" >/dev/null
    $PY - "$W/full/metrics.jsonl" "$W/fp32/metrics.jsonl" <<'PYEOF' || fail "bf16 and fp32 losses"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:3])
assert len(a) == len(b) == 8, (len(a), len(b))
d = max(abs(x - y) for x, y in zip(a, b))
assert 0 < d < 0.05 * max(a), (d, a, b)
PYEOF
    $PY -c "import h5py, json, sys; assert json.loads(h5py.File(sys.argv[1], 'r').attrs['args_json'])['precision'] == 'fp32'" \
        "$W/fp32/ckpt_00000008.h5" || fail "fp32 not stored in the run arguments"
    # 3. bench says which precision and which engine ran each product
    "$M" bench --config "$CFG/tiny-v1.json" --batch 1 --seq 16 --steps 1 --warmup 0 --precision bf16 --gemm-engine bf16 \
        --json >"$W/b.json" || fail "bench --precision bf16"
    grep -q '"precision":"bf16"' "$W/b.json" || fail "bench JSON lacks the precision"
    $PY - "$W/b.json" <<'PYEOF' || fail "bench JSON: engine per product"
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert j["gemm_engine"] == "bf16" and j["gemm"], j
assert all(g["engine"] == "bf16" for g in j["gemm"]), j["gemm"]
assert j["attn_kernel"] in ("avx512bf16", "amx"), j["attn_kernel"]  # attention's tiles in bf16 too
assert {g["layout"] for g in j["gemm"]} == {"NT", "NN", "TN"}, j["gemm"]
PYEOF
else
    skip_part "this CPU has no AVX512-BF16 (the runs above need it)"
fi

# 4. every other engine: bit-exact resume, the engine stored; fp32 products on openblas in bf16 precision equal fp32
# (attention's tiles in fp32 too on openblas: ML_ATTN_KERNEL=fp32, so that its products are all fp32)
for engine in onednn openblas; do
    attn=auto
    [ $engine = openblas ] && attn=fp32
    if ! "$M" version | grep -q "^$engine *available"; then
        skip_part "GEMM engine $engine is not available here"
        continue
    fi
    ML_ATTN_KERNEL=$attn ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision bf16 --gemm-engine $engine --out "$W/$engine-full" >/dev/null
    ML_ATTN_KERNEL=$attn ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision bf16 --gemm-engine $engine --stop-after 4 \
        --out "$W/$engine-split" >/dev/null
    ML_ATTN_KERNEL=$attn ML_GEMM_ENGINE=bf16 ok "$M" train --resume "$W/$engine-split/ckpt_00000004.h5" --out "$W/$engine-split" >"$W/$engine.log"
    grep -q "bf16 GEMM engine: $engine" "$W/$engine.log" || fail "resumed run does not keep engine $engine"
    same_state "$W/$engine-full/ckpt_00000008.h5" "$W/$engine-split/ckpt_00000008.h5" || fail "resumed $engine run differs"
    $PY -c "import h5py, json, sys; assert json.loads(h5py.File(sys.argv[1], 'r').attrs['args_json'])['gemm_engine'] == sys.argv[2]" \
        "$W/$engine-split/ckpt_00000008.h5" $engine || fail "engine $engine not stored in the run arguments"
done
[ -d "$W/fp32" ] && [ -d "$W/openblas-full" ] && { same_state "$W/fp32/ckpt_00000008.h5" "$W/openblas-full/ckpt_00000008.h5" ||
    fail "bf16 precision on openblas differs from fp32"; }
"$M" version >"$W/version.txt" || fail "version"
grep -q "^CPU features: " "$W/version.txt" || fail "version lists no CPU features"
grep -q "^openblas *available" "$W/version.txt" || fail "version lists no openblas engine"
grep -Eq "^onednn *(available|absent)" "$W/version.txt" || fail "version lists no onednn line"
grep -Eq "^attention .*--precision bf16: (amx|avx512bf16|fp32)" "$W/version.txt" || fail "version lists no attention kernel"

# 5. bad input
expect_fail "unknown precision" "$W/bad" -- "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision fp16 --out "$W/bad"
expect_fail "bench unknown precision" -- "$M" bench --config "$CFG/tiny-v1.json" --precision half
expect_fail "unknown engine" "$W/bad" -- "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --precision bf16 \
    --gemm-engine cuda --out "$W/bad"
expect_fail "bf16 engine with fp32" "$W/bad/ckpt_00000008.h5" -- "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --gemm-engine bf16 --out "$W/bad"
ML_GEMM_ENGINE=fast expect_fail "unknown engine in ML_GEMM_ENGINE" -- "$M" bench --config "$CFG/tiny-v1.json" --precision bf16
ML_ATTN_KERNEL=gpu expect_fail "unknown kernel in ML_ATTN_KERNEL" -- "$M" bench --config "$CFG/tiny-v1.json" --precision bf16
expect_fail "bench unknown engine" -- "$M" bench --config "$CFG/tiny-v1.json" --precision bf16 --gemm-engine x
export ML_DISABLE_BF16=1 # as on a CPU without AVX512-BF16: auto runs bf16 precision on sgemm, forcing the kernel fails
expect_fail "no AVX512-BF16 (train)" "$W/nobf16/ckpt_00000008.h5" -- "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" \
    --precision bf16 --gemm-engine bf16 --out "$W/nobf16"
expect_fail "no AVX512-BF16 (bench)" -- "$M" bench --config "$CFG/tiny-v1.json" --precision bf16 --gemm-engine bf16
ok "$M" bench --config "$CFG/tiny-v1.json" --batch 1 --seq 8 --steps 1 --warmup 0 --precision bf16 --json >"$W/nobf16.json"
grep -q '"engine":"bf16"' "$W/nobf16.json" && fail "the bf16 kernel ran although disabled"
finish
