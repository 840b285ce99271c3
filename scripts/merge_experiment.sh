#!/bin/bash
# Specialist annealing and merging, end to end, small enough for a workstation (docs/experiments/merge.md):
#   1. split four domains of ../shared/data (stories, math, code, wiki) into train / val / test documents
#   2. pre-train a small base model on all four
#   3. anneal one specialist per domain from the base: train --init BASE on that domain, LR decayed to 0
#   4. merge: uniform linear, TIES, DARE-TIES, and a linear merge whose weights `merge --search` picks on val
#   5. held-out (test) loss per domain of the base, each specialist and each merge -> results.tsv
#   6. zero-shot multiple choice (hellaswag, piqa, arc_easy, arc_challenge; the first MC_LIMIT items of each)
#      of the same models, with standard errors and chance -> mc.tsv; both tables in results.md, merge.svg
# One command, restartable: every step whose output exists is skipped (outputs are written atomically).
# Knobs (environment): OUT (default runs/merge_exp), BASE_STEPS, SPEC_STEPS, TRIALS, MC_LIMIT, MC_TASKS,
# JOBS (independent runs at once, default 2), THREADS (OpenMP threads of each), M (the binary),
# DATA (default ../shared/data relative to the repository).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M=${M:-$ROOT/build/mobilellm}
DATA=${DATA:-$ROOT/../shared/data}
OUT=${OUT:-$ROOT/runs/merge_exp}
BASE_STEPS=${BASE_STEPS:-400}
SPEC_STEPS=${SPEC_STEPS:-100}
TRIALS=${TRIALS:-12}
MC_LIMIT=${MC_LIMIT:-300}
# the MC window in bytes: some PIQA solutions are longer than the model's 512 positions (RoPE runs any length)
MC_MAX_LEN=${MC_MAX_LEN:-2048}
MC_TASKS=(${MC_TASKS:-hellaswag piqa arc_easy arc_challenge})
JOBS=${JOBS:-2}
B=8
T=128
RUN="nice -n ${NICE_LEVEL:-5}"
# one OpenMP thread by default: on a machine shared with other jobs, spinning OpenMP threads made a 2-thread
# eval 11x slower than 1 thread (measured: 51 s vs 4.6 s at load 11 on 2 cores). Set THREADS on a quiet machine.
# Independent runs (specialists, evaluations) go JOBS at a time instead: the model is too small to keep two
# threads busy, two processes are not.
export OMP_NUM_THREADS=${THREADS:-1}
DOMAINS=(stories math code wiki)
mkdir -p "$OUT/shards" "$OUT/merges"
log() { echo "[$(date +%H:%M:%S)] $*"; }
# spawn CMD...: run in the background, at most JOBS at once; wait_all: wait for them, exit 1 if one failed
PIDS=()
spawn() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.5; done; "$@" & PIDS+=($!); }
wait_all() { local p rc=0; for p in "${PIDS[@]}"; do wait "$p" || rc=1; done; PIDS=(); [ $rc = 0 ] || { echo "a background run failed (see its .log in $OUT)" >&2; exit 1; }; }
[ -x "$M" ] || { echo "build first: $M not found" >&2; exit 1; }

# 1. data
if [ ! -e "$OUT/text/.done" ]; then
    log "splitting $DATA into train/val/test documents"
    rm -rf "$OUT/text"
    $RUN python3 "$ROOT/scripts/merge_prepare.py" "$DATA" "$OUT/text"
    touch "$OUT/text/.done"
fi
for d in "${DOMAINS[@]}"; do
    for split in train val test; do
        s="$OUT/shards/$d-$split.shard"
        [ -e "$s" ] || $RUN "$M" tokenize --tokenizer bytes --input "$OUT/text/$d/$split" --doc-split file --eos \
            --domain "$d" --out "$s" >/dev/null
    done
done

# the model: MobileLLM's shape at 1.2M parameters (byte vocabulary, tied embeddings, GQA, SwiGLU)
cat >"$OUT/model.json" <<'EOF'
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 259, "hidden_size": 128,
 "intermediate_size": 384, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 32, "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "initializer_range": 0.02,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 258}
EOF

