#!/usr/bin/env bash
# Attention forward/backward of this tree (fp32 tiles, and bf16 tiles where the CPU has a bf16 kernel) against the
# attention.c of another commit (default: e6188be, the last one-query-at-a-time kernel), in one binary, same
# inputs, same run, repetitions alternating. Best of 5 each.
#   bench/attention_bench.sh [BASE_COMMIT] [SHAPE...]   (SHAPE "B T [WINDOW]"; MobileLLM-125M heads, see attention_bench.c)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-e6188be}
shift || true
[ -f build/libmobilellm.a ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$(nproc)" >/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ git show "$BASE:model/ops/attention.c" 2>/dev/null || git show "$BASE:train/ops/attention.c"; } | sed -e 's/ml_attention_\(forward\|backward\)/base_attention_\1/' -e 's#train/ops/#model/ops/#' > "$tmp/base.c"
gcc -O3 -march=native -fopenmp -fno-math-errno -I. -o "$tmp/attention_bench" bench/attention_bench.c "$tmp/base.c" \
    build/libmobilellm.a -lopenblas $(ldd build/mobilellm | grep -q libdnnl && echo -ldnnl) -lm
echo "base $BASE, current $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- model/ops || echo +), load $(cut -d' ' -f1-3 /proc/loadavg)"
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=("4 256" "1 2048" "1 2048 512" "1 8192 512")
for shape in "${shapes[@]}"; do "$tmp/attention_bench" $shape; done
