#!/usr/bin/env bash
# Utility-driven data mixing on ../shared/data (docs/experiments/mix.md): one command, restartable.
#
#   nice -n 15 scripts/mix_experiment.sh            # outputs in runs/mix/ (MIX_OUT)
#
# Seven domains, byte tokenizer: code, math, books, stories, wiki, chat and junk (random bytes, the sanity
# domain that every method must weight near zero). Targets: an evenly weighted held-out mix of the six real
# domains (weight 1) and math, a capability (GSM8K test, weight 0.5). Mixtures: uniform, natural (proportional
# to each corpus's tokens; junk counted as the smallest), influence and simulate (`mobilellm mix`), each
# training the same student (configs/mix-student.json) for the same tokens with every seed of MIX_SEEDS;
# held-out loss per domain and on the target mix, and zero-shot multiple choice (the first MIX_MC_LIMIT items of
# hellaswag, piqa, arc_easy, arc_challenge). Every finished step (tokenized shards, mix runs, students,
# evaluations) is kept: a rerun continues where it stopped. Sizes are environment variables (below).
# Independent work (the two `mix` methods, the students and their evaluations) runs MIX_JOBS processes at once
# with MIX_THREADS OpenMP threads each (default 2 x 1: this 0.8M-parameter model cannot keep two threads busy).
set -euo pipefail
cd "$(dirname "$0")/.."
O=${MIX_OUT:-runs/mix}
DATA=${MIX_DATA:-../shared/data}
B=${MIX_BATCH:-8}
T=${MIX_SEQ:-64}
PROXY_STEPS=${MIX_PROXY_STEPS:-150}
CKPTS=${MIX_CKPTS:-3}
SAMPLES=${MIX_SAMPLES:-24}
RUNS=${MIX_RUNS:-16}
SIM_STEPS=${MIX_SIM_STEPS:-60}
HELDOUT=${MIX_HELDOUT:-4}
LOO_STEPS=${MIX_LOO_STEPS:-60}
STUDENT_STEPS=${MIX_STUDENT_STEPS:-200}
SEEDS=${MIX_SEEDS:-2 3 4}
MC_LIMIT=${MIX_MC_LIMIT:-300}
MC_MAX_LEN=${MIX_MC_MAX_LEN:-2048}  # some PIQA solutions are longer than the student's 512 positions
MC_TASKS=${MIX_MC_TASKS:-hellaswag piqa arc_easy arc_challenge}
JOBS=${MIX_JOBS:-2}
export OMP_NUM_THREADS=${MIX_THREADS:-1}
CFG=configs/mix-student.json
M=build/mobilellm
PY=${PYTHON:-python3}
mkdir -p "$O"
LOG="$O/log.txt"
t_all=$(date +%s)
timed() { # NAME CMD...: run, log, record seconds
    local name=$1; shift
    local t0; t0=$(date +%s)
    "$@" >>"$LOG" 2>&1 || { echo "mix_experiment: $name failed (see $LOG)" >&2; exit 1; }
    echo "$name $(( $(date +%s) - t0 ))" >>"$O/times.txt"
    echo "[$(date +%H:%M:%S)] $name done in $(( $(date +%s) - t0 )) s"
}
# spawn CMD...: run in the background, at most JOBS at once; wait_all: wait for them, exit 1 if one failed
PIDS=()
spawn() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.5; done; "$@" & PIDS+=($!); }
wait_all() { local p rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=1; done; PIDS=(); [ $rc = 0 ] || exit 1; }
[ -x "$M" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j2 --target mobilellm >/dev/null; }
DOMS="code math books stories wiki chat junk"
if [ ! -f "$O/shards/done" ]; then
    timed prepare "$PY" scripts/mix_prepare.py "$DATA" "$O/text" "${MIX_TRAIN_BYTES:-600000}" "${MIX_VAL_BYTES:-60000}"
    mkdir -p "$O/shards"
    for d in $DOMS; do
        timed "tok_$d" $M tokenize --tokenizer bytes --input "$O/text/train_$d.txt" --doc-split blank-lines --out "$O/shards/train_$d.shard" --domain "$d"
        timed "tok_val_$d" $M tokenize --tokenizer bytes --input "$O/text/val_$d.txt" --doc-split blank-lines --out "$O/shards/val_$d.shard" --domain "$d"
    done
    timed tok_target $M tokenize --tokenizer bytes --input "$O/text/target_mix.txt" --doc-split blank-lines --out "$O/shards/target_mix.shard" --domain target_mix
    touch "$O/shards/done"
