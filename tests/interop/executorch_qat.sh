#!/bin/bash
# ctest entry `interop_executorch_qat` (label interop): a tiny-v1 model, trained a little and QAT-trained on
# int4-g32 with int8-token activations (ExecuTorch's 8da4w), exported with `mobilellm export --format hf`,
# converted with scripts/hf_to_executorch.py --8da4w 32, exported by ExecuTorch's own LLM export into a .pte
# and run with ExecuTorch's runtime: tests/interop/executorch_qat.py compares its logits on three prompts with
# `mobilellm logits` (--act int8-token and --act none). Also: --8da4w refuses a model that is not on the grid,
# leaving nothing. Skips (exit 77) without the venv of scripts/setup_executorch_venv.sh
# ($MOBILELLM_EXECUTORCH_VENV, default $HOME/.cache/mobilellm/venv-executorch).
# usage: executorch_qat.sh <mobilellm> <source-dir>
source "$(dirname "$0")/../cli/common.bash"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
VENV="${MOBILELLM_EXECUTORCH_VENV:-$HOME/.cache/mobilellm/venv-executorch}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import executorch.runtime" 2>/dev/null; then
    skip_part "no ExecuTorch venv at $VENV (scripts/setup_executorch_venv.sh makes it)"
    skip_exit
fi
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0; do cat "$f"; done >"$W/corpus.txt"
ok $M tokenize --tokenizer bytes --input "$W/corpus.txt" --out "$W/train.shard" >/dev/null
ok $M train --config "$SRC/configs/tiny-v1.json" --data "$W/train.shard" --batch 2 --seq 32 --steps 60 --lr 3e-3 \
    --out "$W/fp" --quiet >/dev/null
# trained on the fake-quant forward: the model this test's bounds were set on (the int8 engine's forward differs
# by fp32 rounding, which moves the trajectory; runtime-vs-eager agreement then depends on codes near a boundary)
ML_GEMM_ENGINE=openblas ok $M qat --init "$W/fp/ckpt_00000060.h5" --scheme int4-g32 --act int8-token --data "$W/train.shard" --batch 2 \
    --seq 32 --steps 10 --lr 1e-3 --out "$W/qat" --quiet >/dev/null
QAT="$W/qat/ckpt_00000010.h5"
ok $M export --ckpt "$QAT" --format hf --out "$W/qat.hf" >/dev/null
ok "$PY" "$SRC/scripts/hf_to_executorch.py" "$W/qat.hf" "$W/qat.et" --8da4w 32 >/dev/null

# the full-precision model is not on the grid: refused, one line naming a tensor, nothing written
ok $M export --ckpt "$W/fp/ckpt_00000060.h5" --format hf --out "$W/fp.hf" >/dev/null
"$PY" "$SRC/scripts/hf_to_executorch.py" "$W/fp.hf" "$W/fp.et" --8da4w 32 2>"$W/err" && fail "off-grid model accepted"
grep -q "is not on the int4 group-32 grid" "$W/err" || fail "refusal message: $(cat "$W/err")"
[ -e "$W/fp.et/consolidated.pth" ] && fail "refused conversion left a file"

# three prompts (bytes), ours with and without ExecuTorch's activation rounding
printf '%s\n' "72 101 108 108 111 44 32 119 111 114 108 100 33 10" \
    "84 104 101 32 115 111 102 116 119 97 114 101 32 105 115 32 112 114 111 118 105 100 101 100" \
    "89 111 117 32 109 97 121 32 99 111 110 118 101 121 32 97 32 119 111 114 107 32 98 97 115 101 100 32 111 110" \
    >"$W/prompts.txt"
k=0
while read -r ids; do
    for act in int8-token none; do
        # the fake-quant forward, torchao's eager arithmetic (the int8 engine is held against it in test_gemm_int8)
        ML_GEMM_ENGINE=openblas ok $M logits --ckpt "$QAT" --act "$act" --tokens "$ids" --out "$W/ours.$act.$k.npy"
    done
    k=$((k + 1))
done <"$W/prompts.txt"
"$VENV/bin/python" "$SRC/tests/interop/executorch_qat.py" "$W/qat.et" "$W" "$W/prompts.txt" 2>"$W/py.err" ||
    { tail -5 "$W/py.err"; fail "ExecuTorch logits"; }
finish
