#!/usr/bin/env bash
# The layer rule (docs/ARCHITECTURE.md): the tree passes, and an include that points up is caught.
set -euo pipefail
SRC=$2
"$SRC/scripts/check_layers.sh" "$SRC"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/docs" "$W/model" "$W/train"
cp "$SRC/docs/ARCHITECTURE.md" "$W/docs/"
printf '#include "model/model.h"\n' >"$W/train/ok.c"
printf '#include "common/status.h"\n#include "train/trainer.h"\n' >"$W/model/up.c"
if out=$("$SRC/scripts/check_layers.sh" "$W" 2>&1); then
  echo "FAIL: an upward include (model -> train) passed the check"; exit 1
fi
grep -q "model/up.c:2: includes train/trainer.h" <<<"$out" || { echo "FAIL: unexpected message: $out"; exit 1; }
rm "$W/model/up.c"
"$SRC/scripts/check_layers.sh" "$W" >/dev/null || { echo "FAIL: a downward include was refused"; exit 1; }
echo "layers: ok"
