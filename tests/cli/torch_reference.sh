#!/usr/bin/env bash
# ctest entry: self-checks of the PyTorch reference model and golden-state generator
# (tests/reference/test_reference.py). Arguments, as for every tests/cli/*.sh:
# <mobilellm-binary> <source-dir>; the binary is not used here.
set -euo pipefail
src="${2:?usage: torch_reference.sh <mobilellm-binary> <source-dir>}"
export ML_SHARED_DIR="${ML_SHARED_DIR:-$src/../shared}"  # the teacher check is skipped without it
export PYTHONDONTWRITEBYTECODE=1                          # keep the source tree clean
exec /usr/bin/python3 "$src/tests/reference/test_reference.py"
