#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/fuzz_*.c) for a while each, one after another, starting from the
# checked-in seeds (tests/fuzz/corpus/<target>/) and keeping what they find in build-fuzz/work/<target>/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 120)] [TARGET...]   (targets: checkpoint, gguf, ...)
# Needs clang (scripts/install_deps.sh --fuzz). Crashes land in build-fuzz/artifacts/; logs in build-fuzz/logs/.
# Reproduce a crash with build-fuzz/fuzz_<target> FILE, or replay_<target> FILE in any normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
shift || true
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DML_FUZZ=ON -DML_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" >/dev/null
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; targets+=("${t%.c}"); done
fi
mkdir -p build-fuzz/logs build-fuzz/artifacts
status=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/work/$t"
  log="build-fuzz/logs/$t.log"
  # Leaks: HDF5, OpenBLAS and OpenMP keep process-wide allocations until exit (tests/lsan.supp).
  if OMP_NUM_THREADS=1 LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
      "build-fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 \
      -rss_limit_mb=2048 -timeout=20 -artifact_prefix="build-fuzz/artifacts/$t-" \
      "build-fuzz/work/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    result=ok
  else
    result="FINDING (see $log)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
  printf '%-16s %8s runs  %-22s %s\n' "$t" "$runs" "$cov" "$result"
done
exit $status
