#!/bin/bash
# Packs Debian 12's PyTorch 1.13 peer (python3.11, python3-torch and every shared library they load) into one
# tar.xz, so that bench/pytorch_train_bench.py can run that exact build on a host that cannot install Debian
# packages (another distribution, another Python). Run it on a Debian 12 machine with python3-torch installed.
#
#   bench/debian_torch_bundle.sh OUT.tar.xz
#   # on the other host:
#   mkdir -p /tmp/t && tar -C /tmp/t -xJf OUT.tar.xz && R=/tmp/t/root
#   LD_LIBRARY_PATH=$R/libs PYTHONHOME=$R PYTHONPATH=$R/site:bench $R/bin/python3.11 -S \
#       bench/pytorch_train_bench.py --config configs/mobilellm-125m.json --threads 2 [--autocast bf16]
#
# What it holds: the interpreter and its standard library (without tests, IDLE, tkinter), torch, numpy and
# the pure-Python modules torch imports, and the libraries `ldd` lists for all of them except the C
# library's own (libc, libm, libpthread, libdl, librt, libresolv, the loader), which the host provides.
# Debian links libtorch against OpenCV, FFmpeg, GDAL and more, so the bundle is about 610 MB unpacked and
# 150 MB packed (xz -9). OpenBLAS inside it picks its kernel from the host's CPU: on a CPU it does not know (0.3.21 and
# Sapphire Rapids) set OPENBLAS_CORETYPE as for our binary.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,16p' "$0" | cut -c3-; exit 0 ;; esac
[ $# -eq 1 ] && [ "${1#-}" = "$1" ] || { echo "usage: $0 OUT.tar.xz (--help: what it packs)" >&2; exit 2; }
OUT=$(realpath -m "$1")
SITE=/usr/lib/python3/dist-packages
[ -d $SITE/torch ] && [ -x /usr/bin/python3.11 ] || { echo "$0: needs Debian 12's python3.11 and python3-torch" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p $R/bin $R/lib $R/libs $R/site
cp -L /usr/bin/python3.11 $R/bin/
cp -a /usr/lib/python3.11 $R/lib/
(cd $R/lib/python3.11 && rm -rf test idlelib lib2to3 tkinter ensurepip config-3.11*)
for p in torch numpy typing_extensions.py six.py astunparse; do cp -a $SITE/$p $R/site/; done
rm -rf $R/site/torch/include $R/site/torch/share $R/site/torch/test
find $R -name __pycache__ -prune -exec rm -rf {} +
# every library the interpreter, its extension modules and torch's load, under the names the loader asks for
for f in $R/bin/python3.11 $R/lib/python3.11/lib-dynload/*.so $(find $R/site -name '*.so'); do
    { ldd "$f" 2>/dev/null || true; } | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -L "$lib" $R/libs/; done
# torch/lib holds absolute symlinks into /usr/lib: point them at the bundle's copies (by soname)
for f in $R/site/torch/lib/*; do
    target=$(readlink -f "$SITE/torch/lib/$(basename "$f")")
    rm -f "$f"
    [ -e "$target" ] || continue # a link Debian leaves dangling
    so=$(objdump -p "$target" | awk '/SONAME/ {print $2}')
    so=${so:-$(basename "$target")}
    [ -e $R/libs/$so ] || cp -L "$target" $R/libs/$so
    ln -s ../../../libs/$so "$f"
done
echo "packing $(du -sh $R | cut -f1) into $OUT"
tar -C "$WORK" -cf - root | xz -9 -T0 -v > "$OUT.tmp" # -v: xz's progress line (several minutes on 2 cores)
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1)); torch $(LD_LIBRARY_PATH=$R/libs PYTHONHOME=$R PYTHONPATH=$R/site \
    $R/bin/python3.11 -S -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '(did not import)')"
