#!/bin/bash
# CLI tests of corpus ingestion (tokenize): JSONL input, bad lines, size-bounded shards with a
# manifest, all-or-nothing on failure, parallel == serial, manifests as --data / data info.
# usage: ingest_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
SPM="$SHARED/tokenizers/llama2-spm-32000.model"
TOKS=(bytes)
if need_shared "$SPM"; then TOKS+=("$SPM"); fi

ids() { "$M" data dump "$1"; }             # all ids of a shard on one line
doc_ids() { "$M" data dump "$1" --start "$2" --count "$3"; }

# ---- JSONL: each line's field is a document; its ids are `tokenizer encode` of the text
mkdir -p "$W/j/sub"
$PY - "$W/j" <<'PYEOF'
import json, sys
d = sys.argv[1]
texts = ["Hello, world!", "Once upon a time \u00e9t\u00e9 \u4e2d\u6587 \U0001F600", "line\nbreak\tand \"quotes\"", "", "last one"]
with open(d + "/a.jsonl", "w") as f:
    for i, t in enumerate(texts):
        f.write(json.dumps({"id": i, "text": t, "other": "x"}) + "\n")
    f.write("\n")  # blank lines are ignored
with open(d + "/sub/b.jsonl", "w") as f:
    f.write(json.dumps({"text": "from b"}) + "\n")
with open(d + "/texts", "w") as f:  # the non-empty texts in input order, NUL-separated
    f.write("\0".join([t for t in texts if t] + ["from b"]))
PYEOF
printf 'a plain text file\n' >"$W/j/plain.txt"   # not .jsonl: one text document
for T in "${TOKS[@]}"; do
    "$M" tokenize --tokenizer "$T" --input "$W/j" --jsonl-field text --out "$W/j.shard" >"$W/sum" || fail "jsonl tokenize"
    grep -q "6 documents" "$W/sum" || fail "jsonl: $(cat "$W/sum")"
    # expected: the documents in input order (a.jsonl, plain.txt, sub/b.jsonl)
    : >"$W/expect"
    $PY -c "
import sys
t = open('$W/j/texts').read().split('\0')
docs = t[:4] + ['a plain text file\n'] + t[4:]
for i, d in enumerate(docs): open('$W/doc%d' % i, 'w').write(d)
" || fail "py"
    for i in 0 1 2 3 4 5; do "$M" tokenizer encode --tokenizer "$T" <"$W/doc$i" >>"$W/expect"; done
    tr '\n' ' ' <"$W/expect" | sed 's/  */ /g; s/ $//' >"$W/expect1"
    ids "$W/j.shard" | tr '\n' ' ' | sed 's/  */ /g; s/ $//' >"$W/got1"
    cmp -s "$W/expect1" "$W/got1" || fail "jsonl ids differ from tokenizer encode ($T)"
done

# ---- bad lines: an error naming file:line and no output; --skip-bad-lines counts them
printf '{"text":"ok"}\n{"text":"ok too"}\nnot json\n' >"$W/bad1.jsonl"
expect_fail "jsonl not JSON" "$W/bad.shard" -- "$M" tokenize --tokenizer bytes --input "$W/bad1.jsonl" --jsonl-field text --out "$W/bad.shard"
grep -q "bad1.jsonl:3: not valid JSON" "$W/stderr" || fail "no file:line: $(cat "$W/stderr")"
printf '{"text":"ok"}\n{"body":"x"}\n' >"$W/bad2.jsonl"
expect_fail "jsonl field missing" "$W/bad.shard" -- "$M" tokenize --tokenizer bytes --input "$W/bad2.jsonl" --jsonl-field text --out "$W/bad.shard"
grep -q "bad2.jsonl:2: no field 'text'" "$W/stderr" || fail "missing field: $(cat "$W/stderr")"
printf '{"text":["x"]}\n' >"$W/bad3.jsonl"
expect_fail "jsonl field not a string" "$W/bad.shard" -- "$M" tokenize --tokenizer bytes --input "$W/bad3.jsonl" --jsonl-field text --out "$W/bad.shard"
grep -q "bad3.jsonl:1: not a string: field 'text'" "$W/stderr" || fail "non-string: $(cat "$W/stderr")"
printf '[1,2]\n{"text":"x"} trailing\n' >"$W/bad4.jsonl"
"$M" tokenize --tokenizer bytes --input "$W/bad1.jsonl" "$W/bad2.jsonl" "$W/bad3.jsonl" "$W/bad4.jsonl" --jsonl-field text \
    --skip-bad-lines --out "$W/skip.shard" >"$W/sum" || fail "skip-bad-lines"
