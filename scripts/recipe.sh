#!/usr/bin/env bash
# The MobileLLM-Pro training recipe at small scale, in one command (docs/recipe.md):
#
#   scripts/recipe.sh [--tiny] [--data debian|shared] [--teacher CKPT.h5|HF_DIR] [--tokenizer bytes|FILE] OUT
#
# Phases, in order, each with its wall time, metrics and a progress line with an ETA for the whole:
#   data        a multi-domain corpus (code, prose, math) with held-out documents, and synthetic pass-key rows
#   tokenizer   byte-level BPE trained on the corpus (bytes with --tiny; the teacher's with an HF --teacher);
#               every split tokenized into shards
#   mixture     domain weights from a proxy's influence (mobilellm mix)
#   teacher     a larger model: a retrieval warm-up on pass-key rows, then the mixture at 4x the student's
#               context (or --teacher)
#   pretrain    the student (layer sharing): the same warm-up, then cross-entropy on the mixture: the CE arm
#   distill     the same student and tokens with forward-KL distillation from the teacher
#   ipd         context extension from the distilled student: implicit positional distillation (short documents
#               packed into long windows) against CE on long documents and against no extension
#   specialists one specialist per domain annealed from the extended student (LR -> 0)
#   merge       the specialists merged with searched weights and with a uniform average
#   qat         4-bit (q4_0) QAT with self-distillation of the merged model, against PTQ of the same model
#   export      GGUF q4_0, HF safetensors + tokenizer, ExecuTorch; each checked in its engine when installed
# then OUT/report.json and OUT/report.md (scripts/recipe_report.py).
#
# Resumable: a finished phase is not redone. Each phase records its settings (with those of the phases before
# it); a phase whose settings changed is redone, and so is everything after it. Run it under `nice` on a
# shared machine. Environment: RECIPE_<SIZE> overrides a size (RECIPE_PRE_STEPS, RECIPE_TEACH_STEPS, RECIPE_T, ...: the
# names in the sizes block below), M (a built mobilellm binary: skips installing packages and building),
# ML_SHARED_DIR (the shared folder for --data shared; default ../shared), ML_EXECUTORCH_VENV
# (default ~/.cache/mobilellm/venv-executorch), ML_TRANSFORMERS_VENV (default ~/.cache/mobilellm/venv),
# MOBILELLM_CACHE (where tests/cli/gguf_llamacpp.sh put llama.cpp; default ~/.cache/mobilellm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

main() { # the whole run in one function: bash parses it before running, so editing this file cannot derail a run
local SCALE=default DATA=debian TEACHER_IN="" TOK_IN="" OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --tiny) SCALE=tiny ;;
    --data) DATA=${2:?--data needs debian or shared}; shift ;;
    --teacher) TEACHER_IN=${2:?--teacher needs a path}; shift ;;
    --tokenizer) TOK_IN=${2:?--tokenizer needs bytes or a file}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "recipe.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "recipe.sh: one OUT directory, got $OUT and $1" >&2; exit 2; }; OUT=$1 ;;
    esac
    shift
done
[ -n "$OUT" ] || { echo "usage: scripts/recipe.sh [--tiny] [--data debian|shared] [--teacher PATH] OUT" >&2; exit 2; }
case $DATA in debian | shared) ;; *) echo "recipe.sh: --data $DATA: expected debian or shared" >&2; exit 2 ;; esac
local SHARED=${ML_SHARED_DIR:-$ROOT/../shared}
[ "$DATA" = debian ] || [ -d "$SHARED/data" ] || { echo "recipe.sh: --data shared: no $SHARED/data (set ML_SHARED_DIR)" >&2; exit 2; }
if [ -n "$TEACHER_IN" ]; then
    [ -e "$TEACHER_IN" ] || { echo "recipe.sh: --teacher $TEACHER_IN: no such file or directory" >&2; exit 2; }
    TEACHER_IN=$(cd "$(dirname "$TEACHER_IN")" && pwd)/$(basename "$TEACHER_IN")
    if [ -d "$TEACHER_IN" ] && [ -z "$TOK_IN" ]; then # an HF directory brings its tokenizer
        for f in tokenizer.model tokenizer.json; do [ -f "$TEACHER_IN/$f" ] && TOK_IN=$TEACHER_IN/$f && break; done
        [ -n "$TOK_IN" ] || { echo "recipe.sh: --teacher $TEACHER_IN has no tokenizer.model or tokenizer.json" >&2; exit 2; }
    fi
    [ -n "$TOK_IN" ] || { echo "recipe.sh: --teacher CKPT.h5 needs --tokenizer (bytes or the teacher's file)" >&2; exit 2; }
fi
if [ -n "$TOK_IN" ] && [ "$TOK_IN" != bytes ]; then
    [ -f "$TOK_IN" ] || { echo "recipe.sh: --tokenizer $TOK_IN: no such file" >&2; exit 2; }
    TOK_IN=$(cd "$(dirname "$TOK_IN")" && pwd)/$(basename "$TOK_IN")
fi

