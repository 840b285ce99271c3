#!/usr/bin/env bash
# The implicit positional distillation (IPD) experiment, end to end (docs/experiments/ipd.md):
#   a student pre-trained at short context (T=IPD_T) with cross-entropy, then three arms from its checkpoint
#   with the same token budget: (a) IPD: forward-KL distillation of the long-context teacher on short documents
#   packed into long windows (L=IPD_L, continuous positions, RoPE theta raised), (b) continued cross-entropy
#   training on long documents at L (same theta), (c) no extension. Each arm and the teacher are then scored by
#   pass-key retrieval at several lengths and by held-out loss per domain at T.
#
#   scripts/ipd_experiment.sh [tiny|default]      # tiny: a few minutes, to check the pipeline
#
# Every size can be overridden by the environment (IPD_PRE_STEPS, IPD_ARM_STEPS, IPD_L, ...: see below). A run
# that stops can be started again: finished steps are skipped (the run directory records its settings and
# refuses others).
# Outputs under runs/ipd-SCALE (git-ignored); results.json and ipd.svg there; with IPD_PUBLISH=1 also copied to
# docs/experiments/. Run it under `nice` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

main() { # the whole run in one function: bash parses it before running, so editing this file cannot derail a run
SCALE=${1:-default}
case "$SCALE" in
tiny) : "${IPD_PRE_STEPS:=12}" "${IPD_ARM_STEPS:=4}" "${IPD_L:=512}" "${IPD_PASSKEY_LENGTHS:=256,512}" \
    "${IPD_PASSKEY_SAMPLES:=2}" "${IPD_EVAL_BATCHES:=2}" "${IPD_PASSKEY_ROWS:=400}" ;;
default) : "${IPD_PRE_STEPS:=180}" "${IPD_ARM_STEPS:=30}" "${IPD_L:=1024}" "${IPD_PASSKEY_LENGTHS:=256,512,1024,2048}" \
    "${IPD_PASSKEY_SAMPLES:=8}" "${IPD_EVAL_BATCHES:=6}" "${IPD_PASSKEY_ROWS:=4000}" ;;
*) echo "usage: $0 [tiny|default]" >&2; exit 2 ;;
esac
T=${IPD_T:-256}                       # student pre-training context
B=${IPD_BATCH:-8}                     # sequences per step at T
L=$IPD_L                              # extension window
BL=${IPD_BATCH_L:-$((B * T / L > 0 ? B * T / L : 1))}   # sequences per step at L: the same tokens per step
THETA=${IPD_THETA:-500000}            # RoPE theta of both extension arms (the teacher's); the student starts at 10000
PK=${IPD_PASSKEY_WEIGHT:-0.1}         # share of rows drawn from the pass-key rows, in every phase and arm
PRE_LR=${IPD_PRE_LR:-3e-3}
ARM_LR=${IPD_ARM_LR:-1e-3}
OUT=${IPD_OUT:-runs/ipd-$SCALE}
SHARED=${ML_SHARED:-../shared}
TEACHER=${IPD_TEACHER:-$SHARED/teachers/mobilellm-28m-llama2tok}
TOK=$TEACHER/tokenizer.model
DATA=$SHARED/data
PY=/usr/bin/python3
M=build/mobilellm
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
[ -n "$(grep -m1 -o avx512f /proc/cpuinfo)" ] || unset OPENBLAS_CORETYPE
t_start=$(date +%s)
stamp() { echo "[ipd $(($(date +%s) - t_start))s] $*"; }
timed() { # timed NAME CMD...: run, log to $OUT/logs/NAME.log, record the wall time
    local name=$1; shift
    local t0=$(date +%s)
    stamp "$name: $*"
    stdbuf -oL "$@" >"$OUT/logs/$name.log" 2>&1 || { echo "FAILED: $name (log: $OUT/logs/$name.log)"; tail -5 "$OUT/logs/$name.log"; exit 1; }
    echo "\"$name\": $(($(date +%s) - t0))," >>"$OUT/times.part"
    tail -1 "$OUT/logs/$name.log" | tr '\r' '\n' | tail -1
}
mkdir -p "$OUT/logs"
# a run directory is resumed (finished steps are skipped), so it must belong to the same settings
local settings="T=$T B=$B L=$L BL=$BL theta=$THETA pk=$PK lr=$PRE_LR/$ARM_LR steps=$IPD_PRE_STEPS/$IPD_ARM_STEPS rows=$IPD_PASSKEY_ROWS"
if [ -f "$OUT/settings" ] && [ "$(cat "$OUT/settings")" != "$settings" ]; then
    echo "$OUT was made with other settings ($(cat "$OUT/settings")); remove it or set IPD_OUT" >&2
    exit 2
fi
echo "$settings" >"$OUT/settings"
touch "$OUT/times.part" # appended: a step that is run again overrides its earlier time