fi
SRC=(); for d in $DOMS; do SRC+=("$d=$O/shards/train_$d.shard"); done
TGT=("mix=$O/shards/target_mix.shard:1" "math=$O/shards/val_math.shard:0.5")
COMMON=(--config "$CFG" --batch "$B" --seq "$T" --seed 1 --target-batches 8)
[ -f "$O/influence/mixture.json" ] || spawn timed mix_influence $M mix --method influence --source "${SRC[@]}" --target "${TGT[@]}" \
    "${COMMON[@]}" --steps "$PROXY_STEPS" --checkpoints "$CKPTS" --samples "$SAMPLES" --out "$O/influence"
[ -f "$O/simulate/mixture.json" ] || spawn timed mix_simulate $M mix --method simulate --source "${SRC[@]}" --target "${TGT[@]}" \
    "${COMMON[@]}" --runs "$RUNS" --sim-steps "$SIM_STEPS" --heldout "$HELDOUT" --out "$O/simulate" \
    $( [ "${MIX_LOO:-1}" = 1 ] && echo --loo --steps "$LOO_STEPS" )
wait_all
# uniform and natural mixtures, as hand-written mixture.json files
"$PY" - "$O" $DOMS <<'PYEOF'
import json, os, sys
o, doms = sys.argv[1], sys.argv[2:]
nat = json.load(open(os.path.join(o, "text/natural.json")))
for arm, w in (("uniform", {d: 1.0 for d in doms}), ("natural", {d: float(nat[d]) for d in doms})):
    os.makedirs(os.path.join(o, arm), exist_ok=True)
    s = sum(w.values())
    m = {"format": "mobilellm-mixture", "version": 1, "method": arm,
         "domains": [{"name": d, "weight": w[d] / s, "shards": [f"../shards/train_{d}.shard"]} for d in doms]}
    json.dump(m, open(os.path.join(o, arm, "mixture.json"), "w"), indent=1)
PYEOF
VAL=(); for d in $DOMS; do VAL+=("$O/shards/val_$d.shard"); done
student() { # ARM SEED: train, held-out loss, zero-shot MC (each step kept when done)
    local S="$O/student_$1_s$2" last t
    last=$(printf '%s/ckpt_%08d.h5' "$S" "$STUDENT_STEPS")
    [ -f "$last" ] || timed "student_$1_s$2" $M train --config "$CFG" --mixture "$O/$1/mixture.json" --batch "$B" \
        --seq "$T" --steps "$STUDENT_STEPS" --warmup 20 --lr 2e-3 --seed "$2" --out "$S" --quiet
    [ -s "$S/eval.jsonl" ] || { $M eval --ckpt "$last" --data "${VAL[@]}" "$O/shards/target_mix.shard" --batch "$B" --seq "$T" \
        --max-batches 16 >"$S/eval.jsonl.tmp" 2>>"$LOG" && mv "$S/eval.jsonl.tmp" "$S/eval.jsonl"; } || return 1
    for t in $MC_TASKS; do
        [ -f "$S/mc_$t.json" ] || timed "mc_$1_s$2_$t" $M eval --ckpt "$last" --task "$t" --limit "$MC_LIMIT" \
            --max-len "$MC_MAX_LEN" --json "$S/mc_$t.json"
    done
}
for seed in $SEEDS; do
    for arm in uniform natural influence simulate; do spawn student "$arm" "$seed"; done
done
wait_all
# the wall time of this invocation (a restarted run records one line per invocation)
echo "total $(( $(date +%s) - t_all ))" >>"$O/times.txt"
"$PY" scripts/plot_mix.py "$O" "$O/mix.svg" >"$O/results.md"
cat "$O/results.md"
echo "plot: $O/mix.svg; results: $O/results.md, $O/results.json"