# ---- sizes: --tiny checks the pipeline in minutes; the default gives figures worth reading in about 30
local T L PK_ROWS PK_BYTES PK_MID_BYTES PK_LONG_BYTES PK_SHARE MB VOCAB EVAL_BATCHES PK_SAMPLES
local MIX_STEPS MIX_SAMPLES WARM_STEPS TEACH_STEPS PRE_STEPS ARM_STEPS SPEC_STEPS QAT_STEPS TRIALS B S_CFG T_CFG
if [ "$SCALE" = tiny ]; then
    T=256 L=512 B=4 MB=0.25 VOCAB=bytes PK_ROWS=300 PK_BYTES=20,100 PK_MID_BYTES=100,200 PK_LONG_BYTES=150,400
    PK_SHARE=0.3 MIX_STEPS=8 MIX_SAMPLES=4 WARM_STEPS=4 TEACH_STEPS=12 PRE_STEPS=12 ARM_STEPS=3 SPEC_STEPS=3 QAT_STEPS=3
    TRIALS=3 EVAL_BATCHES=2 PK_SAMPLES=2
    S_CFG=configs/recipe-tiny-student.json T_CFG=configs/recipe-tiny-teacher.json
else
    # pass-key rows: short (dense: the retrieval warm-up), middle (needle up to ~T from the question), long (~L)
    T=256 L=1024 B=16 MB=3 VOCAB=2048 PK_ROWS=20000 PK_BYTES=20,100 PK_MID_BYTES=100,550 PK_LONG_BYTES=300,2600
    PK_SHARE=0.4 MIX_STEPS=80 MIX_SAMPLES=12 WARM_STEPS=500 TEACH_STEPS=200 PRE_STEPS=300 ARM_STEPS=40 SPEC_STEPS=30
    QAT_STEPS=30 TRIALS=8 EVAL_BATCHES=8 PK_SAMPLES=10
    S_CFG=configs/recipe-student.json T_CFG=configs/recipe-teacher.json
fi
# any size can be overridden from the environment (RECIPE_PRE_STEPS=100 ...); it is part of the phases' settings
local v
for v in T L B MB VOCAB PK_ROWS PK_BYTES PK_MID_BYTES PK_LONG_BYTES PK_SHARE MIX_STEPS MIX_SAMPLES WARM_STEPS TEACH_STEPS \
    PRE_STEPS ARM_STEPS \
    SPEC_STEPS QAT_STEPS TRIALS EVAL_BATCHES PK_SAMPLES; do
    local ov=RECIPE_$v
    [ -n "${!ov:-}" ] && printf -v "$v" '%s' "${!ov}"
done
[ -n "$TOK_IN" ] && VOCAB=$TOK_IN
local KEY_DIGITS=3 # short keys: a few tokens to copy (MobileLLM's evaluation uses 5 digits)
local BL=$((B * T / L > 0 ? B * T / L : 1)) # rows per step at L: the same tokens per step as at T
local PY=/usr/bin/python3
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
grep -q -m1 avx512f /proc/cpuinfo || unset OPENBLAS_CORETYPE

# ---- install and build (as scripts/demo.sh), unless a binary is given
if [ -z "${M:-}" ]; then
    "$ROOT/scripts/install_deps.sh" --recipe
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ROOT/build" -j"$(nproc)" --target mobilellm >/dev/null
    M=$ROOT/build/mobilellm
fi
[ -x "$M" ] || { echo "recipe.sh: $M is not an executable" >&2; exit 2; }
M=$(cd "$(dirname "$M")" && pwd)/$(basename "$M")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
mkdir -p "$OUT/state" "$OUT/logs"

# ---- phase machinery
local PHASES=(data tokenizer mixture teacher pretrain distill ipd specialists merge qat export)
# expected seconds per phase on 2 idle cores (the ETA scales them by how fast the finished phases ran)
local -A EXPECT
if [ "$SCALE" = tiny ]; then
    EXPECT=([data]=5 [tokenizer]=5 [mixture]=15 [teacher]=15 [pretrain]=10 [distill]=15 [ipd]=25 [specialists]=15
        [merge]=10 [qat]=10 [export]=10)
else
    EXPECT=([data]=10 [tokenizer]=30 [mixture]=40 [teacher]=650 [pretrain]=400 [distill]=300 [ipd]=260
        [specialists]=120 [merge]=90 [qat]=90 [export]=30)
