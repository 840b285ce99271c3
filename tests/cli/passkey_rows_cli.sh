#!/bin/bash
# passkey-rows: synthetic pass-key training rows. Every row is one JSON line whose text is a filler span with
# the needle inserted at a sentence boundary, then the question and the key; spans come from the filler and
# respect --bytes; the same seed gives the same file; the rows tokenize as JSONL; bad input leaves nothing.
# usage: passkey_rows_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
# (lines that mention the pass key themselves are left out: the checks count its phrases)
cat "$SRC"/README.md "$SRC"/configs/README.md | grep -v "pass key" >"$W/filler.txt"
ok "$M" passkey-rows --filler "$W/filler.txt" --rows 50 --bytes 100,300 --seed 5 --out "$W/a.jsonl" >/dev/null
ok "$M" passkey-rows --filler "$W/filler.txt" --rows 50 --bytes 100,300 --seed 5 --out "$W/b.jsonl" >/dev/null
ok "$M" passkey-rows --filler "$W/filler.txt" --rows 50 --bytes 100,300 --seed 6 --out "$W/c.jsonl" >/dev/null
cmp -s "$W/a.jsonl" "$W/b.jsonl" || fail "the same seed gave different rows"
cmp -s "$W/a.jsonl" "$W/c.jsonl" && fail "another seed gave the same rows"
$PY - "$W/a.jsonl" "$W/filler.txt" <<'PYEOF' || fail "row contents"
import json, re, sys
rows = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
filler = open(sys.argv[2], encoding="utf-8").read()
assert len(rows) == 50, len(rows)
keys, depths = set(), []
for t in rows:
    m = re.fullmatch(r"(.*)The pass key is (\d{5})\. Remember it\. \2 is the pass key\. (.*) ?What is the pass key\? "
                     r"The pass key is \2", t, re.S)
    assert m, t
    before, key, after = m.group(1), m.group(2), m.group(3).rstrip(" ")
    assert t.count("pass key") == 4, t
    span = before + after
    assert span in filler and 16 <= len(span.encode()) <= 300, (len(span.encode()), span)
    assert before == "" or before.endswith((". ", "\n", "\n ")), before  # needle at a sentence start
    assert span.rstrip(" ").endswith("."), span                                      # span ends a sentence
    keys.add(key)
    depths.append(len(before) / len(span))
assert len(keys) > 40, keys
assert min(depths) < 0.25 and max(depths) > 0.5, depths   # needles at various depths
PYEOF
# --key-digits: every key has that many digits, no leading zero, in the needle (twice) and the answer
ok "$M" passkey-rows --filler "$W/filler.txt" --rows 50 --bytes 100,300 --seed 5 --key-digits 2 --out "$W/k2.jsonl" >/dev/null
$PY - "$W/k2.jsonl" <<'PYEOF' || fail "rows with 2-digit keys"
import json, re, sys
keys = set()
for l in open(sys.argv[1], encoding="utf-8"):
    t = json.loads(l)["text"]
    m = re.fullmatch(r"(.*)The pass key is ([1-9]\d)\. Remember it\. \2 is the pass key\. (.*) ?What is the pass key\? "
                     r"The pass key is \2", t, re.S)
    assert m, t
    keys.add(m.group(2))
assert len(keys) > 25, keys
PYEOF
# without --filler: the evaluation's built-in filler (its sentences, repeated), keys as asked
ok "$M" passkey-rows --rows 40 --bytes 20,200 --seed 5 --key-digits 3 --out "$W/builtin.jsonl" >/dev/null
$PY - "$W/builtin.jsonl" <<'PYEOF' || fail "rows with the built-in filler"
import json, re, sys
sentences = {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."}
lengths = []
for l in open(sys.argv[1], encoding="utf-8"):
    t = json.loads(l)["text"]
    m = re.fullmatch(r"(.*)The pass key is ([1-9]\d\d)\. Remember it\. \2 is the pass key\. (.*) ?What is the pass key\? "
                     r"The pass key is \2", t, re.S)
    assert m, t
    span = (m.group(1) + m.group(3)).strip()
    parts = [p + "." for p in span.split(". ") if p]
    parts[-1] = parts[-1].rstrip(".") + "." if parts else parts
    assert parts and all(p in sentences for p in parts), span
    lengths.append(len(span))
assert min(lengths) < 60 and max(lengths) > 120, lengths   # --bytes spread, and longer than one filler copy
PYEOF
expect_fail "key digits 0" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/filler.txt" --key-digits 0 --out "$W/x.jsonl"
ok "$M" tokenize --tokenizer bytes --input "$W/a.jsonl" --jsonl-field text --out "$W/rows.shard" >/dev/null
"$M" data info "$W/rows.shard" | grep -Eq "^documents +50$" || fail "50 documents in the shard"
expect_fail "no rows" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/filler.txt" --rows 0 --out "$W/x.jsonl"
expect_fail "bad --bytes" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/filler.txt" --bytes 300,100 --out "$W/x.jsonl"
expect_fail "bad --bytes text" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/filler.txt" --bytes 100 --out "$W/x.jsonl"
expect_fail "filler too short" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/filler.txt" --bytes 100,1000000 --out "$W/x.jsonl"
expect_fail "missing filler" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/none.txt" --out "$W/x.jsonl"
printf 'abc. def. \0 ghi. jkl mno pqr stu vwx yz. abc. def. ghi. ' >"$W/nul.txt"
expect_fail "NUL in filler" "$W/x.jsonl" -- "$M" passkey-rows --filler "$W/nul.txt" --bytes 16,20 --out "$W/x.jsonl"
finish
