#!/bin/bash
# CLI tests of tokenize and data info/dump: round trips to the original bytes, document
# splitting, validation hold-out, and bad input (one-line error, non-zero exit, no output).
# usage: data_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"

# ---- inputs: generated text (the demo must not depend on ../shared), a nested directory,
# a binary file, and a header from /usr/include when there is one.
mkdir -p "$W/in/sub/deeper" "$W/in/b"
for i in 1 2 3; do
    { echo "File $i: the quick brown fox"; echo; echo "jumps over"; echo "the lazy dog $i"; echo; echo; echo "end"; } >"$W/in/f$i.txt"
done
printf 'no trailing newline \xc3\xa9 \xff' >"$W/in/sub/raw.txt"
seq 1 2000 >"$W/in/sub/deeper/numbers.txt"
printf 'abc\000def' >"$W/in/b/binary.bin"
: >"$W/in/b/empty.txt"
if [ -f /usr/include/stdio.h ]; then cp /usr/include/stdio.h "$W/in/sub/stdio.h"; fi

# ---- one file: dump --text gives back the bytes exactly
ok "$M" tokenize --tokenizer bytes --input "$W/in/sub/deeper/numbers.txt" --out "$W/one.shard" >/dev/null
"$M" data dump "$W/one.shard" --text >"$W/back" || fail "dump --text"
cmp -s "$W/back" "$W/in/sub/deeper/numbers.txt" || fail "one file does not round trip"
# --start/--count: a window of the file
"$M" data dump "$W/one.shard" --text --start 100 --count 50 >"$W/win" || fail "dump window"
tail -c +101 "$W/in/sub/deeper/numbers.txt" | head -c 50 | cmp -s - "$W/win" || fail "dump window differs"
# ids: the first ids are the bytes of "1\n2\n"
[ "$("$M" data dump "$W/one.shard" --count 4)" = "49 10 50 10" ] || fail "dump ids"

# ---- a directory: files in sorted order, binary skipped, the empty file gives no document
"$M" tokenize --tokenizer bytes --input "$W/in" --out "$W/dir.shard" --domain demo >"$W/sum" || fail "tokenize dir"
grep -q "1 binary files skipped" "$W/sum" || fail "binary file not reported: $(cat "$W/sum")"
nfiles=$(find "$W/in" -type f ! -name '*.bin' -size +0 | wc -l)
"$M" data info "$W/dir.shard" >"$W/info" || fail "data info"
grep -q "^documents *$nfiles$" "$W/info" || fail "documents != $nfiles: $(cat "$W/info")"
grep -q "^tokenizer *bytes-v1$" "$W/info" || fail "info tokenizer"
grep -q "^domain *demo$" "$W/info" || fail "info domain"
grep -q "^vocab *259$" "$W/info" || fail "info vocab"
for k in tokens frames "bytes on disk" compression; do grep -q "^$k " "$W/info" || fail "info lacks $k"; done
find "$W/in" -type f ! -name '*.bin' | LC_ALL=C sort | xargs cat >"$W/expect"
"$M" data dump "$W/dir.shard" --text | cmp -s - "$W/expect" || fail "directory does not round trip"
[ "$("$M" data dump "$W/dir.shard" | wc -l)" -eq "$nfiles" ] || fail "dump: not one line per document"

# ---- splitting, BOS/EOS
ok "$M" tokenize --tokenizer bytes --input "$W/in/f1.txt" --out "$W/para.shard" --doc-split blank-lines --bos --eos >/dev/null
"$M" data dump "$W/para.shard" --text >"$W/para.txt"
printf 'File 1: the quick brown foxjumps over\nthe lazy dog 1end' | cmp -s - "$W/para.txt" || fail "blank-lines split"
"$M" data dump "$W/para.shard" >"$W/para.ids"
[ "$(wc -l <"$W/para.ids")" -eq 3 ] || fail "blank-lines: 3 documents expected"
[ "$(awk '$1 != 256 || $NF != 257' "$W/para.ids" | wc -l)" -eq 0 ] || fail "BOS/EOS missing"
ok "$M" tokenize --tokenizer bytes --input "$W/in/f1.txt" --out "$W/lines.shard" --doc-split lines >/dev/null
"$M" data info "$W/lines.shard" | grep -q "^documents *4$" || fail "lines split: 4 documents expected"

# ---- validation hold-out: every 4th document, deterministic
ok "$M" tokenize --tokenizer bytes --input "$W/in/sub/deeper/numbers.txt" --out "$W/tr.shard" --doc-split lines \
    --val-fraction 0.25 --val-out "$W/va.shard" >/dev/null
"$M" data info "$W/tr.shard" | grep -q "^documents *1500$" || fail "train documents"
"$M" data info "$W/va.shard" | grep -q "^documents *500$" || fail "val documents"
[ "$("$M" data dump "$W/va.shard" --text --count 8)" = "48121620" ] || fail "val holds lines 4, 8, 12"
"$M" data info "$W/tr.shard" "$W/va.shard" | grep -q "^total *2 shards, .* 2000 documents" || fail "info total"