fi
local T0=$(date +%s) CHAIN="scale=$SCALE"
log() { echo "[recipe $(($(date +%s) - T0))s] $*"; }
run() { # run LOG CMD...: the command's output to OUT/logs/LOG.log; on failure its tail and exit
    local name=$1; shift
    echo "\$ $*" >"$OUT/logs/$name.log"
    if ! "$@" >>"$OUT/logs/$name.log" 2>&1; then
        echo "recipe.sh: FAILED: $name (log: $OUT/logs/$name.log):" >&2
        tr '\r' '\n' <"$OUT/logs/$name.log" | tail -5 >&2
        exit 1
    fi
}
eta() { # seconds left for the phases from index $1 on, scaled by the measured/expected ratio so far
    local i=$1 left=0 done_exp=0 done_real=0 p
    for p in "${PHASES[@]:0:$i}"; do
        [ -f "$OUT/state/$p.seconds" ] || continue
        done_exp=$((done_exp + EXPECT[$p])) done_real=$((done_real + $(cat "$OUT/state/$p.seconds")))
    done
    for p in "${PHASES[@]:$i}"; do left=$((left + EXPECT[$p])); done
    # scaled only once the finished phases are expected to take five minutes: the first ones (data, tokenizer,
    # mixture) are mostly fixed costs and would scale the training phases by a factor that says nothing about them
    [ $done_exp -ge 300 ] && [ $done_real -gt 0 ] && left=$((left * done_real / done_exp))
    echo $left
}
phase() { # phase NAME SETTINGS: 0 when the phase must run (a fresh directory OUT/NAME), 1 when it is done
    local name=$1 i=0 p
    CHAIN="$CHAIN | $name: $2"
    for p in "${PHASES[@]}"; do [ "$p" = "$name" ] && break; i=$((i + 1)); done
    if [ -f "$OUT/state/$name.done" ] && [ "$(cat "$OUT/state/$name.settings" 2>/dev/null)" = "$CHAIN" ]; then
        log "phase $((i + 1))/${#PHASES[@]} $name: done before ($(cat "$OUT/state/$name.seconds")s), kept"
        return 1
    fi
    if [ -f "$OUT/state/$name.settings" ] && [ "$(cat "$OUT/state/$name.settings")" != "$CHAIN" ]; then
        log "phase $name: settings changed (its own or an earlier phase's): redone"
    fi
    rm -f "$OUT/state/$name.done" "$OUT/state/$name.seconds" "$OUT/state/$name.metrics.json"
    rm -rf "${OUT:?}/$name"
    mkdir -p "$OUT/$name"
    printf '%s' "$CHAIN" >"$OUT/state/$name.settings"
    PHASE_T0=$(date +%s)
    log "phase $((i + 1))/${#PHASES[@]} $name: started; elapsed $((PHASE_T0 - T0))s, ETA for the whole ~$(eta $i)s"
    return 0
}
finish() { # finish NAME METRICS_JSON
    local s=$(($(date +%s) - PHASE_T0))
    printf '%s\n' "$2" >"$OUT/state/$1.metrics.json"
    echo $s >"$OUT/state/$1.seconds"
    touch "$OUT/state/$1.done"
    log "phase $1: finished in ${s}s: $2"
}
json() { $PY -c "import json,sys; print(json.dumps($1))" "${@:2}"; } # a Python expression over sys.argv as JSON
last_ckpt() { ls "$1"/ckpt_*.h5 | tail -1; }
tokenizer_in() { local f; for f in "$1"/tokenizer.*; do [ -f "$f" ] && echo "$f" && return; done; echo bytes; }

