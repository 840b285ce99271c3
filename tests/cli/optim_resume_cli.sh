#!/bin/bash
# The optimizer registry and the options table seen from the CLI: per-optimizer weight decay defaults
# (SGD 0, L2; AdamW 0.1, decoupled), checkpoints that list their optimizer state groups, old
# checkpoints without that list still resuming bit-exactly, and one-line errors for a checkpoint whose
# optimizer is unknown or whose state groups do not match the registry. Also the table's aliases.
# usage: optim_resume_cli.sh <mobilellm> <source-dir>
set -u
source "$(dirname "$0")/common.bash"
CFG="$SRC/configs"
cat "$SRC"/optim/*.c "$SRC"/train/*.c >"$W/corpus.txt"
ok "$M" tokenize --tokenizer bytes --input "$W/corpus.txt" --doc-split blank-lines --out "$W/train.shard" >/dev/null 2>&1
A=(--config "$CFG/tiny-v1.json" --data "$W/train.shard" --batch 2 --seq 16 --quiet)
attr() { $PY -c "import h5py, sys; v = h5py.File(sys.argv[1], 'r').attrs.get(sys.argv[2]); print(v.decode() if isinstance(v, bytes) else v)" "$@"; }
# edit a checkpoint with h5py, then re-seal its checksum block as our writer would have
edit() { $PY -c "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); $2; f.close()" "$1" &&
    $PY "$SRC/tests/support/h5_reseal.py" "$1"; }
arg() { $PY -c "import h5py, json, sys; print(json.loads(h5py.File(sys.argv[1], 'r').attrs['args_json'])[sys.argv[2]])" "$@"; }

# 1. weight decay: the optimizer's default unless given; help says how each applies it
ok "$M" train "${A[@]}" --optim sgd --lr 0.05 --steps 2 --out "$W/sgd" >/dev/null
[ "$(arg "$W/sgd/ckpt_00000002.h5" weight_decay)" = "0" ] || fail "sgd default weight decay is not 0"
ok "$M" train "${A[@]}" --steps 2 --out "$W/adamw" >/dev/null
$PY -c "import sys; assert abs(float(sys.argv[1]) - 0.1) < 1e-7" "$(arg "$W/adamw/ckpt_00000002.h5" weight_decay)" ||
    fail "adamw default weight decay is not 0.1"
ok "$M" train "${A[@]}" --optim sgd --lr 0.05 --weight-decay 0.01 --steps 2 --out "$W/sgdwd" >/dev/null
$PY -c "import sys; assert abs(float(sys.argv[1]) - 0.01) < 1e-9" "$(arg "$W/sgdwd/ckpt_00000002.h5" weight_decay)" ||
    fail "sgd --weight-decay not kept"
"$M" train --help | grep -- "--weight-decay" | grep -q "L2 for sgd" || fail "help does not say sgd's decay is L2"
"$M" train --help | grep -- "--optim" | grep -q "adamw | sgd" || fail "help does not list the registry's optimizers"

# 2. checkpoints list their state groups (as the registry names them)
[ "$(attr "$W/adamw/ckpt_00000002.h5" optimizer_state)" = "exp_avg,exp_avg_sq" ] || fail "adamw groups not listed"
[ "$(attr "$W/sgd/ckpt_00000002.h5" optimizer_state)" = "" ] || fail "plain sgd keeps no state"
ok "$M" train "${A[@]}" --optim sgd --momentum 0.9 --lr 0.05 --steps 6 --out "$W/mom" >/dev/null
ok "$M" train "${A[@]}" --optim sgd --momentum 0.9 --lr 0.05 --steps 6 --stop-after 3 --out "$W/mom3" >/dev/null
[ "$(attr "$W/mom3/ckpt_00000003.h5" optimizer_state)" = "momentum_buffer" ] || fail "sgd momentum group not listed"

# 3. a checkpoint from before the list (no optimizer_state attribute) resumes bit-exactly
cp "$W/mom3/ckpt_00000003.h5" "$W/old.h5"
edit "$W/old.h5" "del f.attrs['optimizer_state']"
mkdir -p "$W/old"
ok "$M" train --resume "$W/old.h5" --out "$W/old" >/dev/null
same_state "$W/mom/ckpt_00000006.h5" "$W/old/ckpt_00000006.h5" || fail "old-layout checkpoint resumed differently"

# 4. an unknown optimizer, and state groups that do not match the registry: one line each
ok "$M" train "${A[@]}" --steps 4 --stop-after 2 --out "$W/a2" >/dev/null
cp "$W/a2/ckpt_00000002.h5" "$W/unknown.h5"
edit "$W/unknown.h5" "import json; f.attrs['optimizer'] = 'adamx'; a = json.loads(f.attrs['args_json']); a['optim'] = 'adamx'; f.attrs['args_json'] = json.dumps(a)"
expect_fail "unknown optimizer in the checkpoint" "$W/u/ckpt_00000004.h5" -- "$M" train --resume "$W/unknown.h5" --out "$W/u"
grep -q "adamx" "$W/stderr" || fail "the error does not name the unknown optimizer"
cp "$W/a2/ckpt_00000002.h5" "$W/unknown2.h5"
edit "$W/unknown2.h5" "f.attrs['optimizer'] = 'adamx'"
expect_fail "unknown optimizer state in the checkpoint" "$W/u/ckpt_00000004.h5" -- "$M" train --resume "$W/unknown2.h5" --out "$W/u"
grep -q "optimizer 'adamx', which this build does not know" "$W/stderr" || fail "the error does not name the unknown optimizer"
cp "$W/a2/ckpt_00000002.h5" "$W/groups.h5"
edit "$W/groups.h5" "f.attrs['optimizer_state'] = 'exp_avg'; del f['optim/exp_avg_sq']"
expect_fail "optimizer state groups do not match" "$W/g/ckpt_00000004.h5" -- "$M" train --resume "$W/groups.h5" --out "$W/g"
grep -q "exp_avg_sq" "$W/stderr" || fail "the error does not name the missing group"
cp "$W/a2/ckpt_00000002.h5" "$W/lying.h5"
edit "$W/lying.h5" "del f['optim/exp_avg_sq']"
expect_fail "listed group missing from the file" "$W/l/ckpt_00000004.h5" -- "$M" train --resume "$W/lying.h5" --out "$W/l"
expect_fail "resume with another optimizer" "$W/z/ckpt_00000004.h5" -- "$M" train --resume "$W/a2/ckpt_00000002.h5" --optim sgd --out "$W/z"
expect_fail "unknown optimizer" "$W/n/ckpt_00000002.h5" -- "$M" train "${A[@]}" --optim adamx --steps 2 --out "$W/n"

# 5. the table's other spellings (--eps for --adam-eps, --wsd-decay-fraction for --wsd-decay)
ok "$M" train "${A[@]}" --steps 2 --eps 1e-6 --schedule wsd --wsd-decay-fraction 0.5 --out "$W/alias" >/dev/null
$PY -c "import sys; assert abs(float(sys.argv[1]) - 1e-6) < 1e-12 and abs(float(sys.argv[2]) - 0.5) < 1e-9" \
    "$(arg "$W/alias/ckpt_00000002.h5" eps)" "$(arg "$W/alias/ckpt_00000002.h5" wsd_decay_fraction)" || fail "aliases not applied"
finish
