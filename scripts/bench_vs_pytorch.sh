#!/usr/bin/env bash
# Training-step speed of mobilellm.c against PyTorch (Debian python3-torch) on the same model, the
# same machine, in the same run, and the ratio, added to the first table of bench/RESULTS.md.
# bench/bench_all.sh adds llm.c's CPU trainer, the profile and the memory ratio to the same comparison.
#   scripts/bench_vs_pytorch.sh [CONFIG] [BATCH] [SEQ]      (default: MobileLLM-125M, 4, 256)
# Both run under the environment as given (OPENBLAS_CORETYPE included) and use every core.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/mobilellm-125m.json}
B=${2:-4}
T=${3:-256}
STEPS=${STEPS:-3}
THREADS=$(nproc)
[ -x build/mobilellm ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$THREADS" >/dev/null; }
export OMP_NUM_THREADS=$THREADS
echo "== mobilellm.c" >&2
ours=$(build/mobilellm bench --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" --warmup 1 --json | tail -1)
echo "$ours" >&2
echo "== PyTorch" >&2
theirs=$(/usr/bin/python3 bench/pytorch_train_bench.py --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" \
         --warmup-steps 1 --threads "$THREADS" | tail -1)
echo "$theirs" >&2
/usr/bin/python3 - "$ours" "$theirs" "$CONFIG" "$B" "$T" "$STEPS" <<'PYEOF'
import json, subprocess, sys, datetime
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
config, B, T, steps = sys.argv[3:7]
ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
import os
row = (f"| {datetime.date.today()} | {commit}{'+' if dirty else ''} | `{os.path.basename(config)}` B={B} T={T} | "
       f"{ours['threads']} | {ours['blas_kernel']} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}) | "
       f"{ours['tokens_per_s']:.1f} | {ours['gflops']:.1f} | {100 * ours['mfu']:.1f}% of {ours['sgemm_gflops']:.0f} | "
       f"{ours['peak_rss_mib']:.0f} | {theirs['tokens_per_s']:.1f} (torch {theirs.get('torch', '?')}) | **{ratio:.2f}×** |")
print(row)
sys.path.insert(0, "bench")
from results_row import insert_row
insert_row("bench/RESULTS.md", "## Training step against PyTorch", row)  # the end of that table
PYEOF