# evaluation: held-out loss per domain at T (OUT/eval/LABEL.json) and pass-key accuracy at T, 2T, 4T
mkdir -p "$OUT/eval" "$OUT/passkey"
local VAL=() DOMAINS=()
evaluate() { # evaluate LABEL CKPT
    local label=$1 ck=$2 f=${1//:/_}
    run "eval_$f" "$M" eval --ckpt "$ck" --data "${VAL[@]}" --batch 4 --seq "$T" --max-batches "$EVAL_BATCHES"
    $PY - "$OUT/logs/eval_$f.log" "$OUT/eval/$f.json" "$label" <<'PYEOF'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
d = {r["domain"]: r["loss"] for r in rows if "domain" in r}
d["avg"] = sum(d.values()) / len(d)
json.dump({"label": sys.argv[3], "loss": d}, open(sys.argv[2], "w"))
PYEOF
}
passkey() { # passkey LABEL CKPT
    local f=${1//:/_}
    run "passkey_$f" "$M" passkey --ckpt "$2" --tokenizer "$TOK" --lengths "$T,$((2 * T)),$((4 * T))" \
        --samples "$PK_SAMPLES" --key-digits "$KEY_DIGITS" --seed 3 --json "$OUT/passkey/$f.json"
}

# ======================================================================================= 1. data
local TXT=$OUT/data/text
if phase data "source=$DATA mb=$MB rows=$PK_ROWS bytes=$PK_BYTES,$PK_MID_BYTES,$PK_LONG_BYTES key=$KEY_DIGITS"; then
    if [ "$DATA" = debian ]; then
        run data_text $PY scripts/recipe_data.py debian "$TXT" --mb "$MB" --long-bytes $((4 * L))
    else
        run data_text $PY scripts/recipe_data.py shared "$SHARED/data" "$TXT" --mb "$MB" --long-bytes $((4 * L))
    fi
    # over the evaluation's own filler (the standard pass-key test's), so that the key is the only thing to learn
    # in a row: short rows (many per window) for the retrieval warm-up, middle ones (needle and question within
    # T), long ones (up to L apart) for the teacher and for CE on long documents
    run passkey_rows "$M" passkey-rows --rows "$PK_ROWS" --bytes "$PK_BYTES" --seed 7 --key-digits "$KEY_DIGITS" \
        --out "$TXT/passkey.jsonl"
    run passkey_rows_mid "$M" passkey-rows --rows $((PK_ROWS / 4)) --bytes "$PK_MID_BYTES" --seed 9 \
        --key-digits "$KEY_DIGITS" --out "$TXT/passkey_mid.jsonl"
    run passkey_rows_long "$M" passkey-rows --rows $((PK_ROWS / 4)) --bytes "$PK_LONG_BYTES" --seed 8 \
        --key-digits "$KEY_DIGITS" --out "$TXT/passkey_long.jsonl"
    finish data "$(json 'json.load(open(sys.argv[1]))["splits"]' "$TXT/corpus.json")"
fi
mapfile -t DOMAINS < <($PY -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["domains"]))' "$TXT/corpus.json")

# ======================================================================================= 2. tokenizer
local SH=$OUT/tokenizer TOK
if phase tokenizer "vocab=$VOCAB"; then
    if [ "$VOCAB" = bytes ]; then
        TOK=bytes
    elif [ -f "$VOCAB" ]; then
        cp "$VOCAB" "$SH/$(basename "$VOCAB")"
    else
        run tokenizer_train "$M" tokenizer train --vocab "$VOCAB" --input "$TXT/tokenizer_text.txt" --out "$SH/tokenizer.json"
    fi
    TOK=$(tokenizer_in "$SH")
    local tk=(--tokenizer "$TOK" --jsonl-field text --bos --eos)
    for d in "${DOMAINS[@]}"; do
        run "tok_$d" "$M" tokenize "${tk[@]}" --input "$TXT/train_$d.jsonl" --domain "$d" --out "$SH/$d.shard"
        run "tok_val_$d" "$M" tokenize "${tk[@]}" --input "$TXT/val_$d.jsonl" --domain "$d" --out "$SH/val_$d.shard"
    done
    run tok_passkey "$M" tokenize "${tk[@]}" --input "$TXT/passkey.jsonl" --domain passkey --out "$SH/passkey.shard"
    run tok_passkey_mid "$M" tokenize "${tk[@]}" --input "$TXT/passkey_mid.jsonl" --domain passkey --out "$SH/passkey_mid.shard"
    run tok_passkey_long "$M" tokenize "${tk[@]}" --input "$TXT/passkey_long.jsonl" --domain passkey --out "$SH/passkey_long.shard"
    run tok_long "$M" tokenize "${tk[@]}" --input "$TXT/long.jsonl" --domain long --out "$SH/long.shard"
    for f in "$SH"/*.shard; do "$M" data info "$f" | sed -n 1,3p >>"$OUT/logs/tokenizer_info.log"; done
    finish tokenizer "$($PY - "$SH" "$TXT/corpus.json" "$TOK" <<'PYEOF'
import json, os, re, subprocess, sys
sh, corpus, tok = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
m = {"tokenizer": os.path.basename(tok)}
for f in sorted(os.listdir(sh)):
    if f.endswith(".shard"):
        info = open(os.path.join(os.path.dirname(sh), "logs", "tok_" + ("val_" + f[4:-6] if f.startswith("val_") else f[:-6]) + ".log")).read()
        n = re.search(r"documents, (\d+) tokens", info)
        m["tokens_" + f[:-6]] = int(n.group(1)) if n else None
tr = corpus["splits"]
m["bytes_per_token"] = {d: round(tr[d]["train"]["bytes"] / m["tokens_" + d], 3) for d in corpus["domains"] if m.get("tokens_" + d)}
print(json.dumps(m))
PYEOF
)"
fi
TOK=$(tokenizer_in "$SH")
for d in "${DOMAINS[@]}"; do VAL+=("$SH/val_$d.shard"); done

# model configs: the presets with the tokenizer's vocabulary and special ids
mkdir -p "$OUT/configs"
local STUDENT_CFG=$OUT/configs/student.json TEACHER_CFG=$OUT/configs/teacher.json
local TEACHER_HF=""
[ -n "$TEACHER_IN" ] && [ -d "$TEACHER_IN" ] && TEACHER_HF=$TEACHER_IN/config.json
$PY - "$TOK" "$S_CFG" "$STUDENT_CFG" "$T_CFG" "$TEACHER_CFG" "$TEACHER_HF" <<'PYEOF'
import json, sys
tok, teacher_hf = sys.argv[1], sys.argv[6]
if teacher_hf:  # the student takes the brought teacher's vocabulary and special ids
    t = json.load(open(teacher_hf))
    v, bos, eos, pad = t["vocab_size"], t.get("bos_token_id"), t.get("eos_token_id"), t.get("pad_token_id")
elif tok == "bytes":
    v, bos, eos, pad = 259, 256, 257, 258
elif tok.endswith(".json"):  # tokenizer train: the last two ids are BOS and EOS
    t = json.load(open(tok))
    v = len(t["model"]["vocab"]) + len(t.get("added_tokens", []))
    bos, eos, pad = v - 2, v - 1, v - 1
else:
    raise SystemExit(f"recipe.sh: {tok}: a SentencePiece tokenizer comes with --teacher HF_DIR (its vocabulary)")
for src, dst in ((sys.argv[2], sys.argv[3]), (sys.argv[4], sys.argv[5])):
    c = json.load(open(src))
    c.update(vocab_size=v, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad if pad is not None else eos)
    json.dump(c, open(dst, "w"), indent=2)
PYEOF

# ======================================================================================= 3. mixture
local MIXDIR=$OUT/mixture
if phase mixture "steps=$MIX_STEPS samples=$MIX_SAMPLES B=$B T=$T"; then
    local src=() tgt=()
    for d in "${DOMAINS[@]}"; do src+=("$d=$SH/$d.shard"); tgt+=("$d=$SH/val_$d.shard"); done
    run mix "$M" mix --source "${src[@]}" --target "${tgt[@]}" --config "$STUDENT_CFG" --out "$MIXDIR/run" \
        --method influence --steps "$MIX_STEPS" --batch "$B" --seq $((T / 2)) --checkpoints 2 --samples "$MIX_SAMPLES" \
        --target-batches 2 --seed 1
    cp "$MIXDIR/run/mixture.json" "$MIXDIR/mixture.json"
    finish mixture "$(json '{d["name"]: round(d["weight"], 4) for d in json.load(open(sys.argv[1]))["domains"]}' "$MIXDIR/mixture.json")"
fi
# training sources: the mixture's weights scaled to leave PK_SHARE for pass-key rows
local SOURCES=() LONGSRC=() TEACHSRC=()
mapfile -t SOURCES < <($PY - "$MIXDIR/mixture.json" "$SH" "$PK_SHARE" <<'PYEOF'
import json, sys
mix, sh, pk = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
for d in mix["domains"]:
    print(f"{sh}/{d['name']}.shard:{(1 - pk) * d['weight']:.6f}:{d['name']}")
PYEOF
)
local PKS="$SH/passkey.shard:$(json "$PK_SHARE / 2"):passkey" PKM="$SH/passkey_mid.shard:$(json "$PK_SHARE / 2"):passkey_mid"
TEACHSRC=("${SOURCES[@]}" "$PKS" "$SH/passkey_mid.shard:$(json "$PK_SHARE / 4"):passkey_mid"
    "$SH/passkey_long.shard:$(json "$PK_SHARE / 4"):passkey_long")
LONGSRC=("$SH/long.shard:$(json "1 - $PK_SHARE"):long" "$PKS" "$SH/passkey_long.shard:$(json "$PK_SHARE / 2"):passkey_long")
SOURCES+=("$PKS" "$PKM")
# The retrieval warm-up: pass-key rows alone (short ones, many to a window, and middle ones), each attending only
# within itself. Retrieval needs an induction circuit, which a model of this size forms only after a few hundred
# steps of such rows; on the mixture with 40% pass-key rows it had not formed after 500 (docs/recipe.md).
local WARMSRC=("$SH/passkey.shard:0.75:passkey" "$SH/passkey_mid.shard:0.25:passkey_mid")
warm_up() { # warm_up LOG CONFIG OUT_CKPT
    run "$1" "$M" train --config "$2" --source "${WARMSRC[@]}" --doc-mask --seq "$T" --batch "$B" --steps "$WARM_STEPS" \
        --lr 3e-3 --warmup $((WARM_STEPS / 20 + 1)) --schedule cosine --seed 1 --keep 1 --eval-every 1000000 \
        --out "$(dirname "$3")/$1_run"
    cp "$(last_ckpt "$(dirname "$3")/$1_run")" "$3"
}

# ======================================================================================= 4. teacher
local TEACHER=$OUT/teacher/teacher.h5
if phase teacher "in=$TEACHER_IN warm=$WARM_STEPS steps=$TEACH_STEPS L=$L BL=$BL"; then
    if [ -n "$TEACHER_IN" ]; then
        if [ -d "$TEACHER_IN" ]; then run teacher_import "$M" import --from "$TEACHER_IN" --out "$TEACHER"
        else cp "$TEACHER_IN" "$TEACHER"; fi
    else # the retrieval warm-up at T, then at 4T, so that it retrieves where the student is extended to
        warm_up teacher_warm "$TEACHER_CFG" "$OUT/teacher/warm.h5"
        # each row attending within itself, as in the warm-up: packed rows' keys would be distractors
        run teacher_train "$M" train --init "$OUT/teacher/warm.h5" --source "${TEACHSRC[@]}" --doc-mask --seq "$L" \
            --batch "$BL" --steps "$TEACH_STEPS" --lr 1e-3 --warmup $((TEACH_STEPS / 20 + 1)) --schedule cosine --seed 1 \
            --out "$OUT/teacher/run" --keep 1
        cp "$(last_ckpt "$OUT/teacher/run")" "$TEACHER"
    fi
    evaluate teacher "$TEACHER"
    passkey teacher "$TEACHER"
    finish teacher "$(json '{"params": int(sys.argv[1])}' "$("$M" info "$TEACHER" | sed -n 's/^parameters *\([0-9]*\).*/\1/p')")"
fi
local THETA # the teacher's RoPE theta, for the extension arms ("rope         theta 500000, ...")
THETA=$("$M" info "$TEACHER" | sed -n 's/^rope *theta \([0-9.e+]*\).*/\1/p')
[ -n "$THETA" ] || { echo "recipe.sh: cannot read the RoPE theta of $TEACHER" >&2; exit 1; }

# ======================================================================================= 5. pretrain (CE arm)
# both arms start from one retrieval warm-up (OUT/pretrain/warm.h5) and see the same batches after it; each row
# attends within itself (without it, the key of other packed pass-key rows undid the warm-up's retrieval: 37% -> 3%)
local STU=(--init "$OUT/pretrain/warm.h5" --source "${SOURCES[@]}" --doc-mask --seq "$T" --batch "$B" --steps "$PRE_STEPS"
    --lr 3e-3 --warmup $((PRE_STEPS / 20 + 1)) --schedule cosine --seed 1 --keep 1 --eval-every 1000000)
if phase pretrain "warm=$WARM_STEPS steps=$PRE_STEPS B=$B T=$T pk=$PK_SHARE doc-mask"; then
    warm_up pretrain_warm "$STUDENT_CFG" "$OUT/pretrain/warm.h5"
    passkey warm-up "$OUT/pretrain/warm.h5"
    run pretrain "$M" train "${STU[@]}" --out "$OUT/pretrain/run"
    cp "$(last_ckpt "$OUT/pretrain/run")" "$OUT/pretrain/ce.h5"
    evaluate ce "$OUT/pretrain/ce.h5"
    passkey ce "$OUT/pretrain/ce.h5"
    finish pretrain "$(json '{"tokens": int(sys.argv[1])}' $((PRE_STEPS * B * T)))"
fi

# ======================================================================================= 6. distill (KD arm)
if phase distill "steps=$PRE_STEPS B=$B T=$T loss=fkl doc-mask"; then
    run distill "$M" distill --teacher "$TEACHER" --loss fkl --temperature 1 --ce-weight 0 "${STU[@]}" --out "$OUT/distill/run"
    cp "$(last_ckpt "$OUT/distill/run")" "$OUT/distill/distilled.h5"
    evaluate distilled "$OUT/distill/distilled.h5"
    passkey distilled "$OUT/distill/distilled.h5"
    finish distill "$(json '{"tokens": int(sys.argv[1])}' $((PRE_STEPS * B * T)))"
fi
local STUDENT=$OUT/distill/distilled.h5

# ======================================================================================= 7. ipd
# From the distilled student, the same tokens per arm at L = 4T: IPD (KD on the short mixture packed into L,
# positions continuing through the window), CE on long documents at L, and no extension (the student as is).
# Both extension arms take the teacher's RoPE theta.
# Both arms block-causal (--doc-mask), as Pro packs IPD's windows: unmasked, the other packed rows' keys undid the
# student's retrieval in both arms (docs/recipe.md). With RoPE a block-causal window sees only short relative
# distances, so IPD here is distillation at high absolute positions, which RoPE does not distinguish.
local ARM=(--init "$STUDENT" --seq "$L" --batch "$BL" --steps "$ARM_STEPS" --lr 1e-3 --warmup $((ARM_STEPS / 10 + 1))
    --schedule cosine --seed 2 --rope-theta "$THETA" --doc-mask --keep 1)
if phase ipd "steps=$ARM_STEPS L=$L BL=$BL theta=$THETA doc-mask"; then
    run ipd "$M" distill --teacher "$TEACHER" --loss fkl --temperature 1 --ce-weight 0 --source "${SOURCES[@]}" \
        "${ARM[@]}" --out "$OUT/ipd/run"
    cp "$(last_ckpt "$OUT/ipd/run")" "$OUT/ipd/ipd.h5"
    run ce_long "$M" train --source "${LONGSRC[@]}" "${ARM[@]}" --out "$OUT/ipd/ce_long_run"
    cp "$(last_ckpt "$OUT/ipd/ce_long_run")" "$OUT/ipd/ce-long.h5"
    evaluate ipd "$OUT/ipd/ipd.h5"
    evaluate ce-long "$OUT/ipd/ce-long.h5"
    passkey ipd "$OUT/ipd/ipd.h5"
    passkey ce-long "$OUT/ipd/ce-long.h5"
    finish ipd "$($PY - "$OUT/passkey" "$T" <<'PYEOF'
import json, sys
out = {}
for arm, f in (("none", "distilled"), ("ipd", "ipd"), ("ce-long", "ce-long"), ("teacher", "teacher")):
    r = json.load(open(f"{sys.argv[1]}/{f}.json"))["results"]
    out[arm] = {str(p["length"]): p["accuracy"] for p in r}
print(json.dumps({"passkey_accuracy": out}))
PYEOF
)"
fi
local BASE=$OUT/ipd/ipd.h5