# 2. base
train_to() { # OUTPUT.h5 RUN_DIR train-args...: train into RUN_DIR, keep its last checkpoint as OUTPUT.h5
    local out="$1" dir="$2"
    shift 2
    [ -e "$out" ] && return 0
    rm -rf "$dir"
    $RUN "$M" train "$@" --batch $B --seq $T --out "$dir" --quiet >"$dir.log" 2>&1 || { cat "$dir.log" >&2; exit 1; }
    cp "$(ls "$dir"/ckpt_*.h5 | tail -1)" "$out.tmp" && mv "$out.tmp" "$out"
}
TRAIN_ALL=()
for d in "${DOMAINS[@]}"; do TRAIN_ALL+=("$OUT/shards/$d-train.shard"); done
log "base: $BASE_STEPS steps on all four domains"
train_to "$OUT/base.h5" "$OUT/run_base" --config "$OUT/model.json" --source \
    "$OUT/shards/stories-train.shard:1:stories" "$OUT/shards/math-train.shard:1:math" \
    "$OUT/shards/code-train.shard:1:code" "$OUT/shards/wiki-train.shard:1:wiki" \
    --steps "$BASE_STEPS" --lr 3e-3 --schedule cosine --warmup $((BASE_STEPS / 20)) --seed 1

# 3. specialists: annealed from the base on one domain, LR decayed linearly to zero
for d in "${DOMAINS[@]}"; do
    [ -e "$OUT/spec_$d.h5" ] && continue
    spawn train_to "$OUT/spec_$d.h5" "$OUT/run_spec_$d" --init "$OUT/base.h5" --data "$OUT/shards/$d-train.shard" \
        --steps "$SPEC_STEPS" --lr 1e-3 --schedule linear --min-lr-ratio 0 --warmup 0 --seed 2
    log "specialist $d: $SPEC_STEPS steps from the base, lr 1e-3 -> 0 (started)"
done
wait_all

# 4. merges
specs() { # the four specialists as recipe entries with PARAMS
    for d in "${DOMAINS[@]}"; do printf '  - model: %s\n    parameters: %s\n' "$OUT/spec_$d.h5" "$1"; done
}
{ echo "merge_method: linear"; echo "models:"; specs "{weight: 1.0}"; } >"$OUT/merges/uniform.yaml"
{ echo "merge_method: ties"; echo "base_model: $OUT/base.h5"; echo "models:"; specs "{weight: 1.0, density: 0.5}"; } \
    >"$OUT/merges/ties.yaml"
{ echo "merge_method: dare_ties"; echo "base_model: $OUT/base.h5"; echo "models:"; specs "{weight: 0.25, density: 0.5}";
  echo "seed: 1"; } >"$OUT/merges/dare_ties.yaml"
for m in uniform ties dare_ties; do
    [ -e "$OUT/merges/$m.h5" ] || { log "merge $m"; $RUN "$M" merge --config "$OUT/merges/$m.yaml" --out "$OUT/merges/$m.h5" --quiet >/dev/null; }
done
SEARCH_DATA=()
for d in "${DOMAINS[@]}"; do SEARCH_DATA+=("$d=$OUT/shards/$d-val.shard"); done
if [ ! -e "$OUT/merges/searched.yaml" ]; then
    log "search: $TRIALS linear-merge weightings scored on the val shards"
    $RUN "$M" merge --config "$OUT/merges/uniform.yaml" --search --search-data "${SEARCH_DATA[@]}" --trials "$TRIALS" \
        --batch $B --seq $T --max-batches 8 --seed 1 --out "$OUT/merges/searched.yaml" | tee "$OUT/merges/search.log"
fi
[ -e "$OUT/merges/searched.h5" ] || $RUN "$M" merge --config "$OUT/merges/searched.yaml" --out "$OUT/merges/searched.h5" --quiet >/dev/null

