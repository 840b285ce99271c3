# Shared helpers of the CLI tests (sourced; not a test itself).
# Sets M (the mobilellm binary), SRC (source dir), SHARED (the shared data directory), W (a fresh
# work dir removed at exit) and provides fail / ok / expect_fail / need_shared / skip_part / finish.
M="$1"
SRC="$2"
source "$(dirname "${BASH_SOURCE[0]}")/skip.bash"
mkdir -p test_files
W=$(mktemp -d "$PWD/test_files/$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$W"' EXIT
PY=/usr/bin/python3
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { "$@" || fail "$*"; }

# expect_fail NAME OUTPUT... -- CMD...: exits non-zero without crashing, one line on stderr that
# starts with 'mobilellm', no OUTPUT left, no temporary files left in $W.
expect_fail() {
    local name="$1"; shift
    local outs=()
    while [ "$1" != "--" ]; do outs+=("$1"); shift; done
    shift
    "$@" >"$W/stdout" 2>"$W/stderr"
    local rc=$?
    if [ $rc -eq 0 ]; then fail "$name: exit 0"; fi
    if [ $rc -ge 128 ]; then fail "$name: crashed (exit $rc)"; fi
    if [ "$(wc -l <"$W/stderr")" -ne 1 ]; then fail "$name: stderr is not one line:"; cat "$W/stderr" >&2; fi
    grep -q '^mobilellm' "$W/stderr" || fail "$name: message does not start with 'mobilellm'"
    for o in "${outs[@]}"; do [ -e "$o" ] && fail "$name: output $o was left"; done
    find "$W" -name '*.tmp.*' | grep -q . && fail "$name: a temporary file was left"
    echo "ok: $name: $(cat "$W/stderr")"
}

# same_state A B: two checkpoints hold identical datasets (parameters, optimizer moments, RNG, data
# cursor, loader state) and the same step, tokens seen and optimizer step.
same_state() {
    $PY - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def walk(g, out, prefix=""):
    for k, v in g.items():
        if isinstance(v, h5py.Group): walk(v, out, prefix + k + "/")
        else: out[prefix + k] = v[()]
da, db = {}, {}
walk(a, da); walk(b, db)
assert da.keys() == db.keys(), set(da) ^ set(db)
bad = [k for k in da if not np.array_equal(da[k], db[k])]
for k in ("step", "tokens_seen", "optimizer_step"):
    if a.attrs[k] != b.attrs[k]: bad.append(k)
if bad: sys.exit("differ: " + ", ".join(bad[:5]))
PYEOF
}

# finish: exit 1 on any failure, else the skip code (77) if a part was skipped, else 0. Always exits.
finish() {
    if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
    skip_exit
    echo "all passed"
    exit 0
}
