#!/bin/bash
# CLI tests of `tokenizer encode|decode|info` and of `tokenize` with the SentencePiece model:
# ids as python3-sentencepiece gives them, decode round trips, shards record the tokenizer,
# and bad input (one-line error, non-zero exit, no output).
# usage: tokenizer_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
T="$SHARED/tokenizers/llama2-spm-32000.model"

# The byte tokenizer works through the same verbs anywhere.
[ "$(printf 'hi' | "$M" tokenizer encode --tokenizer bytes --bos)" = "256 104 105" ] || fail "bytes encode"
[ "$(echo "104 105 257" | "$M" tokenizer decode --tokenizer bytes)" = "hi" ] || fail "bytes decode"
expect_fail "unknown verb" -- "$M" tokenizer frobnicate --tokenizer bytes
expect_fail "missing tokenizer file" -- "$M" tokenizer info --tokenizer "$W/nope.model"
echo "not a model" >"$W/text.model"
expect_fail "text file as tokenizer" -- "$M" tokenizer encode --tokenizer "$W/text.model"
expect_fail "tokenize with a text file as tokenizer" "$W/x.shard" -- \
    "$M" tokenize --tokenizer "$W/text.model" --input "$W/text.model" --out "$W/x.shard"

need_shared "$T" "$SHARED/data/stories/tinystories_valid_prefix.txt" || finish
head -c 60000 "$SHARED/data/stories/tinystories_valid_prefix.txt" >"$W/s.txt"
printf ' two  spaces\tand \xff bytes \xf0\x9f\xa6\x99\n' >>"$W/s.txt"

"$M" tokenizer info --tokenizer "$T" >"$W/info" || fail "info"
grep -q "^vocab *32000" "$W/info" || fail "info: vocab"
grep -q "^bos *1 <s>" "$W/info" || fail "info: bos"
grep -q "^eos *2 </s>" "$W/info" || fail "info: eos"
grep -q "^fingerprint *spm-[0-9a-f]\{16\}$" "$W/info" || fail "info: fingerprint"

"$M" tokenizer encode --tokenizer "$T" <"$W/s.txt" >"$W/ids" || fail "encode"
"$M" tokenizer encode --tokenizer "$T" --bos --eos <"$W/s.txt" >"$W/ids_be" || fail "encode --bos --eos"
[ "$(wc -l <"$W/ids")" -eq 1 ] || fail "encode: not one line"
[ "$(cat "$W/ids_be")" = "1 $(cat "$W/ids") 2" ] || fail "--bos --eos"
if $PY -c 'import sentencepiece' 2>/dev/null; then
    $PY - "$T" "$W/s.txt" "$W/ids" <<'PYEOF' || fail "ids differ from sentencepiece"
import sys, sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
want = sp.EncodeAsIds(open(sys.argv[2], "rb").read())
got = [int(x) for x in open(sys.argv[3]).read().split()]
sys.exit(0 if got == want else 1)
PYEOF
fi
# Decode gives the text back (the one invalid byte becomes U+FFFD, as in sentencepiece).
"$M" tokenizer decode --tokenizer "$T" <"$W/ids" >"$W/back" || fail "decode"
sed 's/\xff/\xef\xbf\xbd/' "$W/s.txt" | cmp -s - "$W/back" || fail "decode does not round trip"
expect_fail "decode: id past the vocabulary" -- sh -c "echo '15043 32000' | '$M' tokenizer decode --tokenizer '$T'"
expect_fail "decode: not a number" -- sh -c "echo '15043 abc' | '$M' tokenizer decode --tokenizer '$T'"

# tokenize writes a shard with the SentencePiece fingerprint and vocabulary; its ids are the
# encoder's.
ok "$M" tokenize --tokenizer "$T" --input "$W/s.txt" --out "$W/s.shard" >/dev/null
"$M" data info "$W/s.shard" >"$W/sinfo" || fail "data info"
grep -q "^vocab *32000" "$W/sinfo" || fail "shard vocab"
grep -q "^tokenizer *$(sed -n 's/^fingerprint *//p' "$W/info")$" "$W/sinfo" || fail "shard fingerprint"
[ "$("$M" data dump "$W/s.shard")" = "$(cat "$W/ids")" ] || fail "shard ids differ from tokenizer encode"
finish
