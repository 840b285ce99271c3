#!/usr/bin/env bash
# SentencePiece encoding speed of mobilellm.c against sentencepiece's C++ encoder
# (python3-sentencepiece), same text, same machine, same run; appended to bench/RESULTS.md
# under "Tokenizer".
#   bench/tokenizer_bench.sh [MB_PER_CORPUS]     (default 1.5: that much from each of six corpora)
# Ours: `mobilellm tokenizer encode` on the whole text (wall time of the command: model load,
# reading stdin and printing the ids included), on 1 thread and on all cores. Theirs:
# EncodeAsIds on the whole text (one document), EncodeAsIds on its lines (a batch, one thread),
# and encode(lines, num_threads=all cores). Our ids are checked against EncodeAsIds(whole text).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1.5}
SHARED=${ML_SHARED:-../shared}
MODEL=$SHARED/tokenizers/llama2-spm-32000.model
THREADS=$(nproc)
[ -x build/mobilellm ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$THREADS" >/dev/null; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BYTES=$(/usr/bin/python3 -c "print(int($MB * 1e6))")
for f in stories/tinystories_train_prefix.txt books/gutenberg/classics__middlemarch.txt code/python_cpython311_stdlib.txt \
         code/c_lua_zlib_nginx_curl.txt wiki/enwiki_extract.txt chat/alpaca_5000.json; do
    head -c "$BYTES" "$SHARED/data/$f"
done >"$TMP/text"
/usr/bin/python3 - "$MODEL" "$TMP/text" "$THREADS" build/mobilellm <<'PYEOF'
import datetime, os, subprocess, sys, time
import sentencepiece as spm
model, path, threads, exe = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = open(path, "rb").read()
mb = len(data) / 1e6
sp = spm.SentencePieceProcessor(model_file=model)

def ours(n):
    env = dict(os.environ, OMP_NUM_THREADS=str(n))
    best, out = None, None
    for _ in range(3):
        t = time.perf_counter()
        r = subprocess.run([exe, "tokenizer", "encode", "--tokenizer", model], input=data, capture_output=True, env=env, check=True)
        dt = time.perf_counter() - t
        best = dt if best is None or dt < best else best
        out = r.stdout
    return mb / best, [int(x) for x in out.split()]

def timed(f):
    t = time.perf_counter()
    r = f()
    return mb / (time.perf_counter() - t), r

o1, ids = ours(1)
on, ids_n = ours(threads)
s_whole, want = timed(lambda: sp.EncodeAsIds(data))
lines = data.split(b"\n")
s_lines, _ = timed(lambda: sp.EncodeAsIds(lines))
s_mt, _ = timed(lambda: sp.encode(lines, num_threads=threads))
same = ids == want and ids_n == want
print(f"{mb:.1f} MB, {len(want)} ids: ours {o1:.2f} MB/s (1 thread), {on:.2f} MB/s ({threads} threads); "
      f"sentencepiece {s_whole:.2f} MB/s whole text, {s_lines:.2f} MB/s by lines, {s_mt:.2f} MB/s by lines on {threads} threads; "
      f"ids identical: {same}", file=sys.stderr)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
row = (f"| {datetime.date.today()} | {commit}{'+' if dirty else ''} | {mb:.1f} MB, six corpora | {threads} | "
       f"{o1:.2f} | {on:.2f} | {s_whole:.2f} | {s_lines:.2f} | {s_mt:.2f} | "
       f"**{on / s_mt:.1f}×** | {'yes' if same else '**NO**'} |")
path = "bench/RESULTS.md"
text = open(path).read()
if "## Tokenizer" not in text:
    text = text.rstrip("\n") + "\n\n## Tokenizer\n\n" + (
        "Every row is one run of `bench/tokenizer_bench.sh`: SentencePiece BPE encoding of the same text (the first MB of each\n"
        "of six corpora in ../shared/data) with the Llama-2 model, MB/s of input. Ours is the wall time of `mobilellm tokenizer\n"
        "encode` (model load, I/O and printing included), best of 3; sentencepiece is python3-sentencepiece's C++ encoder\n"
        "(EncodeAsIds on the whole text as one document, EncodeAsIds on its lines as a batch, and encode(lines, num_threads)).\n"
        "The ratio is ours on all threads over sentencepiece by lines on all threads; 'identical' checks our ids against\n"
        "EncodeAsIds(whole text).\n\n"
        "| date | commit | input | threads | ours 1 thread | ours all threads | sp whole text | sp by lines | sp by lines, threads | ratio | identical |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n")
text = text.rstrip("\n") + "\n" + row + "\n"
open(path, "w").write(text)
print(row)
PYEOF
