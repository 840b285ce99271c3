#!/bin/bash
# Time and peak RSS of merging three 1B-parameter checkpoints, against reading the inputs once.
#   bench/merge_bench.sh [DIR]     (DIR default /tmp/merge_bench: about 17 GB of disk)
# Makes p0.h5 p1.h5 p2.h5 from configs/mobilellm-pro-1b.json (mobilellm init --seed 1..3) unless present,
# then: cat of the three inputs, a linear merge of the three, a TIES merge (base p0 + p1, p2; density 0.5),
# each under /usr/bin/time -v. CONFIG=configs/mobilellm-1b.json for the v1 shape.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M=${M:-$ROOT/build/mobilellm}
CONFIG=${CONFIG:-$ROOT/configs/mobilellm-pro-1b.json}
D=${1:-/tmp/merge_bench}
mkdir -p "$D"
cd "$D"
for i in 0 1 2; do [ -e p$i.h5 ] || nice -n 10 "$M" init --config "$CONFIG" --seed $((i + 1)) --out p$i.h5 >/dev/null; done
printf 'merge_method: linear\nmodels:\n' >linear.yaml
for i in 0 1 2; do printf '  - model: p%d.h5\n    parameters: {weight: 1.0}\n' $i >>linear.yaml; done
printf 'merge_method: ties\nbase_model: p0.h5\nmodels:\n' >ties.yaml
for i in 1 2; do printf '  - model: p%d.h5\n    parameters: {weight: 0.5, density: 0.5}\n' $i >>ties.yaml; done
echo "$(date -u +%F) $(git -C "$ROOT" rev-parse --short HEAD) $(lscpu | sed -n 's/^Model name: *//p') OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
uptime
/usr/bin/time -f "cat of the inputs: %e s" sh -c 'cat p0.h5 p1.h5 p2.h5 >/dev/null'
for r in linear ties; do
    /usr/bin/time -f "$r: %e s wall, %U s user, %S s sys, peak RSS %M kB" nice -n 5 "$M" merge --config $r.yaml --out out_$r.h5 --quiet
    rm -f out_$r.h5
done
uptime
