#!/bin/bash
# passkey: the JSON and table carry accuracy and answer_nll per length. A freshly initialised model (logits
# near 0, so nearly uniform over the 259 byte ids) pays about ln(259) = 5.56 nats per answer token and
# retrieves nothing; the same seed gives the same figures; bad lengths fail with one line and no JSON.
# usage: passkey_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
ok "$M" init --config "$SRC/configs/tiny-v1.json" --seed 3 --out "$W/m.h5" >/dev/null
ok "$M" passkey --ckpt "$W/m.h5" --lengths 128,200 --samples 3 --json "$W/a.json" >"$W/table" 2>/dev/null
ok "$M" passkey --ckpt "$W/m.h5" --lengths 128,200 --samples 3 --json "$W/b.json" >/dev/null 2>&1
cmp -s "$W/a.json" "$W/b.json" || fail "the same seed gave different results"
grep -q "answer nll" "$W/table" || fail "the table has no answer nll column"
$PY - "$W/a.json" <<'PYEOF' || fail "passkey JSON"
import json, math, sys
r = json.load(open(sys.argv[1]))["results"]
assert [x["length"] for x in r] == [128, 200], r
for x in r:
    assert x["samples"] == 3 and x["correct"] == 0 and x["accuracy"] == 0, x
    assert abs(x["answer_nll"] - math.log(259)) < 0.3, x
    assert x["mean_tokens"] <= x["length"], x
print(r)
PYEOF
# shorter keys: recorded, and other prompts and answers (so another answer NLL)
ok "$M" passkey --ckpt "$W/m.h5" --lengths 128,200 --samples 3 --key-digits 2 --json "$W/k2.json" >/dev/null 2>&1
$PY - "$W/a.json" "$W/k2.json" <<'PYEOF' || fail "passkey --key-digits"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["key_digits"] == 5 and b["key_digits"] == 2, (a, b)
assert [x["answer_nll"] for x in a["results"]] != [x["answer_nll"] for x in b["results"]]
PYEOF
expect_fail "key digits 0" "$W/c.json" -- "$M" passkey --ckpt "$W/m.h5" --key-digits 0 --json "$W/c.json"
expect_fail "key digits 10" "$W/c.json" -- "$M" passkey --ckpt "$W/m.h5" --key-digits 10 --json "$W/c.json"
expect_fail "bad lengths" "$W/c.json" -- "$M" passkey --ckpt "$W/m.h5" --lengths 128,x --json "$W/c.json"
expect_fail "too short" "$W/c.json" -- "$M" passkey --ckpt "$W/m.h5" --lengths 40 --json "$W/c.json"
finish
