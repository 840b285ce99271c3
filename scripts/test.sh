#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds twice (optimised, and with AddressSanitizer
# + UBSan), and runs every test in both builds. Usage: scripts/test.sh
# A test that cannot run a part for want of a shared file (../shared, or $ML_SHARED_DIR) or of an
# optional tool exits 77 and ctest reports it as skipped; the last line counts and names the skipped
# tests of each build. ML_REQUIRE_SHARED=1 (set by CI) turns a missing shared file into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
jobs=$(nproc)

# run_ctest BUILD_DIR [VAR=VALUE...]: runs every test of BUILD_DIR; sets `skipped` to "N (names)".
run_ctest() {
    local dir="$1"
    shift
    local log="$dir/ctest.log" rc
    set +e
    # random order: no test may depend on another having run first
    (cd "$dir" && env "$@" ctest --output-on-failure -j"$jobs" --schedule-random) 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || exit "$rc"
    # ctest lists them after "The following tests did not run:" as "<tab> 12 - name (Skipped)"
    local names
    names=$(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' "$log" | sort | paste -sd' ' -)
    skipped="$(grep -c '(Skipped)$' "$log" || true)${names:+ ($names)}"
}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
run_ctest build
skipped_release=$skipped
# Sanitizer build: leaks inside OpenBLAS/OpenMP thread pools are not ours to fix.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DML_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
run_ctest build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp" UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
skipped_asan=$skipped
echo "all tests passed (release and sanitizer builds)"
echo "skipped tests: release $skipped_release; sanitizer $skipped_asan"
