#!/usr/bin/env bash
# Fails when a source file includes a header of a layer above its own. The layer list is read from
# docs/ARCHITECTURE.md (the fenced block after "```layers", lowest layer first); a file may include
# its own folder and any folder listed before it. Usage: scripts/check_layers.sh [REPO_ROOT]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
doc="$root/docs/ARCHITECTURE.md"
[[ -f "$doc" ]] || { echo "check_layers: $doc: missing" >&2; exit 2; }
mapfile -t layers < <(awk '/^```layers/{on=1; next} on && /^```/{exit} on && NF {print $1}' "$doc")
((${#layers[@]} > 0)) || { echo "check_layers: $doc: no \`\`\`layers block" >&2; exit 2; }
declare -A rank
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done
bad=0
cd "$root"
while IFS= read -r -d '' f; do
  top=${f%%/*}
  [[ -n "${rank[$top]+x}" ]] || continue
  while IFS=: read -r line inc; do
    dep=${inc%%/*}
    [[ -n "${rank[$dep]+x}" ]] || continue
    if ((rank[$dep] > rank[$top])); then
      echo "$f:$line: includes $inc: layer '$dep' is above '$top' (docs/ARCHITECTURE.md)"
      bad=1
    fi
  done < <(grep -n -o '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*"' "$f" | sed -E 's/^([0-9]+):.*"([^"]*)"/\1:\2/')
done < <(find "${layers[@]}" -type f \( -name '*.c' -o -name '*.h' \) -print0 2>/dev/null)
if ((bad)); then exit 1; fi
echo "layers: ${#layers[@]} layers, no include points up"
