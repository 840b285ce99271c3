#!/bin/bash
# scripts/recipe.sh --tiny end to end into a temporary folder, then its report: every phase present with its
# seconds, every model label evaluated with finite held-out losses on every domain, pass-key results at T, 2T
# and 4T, the artifacts on disk, and the report's plots. Then a second run of the same command redoes nothing,
# and a changed setting is redone from the phase it changes. Registered for the release build only (minutes
# of training; the sanitizer build would take far longer and the library code is covered there by its own tests).
# usage: recipe_tiny.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/../cli/common.bash"
OUT="$W/recipe"
export M
ok "$SRC/scripts/recipe.sh" --tiny "$OUT" >"$W/run1.log" 2>&1 || { tail -20 "$W/run1.log"; finish; }
$PY - "$OUT" <<'PYEOF' || fail "report.json"
import json, math, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "report.json")))
phases = ["data", "tokenizer", "mixture", "teacher", "pretrain", "distill", "ipd", "specialists", "merge", "qat", "export"]
assert [p["name"] for p in r["phases"]] == phases, [p["name"] for p in r["phases"]]
for p in r["phases"]:
    assert isinstance(p["seconds"], int) and p["seconds"] >= 0, p
    assert isinstance(p["metrics"], dict) and p["metrics"], p
domains = r["corpus"]["domains"]
assert domains == ["code", "prose", "math"], domains
labels = ["teacher", "ce", "distilled", "ipd", "merged", "merged-uniform", "ptq", "qat"] + [f"specialist:{d}" for d in domains]
for l in labels:
    assert l in r["eval"], f"no eval of {l}"
    for d in domains + ["avg"]:
        v = r["eval"][l][d]
        assert isinstance(v, float) and math.isfinite(v) and 0 < v < 20, (l, d, v)
    assert abs(r["eval"][l]["avg"] - sum(r["eval"][l][d] for d in domains) / len(domains)) < 1e-9
for l in ("teacher", "warm-up", "ce", "distilled", "ipd", "ce-long"):
    assert sorted(r["passkey"][l], key=int) == ["256", "512", "1024"], r["passkey"][l]
    assert all(0 <= a <= 1 for a in r["passkey"][l].values())
for k in ("gguf", "hf"):
    assert os.path.exists(os.path.join(out, r["artifacts"][k])), k
assert os.path.exists(os.path.join(out, r["artifacts"]["hf"], "config.json"))
assert open(os.path.join(out, r["artifacts"]["gguf"]), "rb").read(4) == b"GGUF"
engines = r["phases"][-1]["metrics"]
for e in ("llama.cpp", "transformers", "executorch"):
    st = engines[e]["status"]
    assert st == "checked" or st.startswith("skipped"), (e, st)
    print(f"{e}: {st}", engines[e].get("max_rel_diff", ""))
# QAT and PTQ quantize the same merged model: their losses differ from it
assert r["eval"]["ptq"]["avg"] != r["eval"]["merged"]["avg"]
for p in r["plots"].values():
    assert open(os.path.join(out, p)).read().startswith("<svg"), p
md = open(os.path.join(out, "report.md")).read()
for name in phases + ["merged-uniform", "specialist:math"]:
    assert name in md, name
print("report ok:", len(r["eval"]), "models evaluated")
PYEOF
# a second run redoes nothing
ok "$SRC/scripts/recipe.sh" --tiny "$OUT" >"$W/run2.log" 2>&1
[ "$(grep -c 'kept$' "$W/run2.log")" = 11 ] || { fail "second run redid a phase"; cat "$W/run2.log"; }
# a changed setting (the corpus) is redone, with everything after it
# (--teacher brings the teacher just trained: same data, tokenizer and mixture, a new teacher phase and all after it)
cp "$OUT/teacher/teacher.h5" "$W/teacher.h5"
touch -d '2000-01-01' "$OUT/export/model-q4_0.gguf"
ok "$SRC/scripts/recipe.sh" --tiny --data debian --teacher "$W/teacher.h5" --tokenizer bytes "$OUT" >"$W/run3.log" 2>&1
grep -q 'phase 3/11 mixture: done before' "$W/run3.log" || fail "mixture phase was not kept"
grep -q 'phase teacher: settings changed' "$W/run3.log" || fail "teacher phase not redone after its setting changed"
[ "$(stat -c %Y "$OUT/export/model-q4_0.gguf")" -gt 946771200 ] || fail "export phase was not redone"
# bad input: one line, non-zero, nothing made
"$SRC/scripts/recipe.sh" --tiny --data nowhere "$W/bad" >"$W/out" 2>"$W/err" && fail "--data nowhere accepted"
[ "$(wc -l <"$W/err")" = 1 ] || fail "bad --data: not one line: $(cat "$W/err")"
[ -e "$W/bad" ] && fail "bad --data left a folder"
"$SRC/scripts/recipe.sh" --tiny --teacher "$W/none.h5" "$W/bad" >"$W/out" 2>"$W/err" && fail "missing teacher accepted"
grep -q "none.h5" "$W/err" || fail "missing teacher: message does not name it"
finish
