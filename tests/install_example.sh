#!/usr/bin/env bash
# The installed package works on its own: `cmake --install` into a temporary prefix, build
# examples/train_tiny.c against it with nothing but `pkg-config --static --cflags --libs mobilellm`,
# run it and check what it prints (the loss falls, decode returns the text, a saved checkpoint reloads).
# usage: install_example.sh <build-dir> <source-dir> <c-compiler> [extra link flags, e.g. sanitizers]
set -euo pipefail
BUILD=$1 SRC=$2 CC=${3:-cc} EXTRA=${4:-}
mkdir -p "$BUILD/test_files"
W=$(mktemp -d "$BUILD/test_files/install_example.XXXXXX")
trap 'rm -rf "$W"' EXIT
cmake --install "$BUILD" --prefix "$W/prefix" >"$W/install.log"
for f in bin/mobilellm include/mobilellm.h; do [ -e "$W/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }; done
pc=$(find "$W/prefix" -name mobilellm.pc | head -1)
lib=$(find "$W/prefix" -name libmobilellm.a | head -1)
[ -n "$pc" ] && [ -n "$lib" ] || { echo "FAIL: mobilellm.pc or libmobilellm.a not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
flags=$(pkg-config --static --cflags --libs mobilellm)
echo "pkg-config: $flags"
# the public header stands alone (C and C++ compilers, no include path but its own)
echo '#include <mobilellm.h>
int main(void) { return MOBILELLM_OK; }' >"$W/alone.c"
"$CC" -std=c99 -Wall -Wextra -Werror -c "$W/alone.c" -I"$W/prefix/include" -o "$W/alone.o"
# shellcheck disable=SC2086
"$CC" -std=c11 -O2 -Wall -Wextra -Werror "$SRC/examples/train_tiny.c" $EXTRA $flags -o "$W/train_tiny"
"$W/train_tiny" "$W/tiny.h5" | tee "$W/out.txt"
grep -q '^loss fell: ' "$W/out.txt" || { echo "FAIL: no loss line"; exit 1; }
grep -q '^decoded: MobileLLM trains' "$W/out.txt" || { echo "FAIL: decode did not return the text"; exit 1; }
grep -q '^reloaded ' "$W/out.txt" || { echo "FAIL: checkpoint not reloaded"; exit 1; }
tail -1 "$W/out.txt" | grep -qx ok || { echo "FAIL: example did not finish"; exit 1; }
# the installed CLI reads the checkpoint the example wrote
"$W/prefix/bin/mobilellm" info "$W/tiny.h5" >/dev/null
echo "install example: ok"
