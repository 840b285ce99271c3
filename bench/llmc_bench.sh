#!/usr/bin/env bash
# llm.c's CPU trainer (karpathy/llm.c train_gpt2.c, GPT-2 124M) as a peer: fetched and built OUTSIDE the
# repository (never committed), run on a randomly initialised checkpoint and random tokens written in its
# binary formats (bench/llmc_files.py), at the same B, T and threads as ours; then our `bench` on
# MobileLLM-125M at that shape, in the same script run. Prints each side's JSON line and the GFLOP/s ratio.
#
#   bench/llmc_bench.sh [BATCH] [SEQ] [STEPS]        (default 4 256 3; SEQ <= 1024, GPT-2's maxT)
#
# Environment:
#   LLMC_WORK=/tmp/mobilellm-llmc   where the copy, the build and the input files go
#   LLMC_GIT_DIR=DIR               a git directory of llm.c (a clone's .git, or a bare/mirror repository) to
#                                  `git archive HEAD` from; default: a shallow clone of
#                                  https://github.com/karpathy/llm.c made (once) in $HOME/.cache/mobilellm/llm.c
#   LLMC_CFLAGS="-Ofast -march=native -fopenmp -DOMP"   llm.c's own Makefile flags for train_gpt2 (gcc)
#   LLMC_ONLY=1                    skip our side (bench/bench_all.sh runs it itself)
#   CONFIG=configs/mobilellm-125m.json   our model
#
# train_gpt2.c takes no arguments: B = 4, T = 64, 41 steps, 5 validation batches every 10 steps and text
# generation every 20 are constants of its main(). The copy's constants are rewritten with sed (B, T, the
# step count, one validation batch) and each rewrite is checked; its training step itself (forward,
# zero_grad, backward, AdamW update, timed by its own clock) is untouched. Its step 0 is a warm-up (it
# allocates gradients and moments lazily) and is not counted, as our --warmup 1.
#
# FLOPs per token, the same accounting as ours (model/config.c): 6 * (12 L C^2 + V C) + 12 L C (T+1)/2,
# with V = 50257 (the model's vocabulary; llm.c also multiplies the 47 padding rows, not counted).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-4}
T=${2:-256}
STEPS=${3:-3}
WORK=${LLMC_WORK:-/tmp/mobilellm-llmc}
CFLAGS=${LLMC_CFLAGS:--Ofast -march=native -fopenmp -DOMP}
CONFIG=${CONFIG:-configs/mobilellm-125m.json}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS=$THREADS
PY=/usr/bin/python3
if [ "$T" -gt 1024 ] || [ "$B" -lt 1 ] || [ "$T" -lt 1 ] || [ "$STEPS" -lt 1 ]; then
    echo "llmc_bench.sh: need BATCH >= 1, 1 <= SEQ <= 1024 (GPT-2 maxT), STEPS >= 1" >&2; exit 2
