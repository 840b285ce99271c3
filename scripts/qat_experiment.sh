#!/usr/bin/env bash
# 4-bit quantization of the shared 28M teacher (../shared/teachers/mobilellm-28m-llama2tok), end to end
# (docs/experiments/qat.md): held-out loss per domain of
#   fp          the full-precision model
#   ptq-q4_0    round to nearest on llama.cpp's Q4_0 grid (mobilellm quantize)
#   ptq-int4    round to nearest on torchao's int4 group-32 grid
#   ptq-chan    round to nearest per output channel (int4-channel-lsq with its initial scales max|row|/7.5)
#   qat-ce      QAT on the int4 group-32 grid, cross-entropy only (--no-self-distill)
#   qat-sd      QAT on the same grid with self-distillation from the full-precision model (the default)
#   qat-lsq     QAT per output channel with learned scales (int4-channel-lsq), self-distillation
#   qat-q4_0    QAT on Q4_0 with self-distillation (exportable to GGUF as is)
# all QAT arms with the same steps, batch, data and learning rate; then the zero-shot multiple-choice tasks
# (hellaswag, piqa, arc_easy, arc_challenge: acc_norm of `mobilellm eval --task`, the first QAT_MC_LIMIT items).
#
#   scripts/qat_experiment.sh [tiny|default]      # tiny: a minute or two, to check the pipeline
#
# Sizes from the environment: QAT_STEPS, QAT_BATCH, QAT_SEQ, QAT_LR, QAT_EVAL_BATCHES, QAT_TEXT_MB, QAT_MC_LIMIT
# (items per task), QAT_MC_TASKS; QAT_ARMS picks the QAT arms (default all four). ML_BIN: the mobilellm binary
# (default build/mobilellm; a copy keeps a long run away from rebuilds).
# Outputs under runs/qat-SCALE (git-ignored): results.json, results.md. Restartable: finished arms and evaluations
# are kept. Run it under `nice` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

main() {
SCALE=${1:-default}
case "$SCALE" in
tiny) : "${QAT_STEPS:=4}" "${QAT_EVAL_BATCHES:=2}" "${QAT_TEXT_MB:=0.3}" "${QAT_MC_LIMIT:=8}" ;;
default) : "${QAT_STEPS:=30}" "${QAT_EVAL_BATCHES:=8}" "${QAT_TEXT_MB:=1}" "${QAT_MC_LIMIT:=20}" ;;
*) echo "usage: $0 [tiny|default]" >&2; exit 2 ;;
esac
B=${QAT_BATCH:-4}
T=${QAT_SEQ:-128}
LR=${QAT_LR:-1e-4}
OUT=${QAT_OUT:-runs/qat-$SCALE}
SHARED=${ML_SHARED:-../shared}
TEACHER=${QAT_TEACHER:-$SHARED/teachers/mobilellm-28m-llama2tok}
TOK=$TEACHER/tokenizer.model
DATA=$SHARED/data
M=${ML_BIN:-build/mobilellm}
MC_TASKS=${QAT_MC_TASKS:-hellaswag piqa arc_easy arc_challenge}
PY=/usr/bin/python3
mkdir -p "$OUT/data" "$OUT/logs" "$OUT/mc"
t0=$(date +%s)
stamp() { echo "[qat $(($(date +%s) - t0))s] $*"; }

# data: four domains, a held-out tenth of each (by document) for evaluation
bytes=$("$PY" -c "print(int($QAT_TEXT_MB * 1e6))")
declare -A SRCS=([stories]=stories/tinystories_train_prefix.txt [wiki]=wiki/enwiki_extract.txt
    [code]=code/python_cpython311_stdlib.txt [books]=books/tinyshakespeare.txt)
DOMAINS="stories wiki code books"
TRAIN=()
for d in $DOMAINS; do
    if [ ! -f "$OUT/data/$d.val.shard" ]; then
        head -c "$bytes" "$DATA/${SRCS[$d]}" >"$OUT/data/$d.txt"
        $M tokenize --tokenizer "$TOK" --input "$OUT/data/$d.txt" --doc-split blank-lines --bos --domain "$d" \
            --val-fraction 0.1 --val-out "$OUT/data/$d.val.shard" --out "$OUT/data/$d.shard" >"$OUT/logs/tok-$d.log"
    fi
    TRAIN+=("$OUT/data/$d.shard")
done
[ -f "$OUT/fp.h5" ] || $M import --from "$TEACHER" --out "$OUT/fp.h5" >/dev/null
stamp "data and model ready"

[ -f "$OUT/ptq-q4_0.h5" ] || $M quantize --ckpt "$OUT/fp.h5" --scheme q4_0 --out "$OUT/ptq-q4_0.h5" >/dev/null
[ -f "$OUT/ptq-int4.h5" ] || $M quantize --ckpt "$OUT/fp.h5" --scheme int4-g32 --out "$OUT/ptq-int4.h5" >/dev/null
[ -f "$OUT/ptq-chan.h5" ] || $M quantize --ckpt "$OUT/fp.h5" --scheme int4-channel-lsq --out "$OUT/ptq-chan.h5" >/dev/null
arm() { # arm NAME QAT-OPTIONS...
    local name=$1; shift
    local last="$OUT/$name/ckpt_$(printf %08d "$QAT_STEPS").h5"
    if [ ! -f "$last" ]; then
        stamp "$name: qat $*"
        local s=$(date +%s)
        $M qat --init "$OUT/fp.h5" --data "${TRAIN[@]}" --batch "$B" --seq "$T" --steps "$QAT_STEPS" --lr "$LR" \
            --seed 7 --out "$OUT/$name" --quiet "$@" >"$OUT/logs/$name.log"
        echo $(($(date +%s) - s)) >"$OUT/$name/seconds"
    fi
    cp "$last" "$OUT/$name.h5"
}
QAT_ARMS=${QAT_ARMS:-qat-ce qat-sd qat-lsq qat-q4_0}   # a subset runs (and is evaluated) alone
for a in $QAT_ARMS; do
    case $a in
    qat-ce) arm qat-ce --scheme int4-g32 --no-self-distill ;;
    qat-sd) arm qat-sd --scheme int4-g32 ;;
    qat-lsq) arm qat-lsq --scheme int4-channel-lsq ;;
    qat-q4_0) arm qat-q4_0 --scheme q4_0 ;;
    *) echo "unknown arm $a" >&2; exit 2 ;;
    esac
