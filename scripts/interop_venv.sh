#!/usr/bin/env bash
# The Python environment of the interop checks (scripts/interop_check.sh, ctest label `interop`):
# torch, transformers, tokenizers, tiktoken, sentencepiece in a venv outside the repository.
#   ML_INTEROP_VENV   where (default $HOME/.cache/mobilellm/venv); pip's cache ($HOME/.cache/pip) is kept
# torch comes from PyTorch's CPU index when it is reachable (about 200 MB), else from PyPI (a CUDA build:
# about 5.6 GB installed with its nvidia-* wheels). Usage: scripts/interop_venv.sh
set -euo pipefail
VENV="${ML_INTEROP_VENV:-$HOME/.cache/mobilellm/venv}"
PY="${ML_INTEROP_PYTHON:-/usr/bin/python3}"
t0=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" || { echo "interop_venv: cannot create a venv (apt-get install python3-venv)" >&2; exit 1; }
fi
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${pip[@]}" --retries 1 --timeout 20 torch --index-url https://download.pytorch.org/whl/cpu ||
        { echo "interop_venv: PyTorch's CPU index is unreachable; installing torch from PyPI (CUDA build, ~5.6 GB)"; "${pip[@]}" torch; }
fi
"${pip[@]}" transformers tokenizers tiktoken sentencepiece numpy
"$VENV/bin/python" -c "import torch, transformers, tokenizers, tiktoken; print(f'interop venv {\"$VENV\"}: torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}')"
echo "interop venv ready in $(( $(date +%s) - t0 )) s ($(du -sh "$VENV" | cut -f1))"