fi
case "$WORK" in "$ROOT"|"$ROOT"/*) echo "llmc_bench.sh: LLMC_WORK must be outside the repository" >&2; exit 2;; esac

# 1. the source, outside the repository
mkdir -p "$WORK"
if [ ! -f "$WORK/src/train_gpt2.c" ]; then
    rm -rf "$WORK/src.tmp" && mkdir -p "$WORK/src.tmp"
    if [ -n "${LLMC_GIT_DIR:-}" ]; then
        [ -d "$LLMC_GIT_DIR" ] || { echo "llmc_bench.sh: LLMC_GIT_DIR=$LLMC_GIT_DIR is not a directory" >&2; exit 2; }
        GIT_DIR_SRC=$LLMC_GIT_DIR
    else
        CLONE="$HOME/.cache/mobilellm/llm.c"
        if [ ! -d "$CLONE/.git" ]; then
            mkdir -p "$(dirname "$CLONE")"
            git clone --depth 1 https://github.com/karpathy/llm.c "$CLONE" >&2 ||
                { echo "llmc_bench.sh: cannot clone llm.c; set LLMC_GIT_DIR to a local copy" >&2; exit 1; }
        fi
        GIT_DIR_SRC="$CLONE/.git"
    fi
    git --git-dir="$GIT_DIR_SRC" archive HEAD | tar -x -C "$WORK/src.tmp"
    git --git-dir="$GIT_DIR_SRC" rev-parse HEAD >"$WORK/src.tmp/.llmc_commit"
    mv "$WORK/src.tmp" "$WORK/src"
fi
LLMC_COMMIT=$(cut -c1-12 "$WORK/src/.llmc_commit" 2>/dev/null || echo unknown)

# 2. the driver's constants for this run, each rewrite checked
RUN="$WORK/run_b${B}_t${T}_s${STEPS}"
mkdir -p "$RUN"
SRC_C="$WORK/src/train_gpt2_b${B}_t${T}_s${STEPS}.c"
sed -e "s/^\(    int B = \)4;/\1$B;/" -e "s/^\(    int T = \)64;/\1$T;/" \
    -e "s/for (int step = 0; step <= 40; step++)/for (int step = 0; step <= $STEPS; step++)/" \
    -e "s/int val_num_batches = 5;/int val_num_batches = 1;/" "$WORK/src/train_gpt2.c" >"$SRC_C"
for want in "    int B = $B;" "    int T = $T;" "step <= $STEPS; step++" "int val_num_batches = 1;"; do
    grep -qF "$want" "$SRC_C" || { echo "llmc_bench.sh: train_gpt2.c changed upstream: could not set '$want'" >&2; exit 1; }
done
BIN="$RUN/train_gpt2"
echo "== building llm.c ($LLMC_COMMIT) train_gpt2.c: gcc $CFLAGS" >&2
gcc $CFLAGS -Wno-unused-result -I"$WORK/src" "$SRC_C" -lm -o "$BIN"

# 3. inputs: random GPT-2 124M checkpoint, random tokens (enough for every step without wrapping)
NTOK=$(( (STEPS + 3) * B * T + 1 ))
if [ ! -f "$RUN/gpt2_124M.bin" ] || [ ! -f "$RUN/.tokens_$NTOK" ]; then
    $PY "$ROOT/bench/llmc_files.py" --out "$RUN" --tokens "$NTOK" >&2
    touch "$RUN/.tokens_$NTOK"
fi

# 4. run it; parse its step lines; its peak RSS from the kernel
echo "== llm.c train_gpt2 B=$B T=$T, $STEPS timed steps, $THREADS threads" >&2
llmc=$(cd "$RUN" && $PY - "$BIN" "$B" "$T" "$STEPS" "$THREADS" "$LLMC_COMMIT" "$CFLAGS" <<'PYEOF'
import json, re, resource, subprocess, sys
binary, B, T, steps, threads, commit, cflags = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6], sys.argv[7]
p = subprocess.run([binary], capture_output=True, text=True)
sys.stderr.write(p.stdout[-2000:] + p.stderr[-2000:])
if p.returncode != 0:
    sys.exit(f"llm.c train_gpt2 failed with status {p.returncode}")
ms = {int(s): float(t) for s, t in re.findall(r"^step (\d+): train loss [-\d.naif]+ \(took ([\d.]+) ms\)", p.stdout, re.M)}
timed = [ms[s] for s in sorted(ms) if s >= 1]
if len(timed) != steps:
    sys.exit(f"llm.c: expected {steps} timed steps after the warm-up, parsed {len(timed)}")
m = re.search(r"num_layers: (\d+)\s+num_heads: (\d+)\s+channels: (\d+)", p.stdout)
vocab = int(re.search(r"^vocab_size: (\d+)", p.stdout, re.M).group(1))
L, NH, C = map(int, m.groups())
params = int(re.search(r"num_parameters: (\d+)", p.stdout).group(1))
flops = 6.0 * (12 * L * C * C + vocab * C) + 12.0 * L * C * (T + 1) / 2.0
sec = sum(timed) / len(timed) / 1e3
print(json.dumps({
    "impl": "llm.c", "commit": commit, "cflags": cflags, "model": "gpt2-124M (random init)", "params": params,
    "batch": B, "seq": T, "threads": threads, "steps": steps, "ms_per_step": round(sec * 1e3, 2),
    "ms_per_step_min": round(min(timed), 2), "tokens_per_s": round(B * T / sec, 2), "flops_per_token": flops,
    "gflops": round(flops * B * T / sec / 1e9, 2),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
}))
PYEOF
)
echo "$llmc"
[ "${LLMC_ONLY:-0}" = 1 ] && exit 0

# 5. ours, same shape and threads, same run
[ -x "$ROOT/build/mobilellm" ] || { cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build "$ROOT/build" -j"$THREADS" >/dev/null; }
echo "== mobilellm.c $(basename "$CONFIG") B=$B T=$T" >&2
ours=$(cd "$ROOT" && build/mobilellm bench --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" --warmup 1 --json | tail -1)
echo "$ours"
$PY - "$ours" "$llmc" <<'PYEOF'
import json, sys
o, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"per FLOP: mobilellm.c {o['gflops']:.1f} GFLOP/s ({o['model']}, {o['tokens_per_s']:.1f} tokens/s) vs "
      f"llm.c {l['gflops']:.1f} GFLOP/s (GPT-2 124M, {l['tokens_per_s']:.1f} tokens/s): {o['gflops'] / l['gflops']:.2f}x")
PYEOF