# ---- bad input
cp "$W/dir.shard" "$W/keep.shard"
expect_fail "missing input" "$W/x.shard" -- "$M" tokenize --tokenizer bytes --input "$W/nope.txt" --out "$W/x.shard"
expect_fail "unknown tokenizer" "$W/x.shard" -- "$M" tokenize --tokenizer "$W/tokenizer.model" --input "$W/in" --out "$W/x.shard"
expect_fail "only binary input" "$W/x.shard" -- "$M" tokenize --tokenizer bytes --input "$W/in/b" --out "$W/x.shard"
expect_fail "val-fraction without val-out" "$W/x.shard" -- "$M" tokenize --tokenizer bytes --input "$W/in" --out "$W/x.shard" --val-fraction 0.1
expect_fail "nothing held out" "$W/x.shard" "$W/y.shard" -- "$M" tokenize --tokenizer bytes --input "$W/in/f1.txt" --out "$W/x.shard" --val-fraction 0.1 --val-out "$W/y.shard"
expect_fail "output directory missing" "$W/no/x.shard" -- "$M" tokenize --tokenizer bytes --input "$W/in" --out "$W/no/x.shard"
expect_fail "bad doc-split" "$W/x.shard" -- "$M" tokenize --tokenizer bytes --input "$W/in" --out "$W/x.shard" --doc-split words
# A failing run leaves an existing output as it was.
expect_fail "failing over an existing output" -- "$M" tokenize --tokenizer bytes --input "$W/in/b" --out "$W/keep.shard"
cmp -s "$W/keep.shard" "$W/dir.shard" || fail "existing output was changed by a failing run"

expect_fail "info: missing file" -- "$M" data info "$W/nope.shard"
expect_fail "info: text file" -- "$M" data info "$W/in/f1.txt"
head -c 4096 /dev/urandom >"$W/random.bin"
expect_fail "info: random bytes" -- "$M" data info "$W/random.bin"
expect_fail "dump: random bytes" -- "$M" data dump "$W/random.bin"
size=$(stat -c %s "$W/dir.shard")
for cut in 10 100 200 $((size / 2)) $((size - 1)); do
    head -c $cut "$W/dir.shard" >"$W/trunc.shard"
    expect_fail "info: truncated to $cut bytes" -- "$M" data info "$W/trunc.shard"
done
# Corrupt 8 bytes in the middle of the (single) zstd frame: the index is intact, so info opens
# it, but decoding (dump, info --verify) fails naming the frame.
cp "$W/dir.shard" "$W/corrupt.shard"
for off in $(seq $((size / 3)) $((size / 3 + 7))); do
    b=$(od -An -tu1 -j "$off" -N1 "$W/corrupt.shard" | tr -d ' ')
    printf "\\$(printf %03o $((255 - b)))" | dd of="$W/corrupt.shard" bs=1 seek="$off" conv=notrunc status=none
done
expect_fail "dump: corrupt frame" -- "$M" data dump "$W/corrupt.shard"
grep -q "frame 0" "$W/stderr" || fail "corrupt frame error does not name the frame"
expect_fail "info --verify: corrupt frame" -- "$M" data info "$W/corrupt.shard" --verify
# A shard claiming another tokenizer (metadata rewritten, checksums resealed) next to a bytes one.
/usr/bin/python3 - "$W/dir.shard" "$W/other.shard" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
def fnv(h, b):
    for x in b:
        h ^= x; h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h
(nd,) = struct.unpack_from('<Q', d, 32); (nf,) = struct.unpack_from('<Q', d, 48)
mo, mb, do, io = struct.unpack_from('<QQQQ', d, 72)
i = d.index(b'bytes-v1', mo); d[i:i + 8] = b'bytes-v2'
h = fnv(fnv(fnv(0xcbf29ce484222325, d[mo:mo + mb]), d[do:do + 8 * nd]), d[io:io + 16 * nf])
struct.pack_into('<Q', d, 104, h); struct.pack_into('<Q', d, 120, fnv(0xcbf29ce484222325, d[:120]))
open(sys.argv[2], 'wb').write(d)
PY
"$M" data info "$W/other.shard" | grep -q "^tokenizer *bytes-v2$" || fail "resealed shard does not open"
expect_fail "info: different tokenizers" -- "$M" data info "$W/dir.shard" "$W/other.shard"
grep -q "other.shard" "$W/stderr" && grep -q "dir.shard" "$W/stderr" || fail "tokenizer mismatch does not name both files"
expect_fail "dump --text: other tokenizer" -- "$M" data dump "$W/other.shard" --text
expect_fail "dump: start beyond the end" -- "$M" data dump "$W/dir.shard" --start 100000000
expect_fail "data: unknown subcommand" -- "$M" data frobnicate "$W/dir.shard"

finish
echo "all data CLI tests passed"
