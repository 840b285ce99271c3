#!/bin/bash
# ctest entries labelled `interop`: an HF export of each dialect loads in transformers with no missing
# or unexpected keys, gives our logits and our greedy continuation; the exported SentencePiece
# tokenizer tokenizes as sentencepiece. Runs tests/interop/hf_interop.py in the interop venv
# ($ML_INTEROP_VENV, default $HOME/.cache/mobilellm/venv; scripts/interop_venv.sh makes it) and
# skips (exit 77) when the venv or a shared file is missing.
# usage: hf_interop.sh <mobilellm> <source-dir> CASE   (tiny-v1 tiny-v1-noshare tiny-r1 tiny-pro teacher tokenizer)
set -u
M="$1"
SRC="$2"
CASE="$3"
source "$SRC/tests/cli/skip.bash"
VENV="${ML_INTEROP_VENV:-$HOME/.cache/mobilellm/venv}"
PYV="$VENV/bin/python"
if [ ! -x "$PYV" ] || ! "$PYV" -c "import torch, transformers, sentencepiece" 2>/dev/null; then
    skip_part "no interop venv with torch, transformers and sentencepiece at $VENV (scripts/interop_venv.sh makes it)"
    skip_exit
fi
mkdir -p test_files
W=$(mktemp -d "$PWD/test_files/interop_$CASE.XXXXXX")
trap 'rm -rf "$W"' EXIT
export ML_BIN="$M" ML_TOKENIZER=bytes PYTHONDONTWRITEBYTECODE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
PYCHECK=("$PYV" "$SRC/tests/interop/hf_interop.py")
SPM="$SHARED/tokenizers/llama2-spm-32000.model"
TEACHER="$SHARED/teachers/mobilellm-28m-llama2tok"
# a few training steps on this repository's sources, so that greedy decoding has clear winners
trained() { # trained CONFIG OUT
    cat "$SRC"/train/*.c "$SRC"/model/*.c >"$W/corpus.txt"
    "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --out "$W/train.shard" >/dev/null &&
        "$M" train --config "$1" --data "$W/train.shard" --batch 4 --seq 64 --steps 30 --lr 3e-3 --warmup 3 \
            --quiet --out "$W/run" >/dev/null && cp "$W/run/ckpt_00000030.h5" "$2"
}
case "$CASE" in
tiny-v1 | tiny-r1 | tiny-pro)
    trained "$SRC/configs/$CASE.json" "$W/m.h5" || exit 1
    "$M" export --ckpt "$W/m.h5" --out "$W/$CASE" --tokenizer bytes >/dev/null || exit 1
    "${PYCHECK[@]}" model "$W/m.h5" "$W/$CASE" "static int main(void) {" || exit 1 ;;
tiny-v1-noshare)
    sed -e 's/"layer_sharing": true/"layer_sharing": false/' -e 's/"layer_repeat": 2/"layer_repeat": 1/' \
        "$SRC/configs/tiny-v1.json" >"$W/tiny-v1-noshare.json"
    trained "$W/tiny-v1-noshare.json" "$W/m.h5" || exit 1
    "$M" export --ckpt "$W/m.h5" --out "$W/$CASE" --tokenizer bytes --dtype bf16 >/dev/null || exit 1
    grep -q '"dtype": "bfloat16"' "$W/$CASE/config.json" || { echo "FAIL: bf16 export's config.json dtype"; exit 1; }
    # the bf16 export is the model that `import` reads back: compare against that
    "$M" import --from "$W/$CASE" --out "$W/m16.h5" >/dev/null || exit 1
    "${PYCHECK[@]}" model "$W/m16.h5" "$W/$CASE" "static int main(void) {" || exit 1 ;;
teacher)
    need_shared "$TEACHER" "$SPM" || skip_exit
    "$M" import --from "$TEACHER" --out "$W/t.h5" >/dev/null || exit 1
    "$M" export --ckpt "$W/t.h5" --out "$W/teacher" --tokenizer "$SPM" >/dev/null || exit 1
    ML_TOKENIZER="$SPM" "${PYCHECK[@]}" model "$W/t.h5" "$W/teacher" "Once upon a time" || exit 1 ;;
tokenizer)
    need_shared "$SPM" || skip_exit
    "$M" init --config "$SRC/configs/tiny-v1.json" --out "$W/m.h5" >/dev/null || exit 1
    "$M" export --ckpt "$W/m.h5" --out "$W/spm" --tokenizer "$SPM" >/dev/null || exit 1
    files=()
    for f in stories/tinystories_valid_prefix.txt books/tinyshakespeare.txt code/python_cpython311_stdlib.txt \
        wiki/enwiki_extract.txt; do
        need_shared "$SHARED/data/$f" && files+=("$SHARED/data/$f")
    done
    "${PYCHECK[@]}" tokenizer "$W/spm" "${files[@]}" || exit 1 ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
skip_exit
echo "passed"