# 1. build
if [ ! -x $M ]; then
    stamp "building"
    cmake -B build -S . -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j2 --target mobilellm >/dev/null
fi

# 2. data: text splits (held-out documents out of every training set), pass-key rows, shards
S=$OUT/data
if [ ! -f "$S/done" ]; then
    mkdir -p "$S"
    timed prepare $PY scripts/ipd_prepare.py "$DATA" "$S/text" $((5 * L))
    # pass-key rows: filler spans from the training Wikipedia text; at most ~200 filler tokens, so a row fits T=256
    timed passkey_rows $M passkey-rows --filler "$S/text/train_wiki.txt" --rows "$IPD_PASSKEY_ROWS" --bytes 200,800 \
        --seed 7 --out "$S/text/passkey_rows.jsonl"
    for d in stories books math code wiki; do
        timed tok_$d $M tokenize --tokenizer "$TOK" --input "$S/text/train_$d.txt" --doc-split blank-lines --bos --eos \
            --domain $d --out "$S/$d.shard"
        timed tok_val_$d $M tokenize --tokenizer "$TOK" --input "$S/text/val_$d.txt" --doc-split blank-lines --bos --eos \
            --domain $d --out "$S/val_$d.shard"
    done
    timed tok_passkey $M tokenize --tokenizer "$TOK" --input "$S/text/passkey_rows.jsonl" --jsonl-field text --bos --eos \
        --domain passkey --out "$S/passkey.shard"
    timed tok_long_books $M tokenize --tokenizer "$TOK" --input "$S/text/long_books" --doc-split file --bos --eos \
        --domain long_books --out "$S/long_books.shard"
    timed tok_val_long_books $M tokenize --tokenizer "$TOK" --input "$S/text/val_long_books" --doc-split file --bos --eos \
        --domain long_books --out "$S/val_long_books.shard"
    timed tok_long_wiki $M tokenize --tokenizer "$TOK" --input "$S/text/long_wiki.txt" --doc-split blank-lines --bos --eos \
        --domain long_wiki --out "$S/long_wiki.shard"
    touch "$S/done"
fi
W() { $PY -c "print(round((1 - $PK) * $1, 4))"; }
# the teacher's domain weights (stories/books/math/code/wiki 0.06/0.32/0.08/0.30/0.24), scaled to leave PK for pass-key rows
SHORT=("$S/stories.shard:$(W 0.06):stories" "$S/books.shard:$(W 0.32):books" "$S/math.shard:$(W 0.08):math"
    "$S/code.shard:$(W 0.30):code" "$S/wiki.shard:$(W 0.24):wiki" "$S/passkey.shard:$PK:passkey")
LONG=("$S/long_books.shard:$(W 0.5):long_books" "$S/long_wiki.shard:$(W 0.5):long_wiki" "$S/passkey.shard:$PK:passkey")
VAL=("$S/val_stories.shard" "$S/val_books.shard" "$S/val_math.shard" "$S/val_code.shard" "$S/val_wiki.shard")

# 3. the student: cross-entropy pre-training from scratch at T
STUDENT=$OUT/student/final.h5
if [ ! -f "$STUDENT" ]; then
    timed pretrain $M train --config configs/ipd-student.json --source "${SHORT[@]}" --seq $T --batch $B \
        --steps $IPD_PRE_STEPS --lr $PRE_LR --warmup $((IPD_PRE_STEPS / 20 + 1)) --schedule cosine --seed 1 \
        --out "$OUT/student" --keep 1
    cp "$(ls "$OUT"/student/ckpt_*.h5 | tail -1)" "$STUDENT"
fi

# 4. the arms, each from the student's weights (fresh optimizer), the same steps x BL x L tokens and schedule
ARM=(--init "$STUDENT" --seq $L --batch $BL --steps $IPD_ARM_STEPS --lr $ARM_LR --warmup $((IPD_ARM_STEPS / 10 + 1))
    --schedule cosine --seed 2 --rope-theta $THETA --keep 1)
if [ ! -f "$OUT/ipd/final.h5" ]; then
    timed arm_ipd $M distill --teacher "$TEACHER" --loss fkl --temperature 1 --ce-weight 0 --source "${SHORT[@]}" \
        "${ARM[@]}" --out "$OUT/ipd"
    cp "$(ls "$OUT"/ipd/ckpt_*.h5 | tail -1)" "$OUT/ipd/final.h5"
fi
if [ ! -f "$OUT/ce_long/final.h5" ]; then
    timed arm_ce_long $M train --source "${LONG[@]}" "${ARM[@]}" --out "$OUT/ce_long"
    cp "$(ls "$OUT"/ce_long/ckpt_*.h5 | tail -1)" "$OUT/ce_long/final.h5"
