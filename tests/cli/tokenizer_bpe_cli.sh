#!/usr/bin/env bash
# mobilellm tokenizer: encode/decode round trips (tiktoken, trained tokenizer.json), train, bad input.
source "$(dirname "$0")/common.bash"
SH="$SHARED"
L3="$SH/tokenizers/llama3-tiktoken-128000.model"

printf 'Hello world! It\xe2\x80\x99s 2024.\n  def f(x):\n\treturn x**2\n' >"$W/a.txt"
cat "$SRC/README.md" >"$W/b.txt"

# train -> tokenizer.json -> encode/decode round trip
ok "$M" tokenizer train --vocab 600 --input "$W/a.txt" "$W/b.txt" --out "$W/tok.json" --min-frequency 1 >"$W/train.out"
grep -q '"vocab": 600' "$W/train.out" || fail "train: vocab 600 not reached: $(cat "$W/train.out")"
ok "$M" tokenizer info --tokenizer "$W/tok.json" >"$W/info"
grep -q "^vocab  *600" "$W/info" || fail "info: $(cat "$W/info")"
ok "$M" tokenizer encode --tokenizer "$W/tok.json" --bos --eos <"$W/b.txt" >"$W/ids"
head -c 4 "$W/ids" | grep -q '^598 ' || fail "encode: BOS is not 598"
"$M" tokenizer decode --tokenizer "$W/tok.json" <"$W/ids" >"$W/b.dec" || fail "decode"
cmp -s "$W/b.txt" "$W/b.dec" || fail "trained tokenizer: decode(encode(x)) != x"

if need_shared "$L3"; then
    printf "Hello world" | "$M" tokenizer encode --tokenizer "$L3" >"$W/hw" || fail "encode Hello world"
    [ "$(cat "$W/hw")" = "9906 1917" ] || fail "llama3 'Hello world' -> $(cat "$W/hw")"
    ok "$M" tokenizer encode --tokenizer "$L3" <"$W/a.txt" >"$W/ids3"
    "$M" tokenizer decode --tokenizer "$L3" <"$W/ids3" >"$W/a.dec" || fail "decode llama3"
    cmp -s "$W/a.txt" "$W/a.dec" || fail "llama3: decode(encode(x)) != x"
    # shards carry the fingerprint
    ok "$M" tokenize --tokenizer "$L3" --input "$W/a.txt" --out "$W/a.shard" >/dev/null
    "$M" data info "$W/a.shard" | grep -q "tokenizer *tiktoken-" || fail "shard fingerprint"
    "$M" data info "$W/a.shard" | grep -q "vocab *128256" || fail "shard vocab"
fi

# bad input: one line, non-zero, no output left
expect_fail "train: vocab too small" "$W/x.json" -- "$M" tokenizer train --vocab 100 --input "$W/a.txt" --out "$W/x.json"
expect_fail "train: missing input" "$W/x.json" -- "$M" tokenizer train --vocab 300 --input "$W/nope.txt" --out "$W/x.json"
expect_fail "train: output dir missing" -- "$M" tokenizer train --vocab 300 --input "$W/a.txt" --out "$W/no/dir/x.json"
expect_fail "encode: missing tokenizer file" -- sh -c 'printf hi | "$0" tokenizer encode --tokenizer "$1"' "$M" "$W/none.model"
printf 'IQ== 0\nbogus\n' >"$W/bad.model"
expect_fail "encode: broken rank file" -- sh -c 'printf hi | "$0" tokenizer encode --tokenizer "$1"' "$M" "$W/bad.model"
printf '{"model": {"type": "Unigram", "vocab": []}}' >"$W/uni.json"
expect_fail "encode: unigram tokenizer.json" -- sh -c 'printf hi | "$0" tokenizer encode --tokenizer "$1"' "$M" "$W/uni.json"
expect_fail "decode: id out of range" -- "$M" tokenizer decode --tokenizer "$W/tok.json" --ids "1 2 600"
expect_fail "decode: not a number" -- "$M" tokenizer decode --tokenizer "$W/tok.json" --ids "1 x"
expect_fail "unknown verb" -- "$M" tokenizer frobnicate
finish
