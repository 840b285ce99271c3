#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds twice (optimised, and with AddressSanitizer
# + UBSan), and runs every test in both builds. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
# Sanitizer build: leaks inside OpenBLAS/OpenMP thread pools are not ours to fix.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DML_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   LSAN_OPTIONS=suppressions="$PWD/../tests/lsan.supp" \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")
echo "all tests passed (release and sanitizer builds)"