# 5. held-out loss per domain on the test shards
TEST=()
for d in "${DOMAINS[@]}"; do TEST+=("$OUT/shards/$d-test.shard"); done
MODELS=(base "$OUT/base.h5")
for d in "${DOMAINS[@]}"; do MODELS+=("spec_$d" "$OUT/spec_$d.h5"); done
for m in uniform ties dare_ties searched; do MODELS+=("merge_$m" "$OUT/merges/$m.h5"); done
eval_loss() { # NAME CKPT
    local e="$OUT/eval_$1.jsonl"
    $RUN "$M" eval --ckpt "$2" --data "${TEST[@]}" --batch $B --seq $T --max-batches ${EVAL_BATCHES:-24} \
        >"$e.tmp" 2>"$OUT/eval_$1.log" && mv "$e.tmp" "$e" || { cat "$OUT/eval_$1.log" >&2; return 1; }
}
log "test loss of $((${#MODELS[@]} / 2)) models"
for ((i = 0; i < ${#MODELS[@]}; i += 2)); do
    [ -e "$OUT/eval_${MODELS[i]}.jsonl" ] || spawn eval_loss "${MODELS[i]}" "${MODELS[i + 1]}"
done
wait_all

# 6. zero-shot multiple choice: the first MC_LIMIT items of each task (eval --json writes atomically)
log "zero-shot MC: ${MC_TASKS[*]}, $MC_LIMIT items each, window $MC_MAX_LEN"
for ((i = 0; i < ${#MODELS[@]}; i += 2)); do
    mkdir -p "$OUT/mc/${MODELS[i]}"
    for t in "${MC_TASKS[@]}"; do
        j="$OUT/mc/${MODELS[i]}/$t"
        [ -e "$j.json" ] || spawn $RUN "$M" eval --ckpt "${MODELS[i + 1]}" --task "$t" --limit "$MC_LIMIT" --max-len "$MC_MAX_LEN" \
            --json "$j.json" \
            >"$j.log" 2>&1
    done
done
wait_all
python3 - "$OUT" "$ROOT/scripts" "${MC_TASKS[*]}" "${DOMAINS[@]}" <<'PYEOF'
import json, os, sys
out, scripts, tasks, domains = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
sys.path.insert(0, scripts)
from mc_summary import summary
order = ["base"] + [f"spec_{d}" for d in domains] + [f"merge_{m}" for m in ("uniform", "ties", "dare_ties", "searched")]
rows = []
for name in order:
    lines = [json.loads(l) for l in open(os.path.join(out, f"eval_{name}.jsonl"))]
    loss = {l["domain"]: l["loss"] for l in lines if "domain" in l}
    rows.append([name] + [loss[d] for d in domains] + [sum(loss[d] for d in domains) / len(domains)])
with open(os.path.join(out, "results.tsv"), "w") as f:
    f.write("model\t" + "\t".join(domains) + "\tmean\n")
    for r in rows:
        f.write(r[0] + "".join(f"\t{x:.4f}" for x in r[1:]) + "\n")
md = "| model | " + " | ".join(domains) + " | mean |\n|---|" + "---:|" * (len(domains) + 1) + "\n"
for r in rows:
    md += f"| {r[0]} | " + " | ".join(f"{x:.4f}" for x in r[1:]) + " |\n"
mc = {name: {t: summary(os.path.join(out, "mc", name, f"{t}.json")) for t in tasks} for name in order}
with open(os.path.join(out, "mc.tsv"), "w") as f:
    f.write("name\ttask\tn\tacc\tacc_se\tacc_norm\tacc_norm_se\tchance\n")
    for name in order:
        for t, s in mc[name].items():
            f.write(f"{name}\t{t}\t{s['n']}\t{s['acc']:.4f}\t{s['acc_se']:.4f}\t{s['acc_norm']:.4f}\t"
                    f"{s['acc_norm_se']:.4f}\t{s['chance']:.4f}\n")
first = mc[order[0]]
md += ("\nZero-shot accuracy (acc ± standard error; acc_norm in mc.tsv). Items and chance: " +
       ", ".join(f"{t} {first[t]['n']} / {first[t]['chance']:.3f}" for t in tasks) + "\n\n")
md += "| model | " + " | ".join(tasks) + " | mean |\n|---|" + "---:|" * (len(tasks) + 1) + "\n"
for name in order:
    s = mc[name]
    mean = sum(s[t]["acc"] for t in tasks) / len(tasks)
    se = sum(s[t]["acc_se"] ** 2 for t in tasks) ** 0.5 / len(tasks)
    md += f"| {name} | " + " | ".join(f"{s[t]['acc']:.3f} ± {s[t]['acc_se']:.3f}" for t in tasks) + f" | {mean:.3f} ± {se:.3f} |\n"
tmp = os.path.join(out, "results.md.tmp")
open(tmp, "w").write(md)
os.replace(tmp, os.path.join(out, "results.md"))
print(md)
PYEOF
python3 "$ROOT/scripts/plot_merge.py" "$OUT/results.tsv" "$OUT/mc.tsv" "$OUT/merge.svg"
log "done: $OUT/results.tsv, $OUT/mc.tsv, $OUT/results.md, $OUT/merge.svg"