# ======================================================================================= 8. specialists
if phase specialists "steps=$SPEC_STEPS"; then
    local specs=()
    for d in "${DOMAINS[@]}"; do specs+=("$d=$SH/$d.shard"); done
    # MobileLLM-Pro anneals at 1e-5 -> 0 for ~500 steps; at a few dozen steps a small model needs more
    run specialists env M="$M" STEPS="$SPEC_STEPS" LR=3e-4 BATCH="$B" SEQ="$T" \
        scripts/anneal_specialists.sh "$BASE" "$OUT/specialists" "${specs[@]}"
    for d in "${DOMAINS[@]}"; do evaluate "specialist:$d" "$OUT/specialists/$d.h5"; done
    finish specialists "$(json '{"domains": sys.argv[1:]}' "${DOMAINS[@]}")"
fi

# ======================================================================================= 9. merge
if phase merge "trials=$TRIALS"; then
    local sd=()
    for d in "${DOMAINS[@]}"; do sd+=("$d=$SH/val_$d.shard"); done
    run merge_search "$M" merge --config "$OUT/specialists/uniform.yaml" --search --search-data "${sd[@]}" \
        --trials "$TRIALS" --seq "$T" --max-batches "$EVAL_BATCHES" --out "$OUT/merge/searched.yaml" --quiet
    run merge_searched "$M" merge --config "$OUT/merge/searched.yaml" --out "$OUT/merge/merged.h5" --quiet
    run merge_uniform "$M" merge --config "$OUT/specialists/uniform.yaml" --out "$OUT/merge/merged-uniform.h5" --quiet
    evaluate merged "$OUT/merge/merged.h5"
    evaluate merged-uniform "$OUT/merge/merged-uniform.h5"
    passkey merged "$OUT/merge/merged.h5"
    finish merge "$($PY - "$OUT/merge/searched.yaml" <<'PYEOF'
