#!/usr/bin/env bash
# Debian 12 packages that mobilellm.c builds, runs and tests with. Usage:
#   scripts/install_deps.sh          build + run (the demo)
#   scripts/install_deps.sh --test   also the reference tools the tests compare against
#   scripts/install_deps.sh --fuzz   also clang, its libFuzzer runtime and OpenMP (the ML_FUZZ build, docs/fuzzing.md)
#   scripts/install_deps.sh --recipe also the text packages of the recipe's corpus (scripts/recipe.sh, docs/recipe.md)
set -euo pipefail
# openmpi-bin + libopenmpi-dev: data-parallel training (mpirun -np N mobilellm train ...); the build works without them
# libdnnl-dev: oneDNN, a bf16 GEMM engine (AMX on Xeons that have it); the build works without it
pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libhdf5-dev libzstd-dev libcjson-dev libpcre2-dev libyaml-dev libcmocka-dev python3
      openmpi-bin libopenmpi-dev libdnnl-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(python3-torch python3-numpy python3-h5py python3-sentencepiece python3-regex python3-zstandard git)
  # llama.cpp comes from npm (node-llama-cpp) for the GGUF interop test; keep an existing node/npm
  command -v npm >/dev/null || pkgs+=(npm)
fi
if [[ "${1:-}" == "--recipe" ]]; then
  # prose of the recipe's corpus: the Debian Reference (GPL-2+) and fortunes-min (BSD), about 1 MB of text
  pkgs+=(debian-reference-en fortunes-min)
fi
if [[ "${1:-}" == "--fuzz" ]]; then
  pkgs+=(clang libclang-rt-14-dev libomp-14-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