grep -q "3 documents, .*5 bad lines skipped" "$W/sum" || fail "skip count: $(cat "$W/sum")"
expect_fail "skip without field" "$W/bad.shard" -- "$M" tokenize --tokenizer bytes --input "$W/bad1.jsonl" --skip-bad-lines --out "$W/bad.shard"

# ---- rollover: shards concatenate to the single-shard output; the manifest describes them
seq 1 5000 >"$W/n.txt"
{ for i in $(seq 1 40); do echo "paragraph $i"; echo "more text $i"; echo; done; } >"$W/p.txt"
"$M" tokenize --tokenizer bytes --input "$W/n.txt" "$W/p.txt" --doc-split lines --domain num --out "$W/one.shard" >/dev/null || fail "single"
"$M" tokenize --tokenizer bytes --input "$W/n.txt" "$W/p.txt" --doc-split lines --domain num --shard-tokens 5000 \
    --out "$W/roll" >"$W/sum" || fail "rollover"
nsh=$(ls "$W"/roll-*.shard | wc -l)
[ "$nsh" -ge 4 ] || fail "rollover made $nsh shards"
for f in "$W"/roll-*.shard; do ids "$f"; done | tr '\n' ' ' | sed 's/ $//' >"$W/cat"
ids "$W/one.shard" | tr '\n' ' ' | sed 's/ $//' >"$W/single"
cmp -s "$W/cat" "$W/single" || fail "shards do not concatenate to the single shard"
$PY - "$W" "$M" <<'PYEOF' || fail "manifest content"
import json, os, subprocess, sys, glob
w, m = sys.argv[1], sys.argv[2]
j = json.load(open(w + "/roll.manifest.json"))
assert j["format"] == "mobilellm-shard-manifest" and j["version"] == 1, j
assert j["tokenizer"] == "bytes-v1" and j["vocab_size"] == 259 and j["domain"] == "num", j
files = sorted(os.path.basename(p) for p in glob.glob(w + "/roll-*.shard"))
assert [s["path"] for s in j["shards"]] == files, (files, j["shards"])
info = subprocess.run([m, "data", "info", w + "/one.shard"], capture_output=True, text=True, check=True).stdout
tot = int([l for l in info.splitlines() if l.startswith("tokens")][0].split()[1])
docs = int([l for l in info.splitlines() if l.startswith("documents")][0].split()[1])
assert j["tokens"] == tot and j["documents"] == docs, (j["tokens"], tot, j["documents"], docs)
assert sum(s["tokens"] for s in j["shards"]) == tot and sum(s["documents"] for s in j["shards"]) == docs
for s in j["shards"][:-1]:
    assert s["tokens"] >= 5000, s                      # closed at the first boundary past N
for s in j["shards"]:
    assert s["domain"] == "num" and s["tokenizer"] == "bytes-v1" and s["vocab_size"] == 259, s
    i = subprocess.run([m, "data", "info", w + "/" + s["path"]], capture_output=True, text=True, check=True).stdout
    assert ("tokens          %d" % s["tokens"]) in i and ("documents       %d" % s["documents"]) in i, (s, i)
PYEOF
# one huge document exceeds N: one shard
"$M" tokenize --tokenizer bytes --input "$W/n.txt" --shard-tokens 100 --out "$W/huge" >/dev/null || fail "huge doc"
[ "$(ls "$W"/huge-*.shard | wc -l)" -eq 1 ] || fail "a single document was split"
# --shard-mb, and the validation split as a prefix too
"$M" tokenize --tokenizer bytes --input "$W/n.txt" --doc-split lines --shard-mb 0.01 --out "$W/mb" \
    --val-fraction 0.1 --val-out "$W/mbval" >"$W/sum" || fail "shard-mb"