import re, sys  # the searched weights: "- model: PATH" then "parameters: {weight: W}" (the recipe anneal_specialists writes)
text, w, model = open(sys.argv[1]).read(), {}, None
for line in text.splitlines():
    m = re.search(r"model:\s*\"?([^\"\s]+)", line)
    if m:
        model = m.group(1).rsplit("/", 1)[-1].removesuffix(".h5")
    m = re.search(r"weight:\s*([-0-9.eE+]+)", line)
    if m and model:
        w[model] = float(m.group(1))
print(__import__("json").dumps({"searched_weights": w}))
PYEOF
)"
fi
local MERGED=$OUT/merge/merged.h5

# ======================================================================================= 10. qat
if phase qat "steps=$QAT_STEPS scheme=q4_0"; then
    run ptq "$M" quantize --ckpt "$MERGED" --scheme q4_0 --out "$OUT/qat/ptq.h5"
    run qat "$M" qat --init "$MERGED" --scheme q4_0 --source "${SOURCES[@]}" --seq "$T" --batch "$B" \
        --steps "$QAT_STEPS" --lr 1e-4 --seed 3 --keep 1 --out "$OUT/qat/run"
    cp "$(last_ckpt "$OUT/qat/run")" "$OUT/qat/qat.h5"
    evaluate ptq "$OUT/qat/ptq.h5"
    evaluate qat "$OUT/qat/qat.h5"
    passkey qat "$OUT/qat/qat.h5"
    finish qat "$(json '{"scheme": "q4_0", "steps": int(sys.argv[1])}' "$QAT_STEPS")"
