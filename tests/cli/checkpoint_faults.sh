#!/bin/bash
# Checkpoint writes that die: a full disk (a file-size limit, `ulimit -f`, so write() fails with
# EFBIG) and a kill -9 in the middle of saving. Both leave the previous checkpoint intact and
# loadable and no partial file under the final name; the full disk gives a one-line error and a
# non-zero exit (not a death by SIGXFSZ); the temporary of the killed writer is removed by the next
# run in that directory.
# usage: checkpoint_faults.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"

cat "$SRC"/train/*.c "$SRC"/model/*.c >"$W/corpus.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --out "$W/train.shard" >/dev/null
A=(--data "$W/train.shard" --batch 2 --seq 16 --lr 1e-3 --schedule constant --quiet)
R="$W/run"
ok "$M" train --config "$CFG/tiny-v1.json" "${A[@]}" --steps 8 --stop-after 2 --out "$R" >/dev/null
PREV="$R/ckpt_00000002.h5"
[ -f "$PREV" ] || { fail "no first checkpoint"; finish; }
sum_prev=$(cksum <"$PREV")
size_kb=$(( $(stat -c %s "$PREV") / 1024 ))

# loadable: the checkpoint verifies (CRC) and runs
loads() { "$M" logits --ckpt "$1" --tokens "1 2 3" --out "$W/l.npy" >/dev/null 2>&1; }
intact() {
    [ "$(cksum <"$PREV")" = "$sum_prev" ] || fail "$1: the previous checkpoint changed"
    loads "$PREV" || fail "$1: the previous checkpoint does not load"
}

# ---- 1. full disk: the next checkpoint is cut off at half the size of the previous one
(ulimit -f $((size_kb / 2)); exec "$M" train --resume "$PREV" --stop-after 4 --out "$R") >"$W/out" 2>"$W/err"
rc=$?
if [ $rc -eq 0 ]; then fail "full disk: exit 0"; fi
if [ $rc -ge 128 ]; then fail "full disk: killed by a signal (exit $rc)"; fi
[ "$(wc -l <"$W/err")" -eq 1 ] || { fail "full disk: stderr is not one line:"; cat "$W/err" >&2; }
grep -q '^mobilellm' "$W/err" || fail "full disk: message does not start with 'mobilellm'"
grep -qi 'too large\|EFBIG\|write' "$W/err" || fail "full disk: message does not say why: $(cat "$W/err")"
echo "full disk: exit $rc: $(cat "$W/err")"
[ -e "$R/ckpt_00000004.h5" ] && fail "full disk: a partial checkpoint is under the final name"
find "$R" -name '*.tmp.*' | grep -q . && fail "full disk: a temporary file was left: $(ls "$R")"
intact "full disk"

# ---- 2. kill -9 while the checkpoint is written: the temporary appears, the final name never
# does. The save of a step is short, so poll for the temporary and retry if the rename won.
killed=0
for try in 1 2 3 4 5 6 7 8; do
    rm -f "$R/ckpt_00000004.h5"
    "$M" train --resume "$PREV" --stop-after 4 --out "$R" >/dev/null 2>&1 &
    pid=$!
    tmp="$R/ckpt_00000004.h5.tmp.$pid"
    while [ ! -e "$tmp" ] && kill -0 $pid 2>/dev/null; do :; done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e "$tmp" ] && [ ! -e "$R/ckpt_00000004.h5" ]; then killed=1; break; fi
done
if [ $killed -eq 1 ]; then
    echo "kill -9: caught the writer in the middle of saving (try $try)"
    intact "kill -9"
    # the next run in the directory removes the dead writer's temporary (and saves normally)
    "$M" train --resume "$PREV" --stop-after 4 --out "$R" >"$W/out" 2>&1 || fail "run after kill -9: $(cat "$W/out")"
    grep -q "removed 1 temporary checkpoint file" "$W/out" || fail "run after kill -9 did not report the cleanup: $(cat "$W/out")"
    [ -e "$tmp" ] && fail "the dead writer's temporary $tmp is still there"
    loads "$R/ckpt_00000004.h5" || fail "the checkpoint after the cleanup does not load"
else
    fail "kill -9: the writer was never caught with its temporary (8 tries)"
fi

# ---- 3. a temporary of a live process is not touched; one of a dead PID is
sleep 30 &
live=$!
touch "$R/ckpt_00000099.h5.tmp.$live"
# a PID that is not running: a finished child's
(exit 0) & dead=$!; wait $dead
touch "$R/ckpt_00000098.h5.tmp.$dead" "$R/other.h5.tmp.$dead"
"$M" train --resume "$PREV" --stop-after 4 --out "$R" >"$W/out" 2>&1 || fail "run with temporaries: $(cat "$W/out")"
[ -e "$R/ckpt_00000099.h5.tmp.$live" ] || fail "a live writer's temporary was removed"
[ -e "$R/ckpt_00000098.h5.tmp.$dead" ] && fail "a dead writer's temporary was kept"
[ -e "$R/other.h5.tmp.$dead" ] || fail "a file that is not a checkpoint temporary was removed"
kill $live 2>/dev/null
wait $live 2>/dev/null
finish
