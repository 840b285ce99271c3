#!/usr/bin/env bash
# One run, one machine, three trainers: mobilellm.c (`bench --profile`: ms/step, tokens/s, GFLOP/s, MFU,
# peak RSS against the memory minimum), PyTorch (Debian python3-torch, the same MobileLLM model,
# bench/pytorch_train_bench.py) and llm.c's CPU trainer (GPT-2 124M, bench/llmc_bench.sh, fetched and built
# outside the repository). One row goes into bench/RESULTS.md ("## Peers in one run"); the full JSON of
# each side goes to bench/plots/bench_all_<commit>.json unless NO_JSON=1.
#
#   bench/bench_all.sh [CONFIG] [BATCH] [SEQ]       (default configs/mobilellm-125m.json 4 256; SEQ <= 1024
#                                                     for llm.c: GPT-2's maxT)
# Environment: PRECISION (fp32 | bf16, ours only; MFU is then against the fp32 sgemm probe), STEPS (timed steps each, default 3), OMP_NUM_THREADS (default nproc), LLMC_* as in
# bench/llmc_bench.sh, NO_RECORD=1 to print the row without writing RESULTS.md.
# A current PyTorch from PyPI is a second peer when TORCH_VENV (default $HOME/.cache/mobilellm/venv, made by
# scripts/interop_venv.sh) has one: fp32, bf16 autocast, and bf16 autocast under torch.compile (when it runs on this
# CPU), against our step in fp32 and in bf16, all in this run; a row goes to "## Current PyTorch (PyPI) in one run".
# The issue's targets: tokens/s >= 5x PyTorch's (same model); GFLOP/s >= 7x llm.c's (per FLOP, since the
# models differ); peak RSS <= 1.3x the minimum (parameters + gradients + AdamW moments + saved activations).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/mobilellm-125m.json}
B=${2:-4}
T=${3:-256}
STEPS=${STEPS:-3}
PRECISION=${PRECISION:-fp32} # ours only (--precision fp32|bf16); the peers train in fp32
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
PY=/usr/bin/python3
[ -x build/mobilellm ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$OMP_NUM_THREADS" >/dev/null; }
COMMIT=$(git rev-parse --short HEAD)
echo "== mobilellm.c" >&2
ours=$(build/mobilellm bench --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" --warmup 1 --profile \
       --precision "$PRECISION" --json | tail -1)
echo "$ours" >&2
echo "== PyTorch" >&2
torch=$($PY bench/pytorch_train_bench.py --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" --warmup-steps 1 \
        --threads "$OMP_NUM_THREADS" | tail -1)
echo "$torch" >&2
echo "== llm.c" >&2
llmc=$(LLMC_ONLY=1 bench/llmc_bench.sh "$B" "$T" "$STEPS" | tail -1)
echo "$llmc" >&2
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/mobilellm/venv}
peers="{}"
if [ -x "$TORCH_VENV/bin/python" ] && "$TORCH_VENV/bin/python" -c "import torch" 2>/dev/null; then
    peer() { # KEY ARGS...: one run of the PyTorch step, or {"error": ...} when it fails (e.g. no compiler for inductor)
        local key=$1 out; shift
        echo "== current PyTorch: $key" >&2
        if out=$("$TORCH_VENV/bin/python" bench/pytorch_train_bench.py --config "$CONFIG" --batch "$B" --seq "$T" \
                 --steps "$STEPS" --warmup-steps 1 --threads "$OMP_NUM_THREADS" "$@" 2>/dev/null | tail -1); then
            echo "$out" >&2
        else
            out='{"error": "failed"}'
        fi
        peers=$($PY -c 'import json, sys; d = json.loads(sys.argv[1]); d[sys.argv[2]] = json.loads(sys.argv[3]); print(json.dumps(d))' \
                "$peers" "$key" "$out")
    }
    peer fp32
    peer bf16 --autocast bf16
    peer bf16_compile --autocast bf16 --compile
    other=$([ "$PRECISION" = bf16 ] && echo fp32 || echo bf16) # our step in the other precision too
    echo "== mobilellm.c --precision $other" >&2
    ours2=$(build/mobilellm bench --config "$CONFIG" --batch "$B" --seq "$T" --steps "$STEPS" --warmup 1 \
            --precision "$other" --json | tail -1)
    peers=$($PY -c 'import json, sys; d = json.loads(sys.argv[1]); d["ours_other"] = json.loads(sys.argv[2]); print(json.dumps(d))' \
            "$peers" "$ours2")
fi
CMD="bench/bench_all.sh $CONFIG $B $T (PRECISION=$PRECISION, STEPS=$STEPS, OMP_NUM_THREADS=$OMP_NUM_THREADS, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
$PY - "$ours" "$torch" "$llmc" "$CMD" "$COMMIT" "$peers" <<'PYEOF'
import datetime, json, os, subprocess, sys
sys.path.insert(0, "bench")
from results_row import insert_row
o, t, l = (json.loads(x) for x in sys.argv[1:4])
cmd, commit = sys.argv[4], sys.argv[5]
peers = json.loads(sys.argv[6])
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
commit += "+" if dirty else ""
vs_torch = o["tokens_per_s"] / t["tokens_per_s"]
vs_llmc = o["gflops"] / l["gflops"]
row = (f"| {datetime.date.today()} | {commit} | `{cmd}` | {o['threads']} | {o['blas_kernel']} | "
       f"{o['ms_per_step']:.0f} | {o['tokens_per_s']:.1f} | {o['gflops']:.1f} | {100 * o['mfu']:.1f}% of {o['sgemm_gflops']:.0f} | "
       f"{o['peak_rss_mib']:.0f} / {o['min_mib']:.0f} = {o['mem_ratio']:.2f}× | "
       f"{t['ms_per_step']:.0f} | {t['tokens_per_s']:.1f} | {t.get('peak_rss_mib', 0):.0f} | **{vs_torch:.2f}×** | "
       f"{l['ms_per_step']:.0f} | {l['tokens_per_s']:.1f} | {l['gflops']:.1f} | {l['peak_rss_mib']:.0f} | **{vs_llmc:.2f}×** |")
print(row)
print(f"tokens/s vs PyTorch {vs_torch:.2f}x (target 5x); GFLOP/s vs llm.c {vs_llmc:.2f}x (target 7x); "
      f"peak RSS {o['mem_ratio']:.2f}x the minimum (target <= 1.3x)")
if peers:
    ours = {o["precision"]: o, peers["ours_other"]["precision"]: peers["ours_other"]}
    def tps(d): return f"{d['tokens_per_s']:.1f}" if "tokens_per_s" in d else d.get("error", "-")
    def ratio(a, d): return f"{a['tokens_per_s'] / d['tokens_per_s']:.2f}×" if "tokens_per_s" in d else "-"
    tv = next((d["torch"] for d in peers.values() if "torch" in d), "?")
    prow = (f"| {datetime.date.today()} | {commit} | `{cmd}` | {o['threads']} | {tv} | {tps(ours['fp32'])} | "
            f"{tps(ours['bf16'])} | {tps(peers['fp32'])} | {tps(peers['bf16'])} | {tps(peers['bf16_compile'])} | "
            f"**{ratio(ours['fp32'], peers['fp32'])}** | **{ratio(ours['bf16'], peers['bf16'])}** | "
            f"**{ratio(ours['bf16'], peers['bf16_compile'])}** |")
    print(prow)
    if os.environ.get("NO_RECORD") != "1":
        insert_row("bench/RESULTS.md", "## Current PyTorch (PyPI) in one run", prow,
                   header="| date | commit | command | threads | torch | ours fp32 tokens/s | ours bf16 tokens/s "
                          "| torch fp32 | torch bf16 autocast | torch bf16 autocast + compile | ours/torch fp32 "
                          "| ours bf16 / torch bf16 | ours bf16 / torch compiled |",
                   intro="Every row is one run of `bench/bench_all.sh` with a current PyTorch from PyPI (the venv of "
                         "`scripts/interop_venv.sh`) as a second peer: `bench/pytorch_train_bench.py` in fp32, with "
                         "`--autocast bf16` (CPU autocast: bf16 matmuls, fp32 weights and AdamW) and with "
                         "`--autocast bf16 --compile` (torch.compile, inductor); ours is `mobilellm bench` in fp32 and "
                         "in bf16 (`--gemm-engine auto`). tokens/s; 'failed' where a peer did not run.")
if os.environ.get("NO_JSON") != "1":
    os.makedirs("bench/plots", exist_ok=True)
    path = f"bench/plots/bench_all_{commit.rstrip('+')}.json"
    with open(path + ".tmp", "w") as f:
        json.dump({"date": str(datetime.date.today()), "commit": commit, "command": cmd, "mobilellm.c": o,
                   "pytorch": t, "llm.c": l, "current_pytorch": peers}, f, indent=1)
    os.replace(path + ".tmp", path)
    print(path)
if os.environ.get("NO_RECORD") != "1":
    insert_row("bench/RESULTS.md", "## Peers in one run", row,
               header="| date | commit | command | threads | OpenBLAS kernel | ours ms/step | ours tokens/s | ours GFLOP/s | MFU "
                      "| ours peak RSS / minimum MiB | PyTorch ms/step | PyTorch tokens/s | PyTorch peak RSS MiB | vs PyTorch "
                      "| llm.c ms/step | llm.c tokens/s | llm.c GFLOP/s | llm.c peak RSS MiB | per FLOP vs llm.c |",
               intro="Every row is one run of `bench/bench_all.sh`: our `bench --profile` on the MobileLLM config, "
                     "PyTorch's training step on the same model (`bench/pytorch_train_bench.py`), and llm.c's "
                     "CPU trainer `train_gpt2.c` (GPT-2 124M, random weights, `bench/llmc_bench.sh`) at the same B, T "
                     "and threads. 'vs PyTorch' is the tokens/s ratio (same model); 'per FLOP vs llm.c' is the "
                     "GFLOP/s ratio, both counted as 6·N + attention (N = matmul weights incl. the LM head). "
                     "Minimum = parameters + gradients + AdamW moments + the activations kept for backward.")
PYEOF