done

# held-out loss per domain and zero-shot multiple choice; kept per arm (and per QAT budget), domain or task, size
ARMS="fp ptq-q4_0 ptq-int4 ptq-chan $QAT_ARMS"
mkdir -p "$OUT/loss"
: >"$OUT/eval.tsv"
for a in $ARMS; do
    tag=$a; [ -d "$OUT/$a" ] && tag=$a.s$QAT_STEPS
    for d in $DOMAINS; do
        f="$OUT/loss/$tag.$d.b$QAT_EVAL_BATCHES"
        if [ ! -s "$f" ]; then
            $M eval --ckpt "$OUT/$a.h5" --data "$OUT/data/$d.val.shard" --batch "$B" --seq "$T" \
                --max-batches "$QAT_EVAL_BATCHES" | grep -o '"loss":[0-9.]*' | head -1 | cut -d: -f2 >"$f.tmp"
            mv "$f.tmp" "$f"
        fi
        printf '%s\t%s\t%s\n' "$a" "$d" "$(cat "$f")" >>"$OUT/eval.tsv"
    done
    : >"$OUT/mc/$a.tsv"
    for task in $MC_TASKS; do
        f="$OUT/mc/$tag.$task.n$QAT_MC_LIMIT.json"
        if [ ! -s "$f" ]; then
            $M eval --ckpt "$OUT/$a.h5" --task "$task" --tokenizer "$TOK" --limit "$QAT_MC_LIMIT" \
                2>>"$OUT/logs/mc.log" >"$f.tmp"
            mv "$f.tmp" "$f"
        fi
        printf '%s\t%s\n' "$task" "$(cat "$f")" >>"$OUT/mc/$a.tsv"
    done
    stamp "evaluated $a"
done
# how far each QAT arm moved on its grid (share of int4 / Q4_0 codes changed; learned scales against their start)
QCK=()
for a in $QAT_ARMS; do QCK+=("$OUT/$a.h5"); done
[ ${#QCK[@]} -gt 0 ] && "$PY" scripts/qat_codes.py "$OUT/fp.h5" "${QCK[@]}" >"$OUT/codes.jsonl"
"$PY" - "$OUT" "$QAT_STEPS" "$B" "$T" "$LR" "$ARMS" <<'EOF'
import json, math, sys, os
out, steps, B, T, lr, arm_list = sys.argv[1:7]
rows = [l.split("\t") for l in open(f"{out}/eval.tsv").read().split("\n") if l]
arms, doms = [], []
res = {}
for a, d, v in rows:
    if a not in arms: arms.append(a)
    if d not in doms: doms.append(d)
    res.setdefault(a, {})[d] = float(v)
for a in arms:
    res[a]["mean"] = sum(res[a][d] for d in doms) / len(doms)
    sec = f"{out}/{a}/seconds"
    if os.path.exists(sec): res[a]["train_seconds"] = int(open(sec).read())
# multiple choice: acc_norm with its binomial standard error sqrt(p (1 - p) / n)
mc, tasks = {}, []
for a in arm_list.split():
    for line in open(f"{out}/mc/{a}.tsv").read().splitlines():
        task, js = line.split("\t", 1)
        r = json.loads(js)
        if task not in tasks: tasks.append(task)
        n, p = r["items"], r["acc_norm"]
        mc.setdefault(a, {})[task] = {"items": n, "acc": r["acc"], "acc_norm": p, "se": math.sqrt(p * (1 - p) / n)}
tmp = f"{out}/results.json.tmp"
codes = {}
if os.path.exists(f"{out}/codes.jsonl"):
    for line in open(f"{out}/codes.jsonl"):
        c = json.loads(line)
        codes[os.path.basename(c.pop("ckpt"))[:-3]] = c
json.dump({"steps": int(steps), "batch": int(B), "seq": int(T), "lr": float(lr), "loss": res, "mc": mc, "codes": codes},
          open(tmp, "w"), indent=1)
os.replace(tmp, f"{out}/results.json")
fp = res["fp"]["mean"]
lines = ["| arm | " + " | ".join(doms) + " | mean | vs fp | " + " | ".join(tasks) + " |",
         "|---" * (len(doms) + 3 + len(tasks)) + "|"]
for a in arms:
    lines.append(f"| {a} | " + " | ".join(f"{res[a][d]:.4f}" for d in doms) + f" | {res[a]['mean']:.4f} | {res[a]['mean'] - fp:+.4f} | "
                 + " | ".join(f"{mc[a][t]['acc_norm']:.3f} ± {mc[a][t]['se']:.3f}" for t in tasks) + " |")
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
stamp "done: $OUT/results.md"
}
main "$@"
