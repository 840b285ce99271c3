#!/usr/bin/env bash
# The library prints nothing: no object of libmobilellm.a may reference stdout, stderr or a function
# that prints to them (printf, puts, perror, ...). Log lines and progress go through common/log.h's
# callbacks. Writing with fprintf/fwrite/fputs is allowed only in the files listed below, which write
# files they opened (or a stream their caller passed). snprintf into buffers is fine everywhere.
source "$(dirname "$0")/common.bash"
LIB="$(dirname "$M")/libmobilellm.a"
[ -f "$LIB" ] || { echo "no $LIB"; exit 1; }
# object file -> why it may write to a FILE*
declare -A WRITERS=(
    [trainer.c.o]="metrics.jsonl" [bench.c.o]="bench results file" [mc_eval.c.o]="per-item results file"
    [passkey.c.o]="pass-key rows file" [sample.c.o]="the caller's text stream" [hf_checkpoint.c.o]="config.json"
    [hf_tokenizer.c.o]="tokenizer files" [npy.c.o]="npy files" [gguf.c.o]="GGUF files"
    [safetensors.c.o]="safetensors files" [shard.c.o]="token shards" [ingest.c.o]="shard manifest"
    [bpe_train.c.o]="tokenizer.json" [merge.c.o]="merged safetensors and recipe files"
    [search.c.o]="the search trial table" [mix.c.o]="mixture.json and filtered shards"
)
PRINTERS='^(printf|vprintf|puts|putchar|perror|psignal|psiginfo|stdout|stderr|_IO_2_1_stdout_|_IO_2_1_stderr_|__printf_chk|__vprintf_chk|warn|warnx|err|errx|error|error_at_line|vwarn|vwarnx)$'
WRITES='^(fprintf|vfprintf|fputs|fputc|putc|fwrite|__fprintf_chk|__vfprintf_chk|fputs_unlocked|fwrite_unlocked|dprintf|vdprintf)$'
nm -A -u "$LIB" >"$W/undef" 2>/dev/null || fail "nm failed on $LIB"
# nm -A: "lib.a:object.o:                 U symbol"
awk '{ split($1, p, ":"); print p[2], $NF }' "$W/undef" >"$W/syms"
[ -s "$W/syms" ] || fail "nm listed no undefined symbols (the check would be vacuous)"
grep -q ' fwrite$' "$W/syms" || fail "the check sees no fwrite anywhere: is nm reading the library?"
while read -r obj sym; do
    if [[ "$sym" =~ $PRINTERS ]]; then fail "$obj references $sym: library code must not print (use ml_log / callbacks)"; fi
    if [[ "$sym" =~ $WRITES ]] && [ -z "${WRITERS[$obj]+x}" ]; then
        fail "$obj references $sym but is not on the writers' allow-list in $0"
    fi
done <"$W/syms"
# and the check itself catches a printf: an object that prints must be flagged
printf '#include <stdio.h>\nvoid ml_noisy(void) { printf("hello %%d\\n", 1); fputs("x", stderr); }\n' >"$W/noisy.c"
if cc -O2 -c "$W/noisy.c" -o "$W/noisy.o" 2>/dev/null; then
    nm -u "$W/noisy.o" | awk '{print $NF}' | grep -Eq "$PRINTERS" || fail "the printer pattern misses printf/stderr"
fi
finish
