# `mobilellm sample`: same seed -> same text, different seeds differ, greedy is deterministic,
# statistics on stderr, bad options fail with one line.
source "$(dirname "$0")/common.bash"
ok "$M" init --config "$SRC/configs/tiny-pro.json" --seed 2 --out "$W/m.h5" >/dev/null
run() { "$M" sample --ckpt "$W/m.h5" --prompt "Once upon" --tokens 60 "$@" 2>"$W/err"; }
run --seed 5 >"$W/a" || fail "sample seed 5"
run --seed 5 >"$W/b" || fail "sample seed 5 again"
run --seed 6 >"$W/c" || fail "sample seed 6"
cmp -s "$W/a" "$W/b" || fail "the same seed gave different text"
cmp -s "$W/a" "$W/c" && fail "different seeds gave the same text"
[ -s "$W/a" ] || fail "no text generated"
grep -Eq "prefill: 9 tokens.*decode: [0-9]+ tokens" "$W/err" || { fail "no statistics line"; cat "$W/err"; }
run --temperature 0 --seed 1 >"$W/g1" || fail "greedy"
run --temperature 0 --seed 2 >"$W/g2" || fail "greedy"
cmp -s "$W/g1" "$W/g2" || fail "greedy depends on the seed"
run --top-k 5 --top-p 0.9 --temperature 0.7 >/dev/null || fail "top-k + top-p"
"$M" sample --ckpt "$W/m.h5" --tokens 5 >/dev/null 2>&1 || fail "empty prompt (starts from BOS)"
expect_fail "negative temperature" -- "$M" sample --ckpt "$W/m.h5" --temperature -1
expect_fail "top-p above 1" -- "$M" sample --ckpt "$W/m.h5" --top-p 1.5
expect_fail "negative top-k" -- "$M" sample --ckpt "$W/m.h5" --top-k -3
expect_fail "negative tokens" -- "$M" sample --ckpt "$W/m.h5" --tokens -3
expect_fail "missing checkpoint" -- "$M" sample --ckpt "$W/nope.h5"
expect_fail "unknown tokenizer" -- "$M" sample --ckpt "$W/m.h5" --tokenizer "$W/nope.model"
# eval --task on a two-item PIQA file: JSON results, bad input
printf '%s\n' '{"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0}' \
    '{"goal": "Dry hair.", "sol1": "Use a towel.", "sol2": "Use a rock.", "label": 0}' >"$W/piqa_valid.jsonl"
ok "$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W" --json "$W/r.json" >"$W/out" 2>/dev/null
grep -q '"items":2' "$W/out" || fail "eval --task output: $(cat "$W/out")"
$PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['items']==2 and len(d['scores'])==2" "$W/r.json" || fail "eval --json"
# scripts/mc_summary.py (the experiments' MC tables): accuracy from the per-item scores, sample standard error, chance
$PY - "$SRC/scripts" "$W/r.json" <<'PYEOF' || fail "mc_summary.py"
import json, math, sys
sys.path.insert(0, sys.argv[1])
from mc_summary import summary
r = json.load(open(sys.argv[2]))
s = summary(sys.argv[2])
acc = sum(x["pred"] == x["label"] for x in r["scores"]) / 2
assert s["n"] == 2 and s["chance"] == 0.5 and s["acc"] == acc == r["acc"], (s, r["acc"])
assert math.isclose(s["acc_se"], math.sqrt(acc * (1 - acc) / 1)), s
PYEOF
expect_fail "unknown task" "$W/x.json" -- "$M" eval --ckpt "$W/m.h5" --task winogrande --json "$W/x.json"
expect_fail "missing task file" "$W/x.json" -- "$M" eval --ckpt "$W/m.h5" --task arc_easy --eval-dir "$W" --json "$W/x.json"
expect_fail "task and data together" -- "$M" eval --ckpt "$W/m.h5" --task piqa --data "$W/m.h5"
# --max-len sets the window: " Twist the lid." is 15 byte tokens, more than a window of 8
expect_fail "continuation longer than --max-len" "$W/w8.json" -- "$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W" \
    --max-len 8 --json "$W/w8.json"
grep -q "window of 8" "$W/stderr" || fail "--max-len 8 not used: $(cat "$W/stderr")"
ok "$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W" --max-len 16 --json "$W/w16.json" >/dev/null 2>&1
expect_fail "negative --max-len" -- "$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W" --max-len -1
# signal_ends PID SIGNAL SECONDS WHAT: send the signal, fail unless the process ends within SECONDS; rc = its status
signal_ends() {
    kill -"$2" "$1"
    for _ in $(seq $(($3 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && { kill -KILL "$1"; fail "$4 ignored SIG$2 for $3 s"; }
    wait "$1"
    rc=$?
}
# SIGTERM stops a long evaluation between items: exit 130, one line, no --json file
mkdir -p "$W/long"
$PY -c "
import json
for i in range(200000): print(json.dumps({'goal': f'Goal {i}: open the jar.', 'sol1': 'Twist the lid.', 'sol2': 'Eat the lid.', 'label': i % 2}))
" >"$W/long/piqa_valid.jsonl"
"$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W/long" --json "$W/long.json" >/dev/null 2>"$W/long.err" &
pid=$!
for _ in $(seq 100); do grep -q "items/s" "$W/long.err" 2>/dev/null && break; sleep 0.1; done  # scoring has begun
signal_ends $pid TERM 30 "eval --task"
[ $rc -eq 130 ] || fail "SIGTERM during eval --task: exit $rc, expected 130"
[ -e "$W/long.json" ] && fail "SIGTERM during eval --task left $W/long.json"
tr '\r' '\n' <"$W/long.err" | grep -q "^mobilellm eval: interrupted after [0-9]* of 200000 items" ||
    fail "no interruption message: $(tr '\r' '\n' <"$W/long.err" | tail -1)"
# A command with no stop point of its own (passkey) ends on the first Ctrl-C instead of ignoring it
"$M" passkey --ckpt "$W/m.h5" --lengths 256 --samples 1000000 --json "$W/pk.json" >/dev/null 2>&1 &
pid=$!
sleep 1
signal_ends $pid INT 10 passkey
[ $rc -eq 130 ] || fail "SIGINT during passkey: exit $rc, expected 130 (ended by the signal)"
[ -e "$W/pk.json" ] && fail "SIGINT during passkey left $W/pk.json"
mkdir -p "$W/bad"; echo '{"goal": "x"' >"$W/bad/piqa_valid.jsonl"
expect_fail "malformed task file" "$W/x.json" -- "$M" eval --ckpt "$W/m.h5" --task piqa --eval-dir "$W/bad" --json "$W/x.json"
finish
