#!/bin/sh
# A Python venv with ExecuTorch (PyPI `executorch`: its LLM export and its runtime's Python bindings) for
# tests/interop/executorch_qat.sh: an int4-g32 QAT model through ExecuTorch's own 8da4w export and runtime.
# Outside the repository: $MOBILELLM_EXECUTORCH_VENV, default $HOME/.cache/mobilellm/venv-executorch.
# ExecuTorch's native libraries link against libtorch, so the torch must be the one its wheel was built for
# (executorch 1.5.x: torch 2.15). PyTorch's CPU index is tried first (small wheels); where it is not reachable,
# torch comes from PyPI (the CUDA build, several GB), or, with TORCH_FROM=DIR, from an existing venv's
# site-packages (DIR), linked in through a .pth file instead of downloaded again.
set -e
VENV="${MOBILELLM_EXECUTORCH_VENV:-$HOME/.cache/mobilellm/venv-executorch}"
PY="${PYTHON:-/usr/bin/python3}"
ET_VERSION="${EXECUTORCH_VERSION:-1.5.1}"
TORCH_VERSION="${EXECUTORCH_TORCH_VERSION:-2.15.0}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
if [ -n "$TORCH_FROM" ]; then
    SP=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    echo "$TORCH_FROM" >"$SP/torch-from-venv.pth"
elif ! "$PIP" install -q --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION" 2>/dev/null; then
    echo "PyTorch's CPU index is not reachable; installing torch $TORCH_VERSION from PyPI"
    "$PIP" install -q "torch==$TORCH_VERSION"
fi
"$PIP" install -q "executorch==$ET_VERSION" safetensors numpy
"$VENV/bin/python" -c 'import torch, executorch.version as v; from executorch.extension.pybindings import portable_lib
print("torch", torch.__version__, "executorch", v.__version__)'
