#!/bin/bash
# mobilellm merge against mergekit itself: the same tiny HF models and recipes (every deterministic
# method, gradients, filters, slices, mixed native/HF and bf16 inputs) give the same tensors; DARE's kept
# fraction and rescaling are checked in both. Needs the venv of scripts/setup_merge_venv.sh
# (ML_MERGE_VENV, default $HOME/.cache/mobilellm/venv-merge); skipped (77) without it.
# usage: merge_mergekit.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
VENV="${ML_MERGE_VENV:-$HOME/.cache/mobilellm/venv-merge}"
if [ ! -x "$VENV/bin/mergekit-yaml" ]; then
    echo "skip: no mergekit in $VENV (scripts/setup_merge_venv.sh installs it)"
    exit 77
fi
cd "$W" || exit 1
for i in 0 1 2 3; do
    ok "$M" init --config "$SRC/tests/merge/tiny.json" --seed $((i + 11)) --out m$i.h5 >/dev/null
    ok "$M" export --ckpt m$i.h5 --format hf --out hf$i --dtype f32 >/dev/null
done
ok "$M" export --ckpt m1.h5 --format hf --out hf1b --dtype bf16 >/dev/null
ok "$VENV/bin/python" "$SRC/tests/merge/mergekit_check.py" "$M" "$W"
finish
