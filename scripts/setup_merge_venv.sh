#!/bin/bash
# A Python venv with mergekit (and torch) for tests/cli/merge_mergekit.sh, outside the repository:
# ML_MERGE_VENV (default $HOME/.cache/mobilellm/venv-merge). Tries the CPU-only torch wheel index first,
# then PyPI's torch.
set -eu
VENV="${ML_MERGE_VENV:-$HOME/.cache/mobilellm/venv-merge}"
PY="${PYTHON:-/usr/bin/python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu ||
    echo "CPU torch index unreachable; mergekit will pull torch from PyPI"
"$VENV/bin/pip" install -q mergekit
"$VENV/bin/mergekit-yaml" --help >/dev/null && echo "mergekit ready in $VENV"