[ -f "$W/mb.manifest.json" ] && [ -f "$W/mbval.manifest.json" ] || fail "no manifests"
[ "$(ls "$W"/mb-*.shard | wc -l)" -ge 3 ] || fail "--shard-mb 0.01 (2500 tokens) on 23893 tokens"
grep -q "mbval.manifest.json: 500 documents" "$W/sum" || fail "val manifest: $(cat "$W/sum")"

# ---- data info: manifests and several shards; domains listed
"$M" tokenize --tokenizer bytes --input "$W/p.txt" --domain prose --out "$W/prose.shard" >/dev/null || fail "prose"
"$M" data info "$W/roll.manifest.json" "$W/prose.shard" >"$W/info" || fail "info manifest"
grep -q "^total *$((nsh + 1)) shards" "$W/info" || fail "info total: $(tail -2 "$W/info")"
grep -q "^domains *num, prose$" "$W/info" || fail "info domains: $(tail -2 "$W/info")"
expect_fail "info bad manifest" -- "$M" data info "$W/bad1.jsonl.manifest.json"
printf '{"shards": []}' >"$W/x.manifest.json"
expect_fail "info not a manifest" -- "$M" data info "$W/x.manifest.json"

# ---- all-or-nothing: a failure after shards were committed leaves none of this run
mkdir "$W/aon"
expect_fail "late bad line" -- "$M" tokenize --tokenizer bytes --input "$W/n.txt" "$W/bad1.jsonl" --doc-split lines \
    --jsonl-field text --shard-tokens 1000 --out "$W/aon/r"
[ -z "$(ls -A "$W/aon")" ] || fail "left after a late failure: $(ls "$W/aon")"
mkdir "$W/aon/v.manifest.json"   # the validation manifest cannot be written: the last step fails
expect_fail "val manifest fails" -- "$M" tokenize --tokenizer bytes --input "$W/n.txt" --doc-split lines --shard-tokens 1000 \
    --out "$W/aon/r" --val-fraction 0.2 --val-out "$W/aon/v"
[ "$(ls -A "$W/aon")" = "v.manifest.json" ] || fail "left after a failed manifest: $(ls "$W/aon")"
rmdir "$W/aon/v.manifest.json"

# ---- parallel == serial (several batches: > 2048 documents)
for T in "${TOKS[@]}"; do
    OMP_NUM_THREADS=1 "$M" tokenize --tokenizer "$T" --input "$W/n.txt" "$W/p.txt" --doc-split lines --shard-tokens 4000 \
        --out "$W/ser" --val-fraction 0.1 --val-out "$W/serv" >/dev/null || fail "serial"
    "$M" tokenize --tokenizer "$T" --input "$W/n.txt" "$W/p.txt" --doc-split lines --threads 4 --shard-tokens 4000 \
        --out "$W/par" --val-fraction 0.1 --val-out "$W/parv" >/dev/null || fail "parallel"
    for f in "$W"/ser-*.shard "$W"/serv-*.shard; do
        g=$(echo "$f" | sed 's|/ser|/par|')
        cmp -s "$f" "$g" || fail "parallel differs from serial: $(basename "$f") ($T)"
    done
    [ "$(ls "$W"/ser-*.shard | wc -l)" -eq "$(ls "$W"/par-*.shard | wc -l)" ] || fail "shard counts differ"
    rm -f "$W"/ser-* "$W"/par-* "$W"/serv-* "$W"/parv-*
done

# ---- a manifest as --data (train, eval): same as its shard list
CFG="$SRC/configs"
"$M" train --config "$CFG/tiny-pro.json" --data "$W/roll.manifest.json" --batch 2 --seq 16 --steps 2 --quiet \
    --out "$W/tr" >/dev/null || fail "train --data manifest"
ck=$(ls "$W"/tr/ckpt_*.h5 | tail -1)
a=$("$M" eval --ckpt "$ck" --data "$W/roll.manifest.json" --batch 2 --seq 16 --max-batches 3)
b=$("$M" eval --ckpt "$ck" --data "$W"/roll-*.shard --batch 2 --seq 16 --max-batches 3)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "eval manifest != shard list: '$a' vs '$b'"
expect_fail "train missing manifest" -- "$M" train --config "$CFG/tiny-pro.json" --data "$W/none.manifest.json" --out "$W/tr2"

finish