fi

# ======================================================================================= 11. export
if phase export "gguf=q4_0"; then
    local E=$OUT/export
    local gtok=() htok=()
    [ "$TOK" != bytes ] && gtok=(--tokenizer "$TOK")
    htok=(--tokenizer "$TOK")
    run export_gguf "$M" export --ckpt "$OUT/qat/qat.h5" --format gguf --type q4_0 --out "$E/model-q4_0.gguf" "${gtok[@]}"
    run export_hf "$M" export --ckpt "$OUT/qat/qat.h5" --format hf --out "$E/hf" "${htok[@]}"
    # the engines' logits against ours on a held-out sample
    # (awk reads the whole dump: a reader that stopped early would fail the pipe)
    "$M" data dump "${VAL[0]}" | awk 'NR == 1 { for (i = 1; i <= NF && i <= 64; i++) printf "%s ", $i }' >"$E/ids.txt"
    run logits "$M" logits --ckpt "$OUT/qat/qat.h5" --tokens "$(cat "$E/ids.txt")" --out "$E/ours.npy"
    local checks
    checks=$(engine_llamacpp "$E"),$(engine_transformers "$E"),$(engine_executorch "$E")
    finish export "{$checks}"
fi

# ======================================================================================= report
run report $PY scripts/recipe_report.py "$OUT"
log "done: $OUT/report.md, $OUT/report.json"
}

