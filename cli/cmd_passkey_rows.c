/* `passkey-rows`: synthetic pass-key training rows as JSONL (infer/passkey.h: ml_passkey_write_rows). */
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "common/atomic_file.h"
#include "infer/passkey.h"

int ml_cmd_passkey_rows(int argc, char **argv) {
    const char *filler_path = NULL, *out = NULL, *bytes_s = "300,900";
    int rows = 1000, key_digits = 5;
    int64_t seed = 1;
    ml_opt opts[] = {
        {"filler", ML_OPT_STR, &filler_path,
         "text file the filler spans are taken from (e.g. Wikipedia text); default: the evaluation's built-in filler "
         "(`passkey` without --filler)", 0, 0},
        {"out", ML_OPT_STR, &out, "output JSONL file, one {\"text\": ROW} a line", 1, 0},
        {"rows", ML_OPT_INT, &rows, "number of rows (default 1000)", 0, 0},
        {"bytes", ML_OPT_STR, &bytes_s, "filler bytes per row, MIN,MAX (default 300,900)", 0, 0},
        {"seed", ML_OPT_I64, &seed, "seed for spans, depths and keys (default 1)", 0, 0},
        {"key-digits", ML_OPT_INT, &key_digits, "digits of each pass key, 1 to 9 (default 5)", 0, 0},
    };
    int rc = ml_args_parse("passkey-rows", "[--filler FILE] --out rows.jsonl [--rows N] [--bytes MIN,MAX] [--seed S]",
                           opts, 6, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    long lo, hi;
    char tail;
    if (sscanf(bytes_s, "%ld,%ld%c", &lo, &hi, &tail) != 2 || lo < 1 || hi < lo || hi > 1 << 24) {
        fprintf(stderr, "mobilellm passkey-rows: --bytes: '%s' is not MIN,MAX with 0 < MIN <= MAX\n", bytes_s);
        return 2;
    }
    if (rows < 1) {
        fprintf(stderr, "mobilellm passkey-rows: --rows must be positive\n");
        return 2;
    }
    if (key_digits < 1 || key_digits > 9) {
        fprintf(stderr, "mobilellm passkey-rows: --key-digits %d: expected 1 to 9\n", key_digits);
        return 2;
    }
    char *filler = NULL;
    size_t n = 0;
    if (filler_path && ml_read_file(filler_path, &filler, &n) != ML_OK) return ml_cli_fail("passkey-rows");
    ml_passkey_rows_opts o = {.rows = rows, .min_bytes = (int)lo, .max_bytes = (int)hi, .seed = (uint64_t)seed,
                              .key_digits = key_digits};
    ml_status s = ml_passkey_write_rows(out, filler, n, &o);
    free(filler);
    if (s != ML_OK) return ml_cli_fail("passkey-rows");
    printf("wrote %s: %d pass-key rows\n", out, rows);
    return 0;
}