fi
# (d) control: distillation at the pre-training length T, same tokens, theta unchanged: how much of IPD's
#     effect is the teacher's signal rather than the long packed window
if [ ! -f "$OUT/kd_short/final.h5" ]; then
    timed arm_kd_short $M distill --teacher "$TEACHER" --loss fkl --temperature 1 --ce-weight 0 \
        --source "${SHORT[@]}" --init "$STUDENT" --seq $T --batch $((BL * L / T)) --steps $IPD_ARM_STEPS --lr $ARM_LR \
        --warmup $((IPD_ARM_STEPS / 10 + 1)) --schedule cosine --seed 2 --keep 1 --out "$OUT/kd_short"
    cp "$(ls "$OUT"/kd_short/ckpt_*.h5 | tail -1)" "$OUT/kd_short/final.h5"
fi
[ -f "$OUT/teacher.h5" ] || timed import_teacher $M import --from "$TEACHER" --out "$OUT/teacher.h5"

# 5. evaluation: pass-key retrieval (filler: held-out Wikipedia articles) and held-out loss per domain at T
mkdir -p "$OUT/eval"
for arm in none ipd ce_long kd_short teacher; do
    case $arm in none) ck=$STUDENT ;; teacher) ck=$OUT/teacher.h5 ;; *) ck=$OUT/$arm/final.h5 ;; esac
    # evaluated already (a restarted run): keep it
    [ -s "$OUT/eval/passkey_$arm.json" ] && [ -s "$OUT/eval/loss_$arm.jsonl" ] && [ -s "$OUT/eval/longloss_$arm.jsonl" ] &&
        [ "$OUT/eval/longloss_$arm.jsonl" -nt "$ck" ] && continue
    timed passkey_$arm $M passkey --ckpt "$ck" --tokenizer "$TOK" --lengths "$IPD_PASSKEY_LENGTHS" \
        --samples "$IPD_PASSKEY_SAMPLES" --filler "$S/text/val_wiki.txt" --seed 3 --json "$OUT/eval/passkey_$arm.json"
    timed loss_$arm $M eval --ckpt "$ck" --data "${VAL[@]}" --batch 4 --seq $T --max-batches "$IPD_EVAL_BATCHES"
    grep '^{' "$OUT/logs/loss_$arm.log" >"$OUT/eval/loss_$arm.jsonl"
    # the same held-out books as whole documents, in windows of T and of L: the loss at positions beyond T
    timed longloss_T_$arm $M eval --ckpt "$ck" --data "$S/val_long_books.shard" --batch 1 --seq $T \
        --max-batches $((IPD_EVAL_BATCHES * 4 * L / T))
    timed longloss_L_$arm $M eval --ckpt "$ck" --data "$S/val_long_books.shard" --batch 1 --seq $L \
        --max-batches $((IPD_EVAL_BATCHES * 4))
    grep -h '^{' "$OUT/logs/longloss_T_$arm.log" "$OUT/logs/longloss_L_$arm.log" >"$OUT/eval/longloss_$arm.jsonl"
done

# 6. results.json and the plot
$PY - "$OUT" "$SCALE" <<PYEOF
import json, sys
out, scale = sys.argv[1], sys.argv[2]
times = json.loads("{" + open(out + "/times.part").read().rstrip().rstrip(",") + "}")
arms = {}
for arm in ["none", "ipd", "ce_long", "kd_short", "teacher"]:
    pk = json.load(open(f"{out}/eval/passkey_{arm}.json"))["results"]
    loss = [json.loads(l) for l in open(f"{out}/eval/loss_{arm}.jsonl")]
    longl = [json.loads(l) for l in open(f"{out}/eval/longloss_{arm}.jsonl")]
    arms[arm] = {"passkey": pk, "loss": {r.get("domain", "all"): r["loss"] for r in loss},
                 "long_books_loss": {"T": longl[0]["loss"], "L": longl[1]["loss"]}}
res = {"scale": scale, "settings": {"T": $T, "batch": $B, "L": $L, "batch_L": $BL, "rope_theta": $THETA,
       "passkey_weight": $PK, "pre_steps": $IPD_PRE_STEPS, "arm_steps": $IPD_ARM_STEPS,
       "pre_tokens": $IPD_PRE_STEPS * $B * $T, "arm_tokens": $IPD_ARM_STEPS * $BL * $L, "pre_lr": $PRE_LR,
       "arm_lr": $ARM_LR, "passkey_samples": $IPD_PASSKEY_SAMPLES, "eval_batches": $IPD_EVAL_BATCHES},
       "wall_seconds": times, "arms": arms}
json.dump(res, open(out + "/results.json", "w"), indent=1)
PYEOF
$PY scripts/plot_metrics.py --passkey "$OUT/results.json" "$OUT/ipd.svg"
if [ "${IPD_PUBLISH:-0}" = 1 ]; then
    mkdir -p docs/experiments && cp "$OUT/results.json" docs/experiments/ipd.json && cp "$OUT/ipd.svg" docs/experiments/ipd.svg
fi
stamp "done: $OUT/results.json, $OUT/ipd.svg"
}

main "$@"