# ---- engine checks of the export phase: each prints one JSON member "engine": {...}; a missing engine is
# "skipped: why"; a failed check is recorded with its message, never fatal
engine_llamacpp() { # GGUF q4_0 in llama.cpp (the build of tests/cli/gguf_llamacpp.sh), logits against ours
    local E=$1 cache=${MOBILELLM_CACHE:-$HOME/.cache/mobilellm}/node-llama-cpp-3.22.1
    local bin=$cache/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64 src=$cache/llama.cpp
    if [ ! -f "$bin/libllama.v0.5.0.so" ] || [ ! -f "$src/include/llama.h" ] || ! command -v cc >/dev/null; then
        echo '"llama.cpp": {"status": "skipped: llama.cpp not installed (tests/cli/gguf_llamacpp.sh installs it)"}'
        return
    fi
    mkdir -p "$E/llamacpp/lib"
    ln -sf "$bin/libllama.v0.5.0.so" "$E/llamacpp/lib/libllama.so"
    ln -sf "$bin/libggml.v0.5.0.so" "$E/llamacpp/lib/libggml.so"
    ln -sf "$bin/libggml-base.so" "$E/llamacpp/lib/libggml-base.so"
    if ! cc -O2 -I"$src/include" -I"$src/ggml/include" tests/interop/gguf_logits.c -L"$E/llamacpp/lib" -lllama -lggml \
        -lggml-base -Wl,-rpath,"$bin" -o "$E/llamacpp/gguf_logits" 2>"$E/llamacpp/cc.log"; then
        echo '"llama.cpp": {"status": "failed: tests/interop/gguf_logits.c does not compile"}'
        return
    fi
    if ! "$E/llamacpp/gguf_logits" "$E/model-q4_0.gguf" "$bin" "$E/llamacpp/logits.npy" $(cat "$E/ids.txt") \
        2>"$E/llamacpp/run.log"; then
        echo "\"llama.cpp\": {\"status\": \"failed: $(head -c 200 "$E/llamacpp/run.log" | tr -d '"\\\n')\"}"
        return
    fi
    compare_logits llama.cpp "$E/ours.npy" "$E/llamacpp/logits.npy"
}
engine_transformers() { # HF export in transformers (its venv), logits against ours
    local E=$1 venv=${ML_TRANSFORMERS_VENV:-$HOME/.cache/mobilellm/venv}
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import transformers" 2>/dev/null; then
        echo "\"transformers\": {\"status\": \"skipped: no transformers venv ($venv; scripts/interop_venv.sh)\"}"
        return
    fi
    "$venv/bin/python" - "$E/hf" "$E/ids.txt" "$E/transformers.npy" >"$E/transformers.log" 2>&1 <<'PYEOF' ||
import sys
import numpy as np, torch, transformers
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])  # the exported tokenizer loads too
ids = torch.tensor([[int(t) for t in open(sys.argv[2]).read().split()]])
with torch.no_grad():
    np.save(sys.argv[3], m(ids).logits[0].float().numpy())
PYEOF
    { echo "\"transformers\": {\"status\": \"failed: $(tail -1 "$E/transformers.log" | head -c 200 | tr -d '"\\')\"}"; return; }
    compare_logits transformers "$E/ours.npy" "$E/transformers.npy"
}
engine_executorch() { # ExecuTorch: the Meta-style checkpoint (scripts/hf_to_executorch.py), ExecuTorch's own export
    local E=$1 venv=${ML_EXECUTORCH_VENV:-$HOME/.cache/mobilellm/venv-executorch}
    if [ ! -x "$venv/bin/python" ]; then
        echo "\"executorch\": {\"status\": \"skipped: no executorch venv ($venv)\"}"
        return
    fi
    if ! /usr/bin/python3 scripts/hf_to_executorch.py "$E/hf" "$E/et" >"$E/executorch.log" 2>&1; then
        echo "\"executorch\": {\"status\": \"failed: hf_to_executorch.py: $(tail -1 "$E/executorch.log" | tr -d '"\\')\"}"
        return
    fi
    local n
    n=$(wc -w <"$E/ids.txt")
    # ExecuTorch's LLM export of the fp32 (dequantized) weights, every position's logits, no KV cache (run in a
    # folder whose name does not end in "executorch": its model factory then imports from the wrong package)
    if ! (cd "$E/et" && "$venv/bin/python" -m executorch.examples.models.llama.export_llama --model llama2 \
        --checkpoint consolidated.pth --params params.json -d fp32 --max_seq_length $((n + 1)) --max_context_length $((n + 1)) \
        --generate_full_logits --output_name model.pte) >>"$E/executorch.log" 2>&1 || [ ! -f "$E/et/model.pte" ]; then
        echo "\"executorch\": {\"status\": \"failed: export_llama (log: export/executorch.log)\"}"
        return
    fi
    "$venv/bin/python" - "$E/et/model.pte" "$E/ids.txt" "$E/executorch.npy" >>"$E/executorch.log" 2>&1 <<'PYEOF' ||
import sys
from pathlib import Path
import numpy as np, torch
from executorch.runtime import Runtime
method = Runtime.get().load_program(Path(sys.argv[1])).load_method("forward")
ids = [int(t) for t in open(sys.argv[2]).read().split()]
out = method.execute((torch.tensor([ids]),))[0]
np.save(sys.argv[3], out.float().numpy().reshape(len(ids), -1))
PYEOF
    { echo "\"executorch\": {\"status\": \"failed: runtime (log: export/executorch.log)\", \"pte\": \"export/et/model.pte\"}"; return; }
    echo "\"executorch\": $(compare_logits executorch "$E/ours.npy" "$E/executorch.npy" | sed 's/^"executorch": //' | sed 's/}$/, "pte": "export\/et\/model.pte"}/')"
    return
}
compare_logits() { # compare_logits ENGINE OURS.npy THEIRS.npy: max |diff| / max |logit| and top-1 agreement
    /usr/bin/python3 - "$@" <<'PYEOF'
import json, sys
import numpy as np
name, a, b = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
if a.shape != b.shape:
    print(json.dumps(name) + ": " + json.dumps({"status": f"failed: logits shape {b.shape}, ours {a.shape}"}))
else:
    rel = float(np.abs(a - b).max() / np.abs(a).max())
    top1 = float((a.argmax(1) == b.argmax(1)).mean())
    print(json.dumps(name) + ": " + json.dumps({"status": "checked", "max_rel_diff": float(f"{rel:.3g}"), "top1_agreement": top1,
                                                 "positions": int(a.shape[0])}))
PYEOF
}

main "$@"; exit  # on one line: bash reads no further, so editing this file during a run is harmless
