#!/bin/sh
# A Python venv with torchao for tests/test_quant_torchao.c (quant/ against torchao's own fake quantizers).
# Outside the repository: $MOBILELLM_QUANT_VENV, default $HOME/.cache/mobilellm/venv-quant.
# torchao runs on a current torch (CPU is enough): from PyPI, or, with TORCH_FROM=DIR, the torch of an existing
# venv's site-packages (DIR), linked in through a .pth file instead of downloaded again.
set -e
VENV="${MOBILELLM_QUANT_VENV:-$HOME/.cache/mobilellm/venv-quant}"
PY="${PYTHON:-/usr/bin/python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if [ -n "$TORCH_FROM" ]; then
    SP=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    echo "$TORCH_FROM" >"$SP/torch-from-venv.pth"
else
    "$VENV/bin/pip" install -q torch
fi
"$VENV/bin/pip" install -q torchao safetensors numpy
"$VENV/bin/python" -c 'import torch, torchao; print("torch", torch.__version__, "torchao", torchao.__version__)'
