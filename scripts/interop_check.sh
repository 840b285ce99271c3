#!/usr/bin/env bash
# Interop checks against transformers (docs/interop.md): makes the venv if missing
# (scripts/interop_venv.sh), builds, and runs the ctest entries labelled `interop`: an HF export of every
# dialect loads with no missing or unexpected keys, gives our logits and our greedy text, and the exported
# SentencePiece tokenizer tokenizes as sentencepiece. Parts that need ../shared ($ML_SHARED_DIR) skip
# without it. Usage: scripts/interop_check.sh [BUILD_DIR]   (default build-interop)
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-interop}"
VENV="${ML_INTEROP_VENV:-$HOME/.cache/mobilellm/venv}"
"$VENV/bin/python" -c "import torch, transformers, sentencepiece" 2>/dev/null || scripts/interop_venv.sh
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j"$(nproc)" --target mobilellm
(cd "$B" && ctest -L interop --output-on-failure -j"$(nproc)")
grep -h '^{"check"' "$B/Testing/Temporary/LastTest.log" || true
