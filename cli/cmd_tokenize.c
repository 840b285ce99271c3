/* mobilellm tokenize: text / JSONL files -> token shard(s) (the work is in data/ingest.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "common/status.h"
#include "data/ingest.h"
#include "data/tokenizer.h"
#include "common/signals.h"

int ml_cmd_tokenize(int argc, char **argv) {
    const char *tokenizer = NULL, *out = NULL, *split = "file", *domain = NULL, *val_out = NULL, *field = NULL;
    ml_str_list inputs = {0};
    int bos = 0, eos = 0, skip_bad = 0, threads = 0, frame_tokens = 0;
    int64_t shard_tokens = 0;
    float val_fraction = 0, shard_mb = 0;
    ml_opt opts[] = {
        {"tokenizer", ML_OPT_STR, &tokenizer, "tokenizer: 'bytes' or a tokenizer file (SentencePiece .model, ...)", 1, 0},
        {"input", ML_OPT_STR_LIST, &inputs, "text/JSONL files or directories (walked recursively, sorted)", 1, 0},
        {"out", ML_OPT_STR, &out, "output token shard (a prefix with --shard-tokens/--shard-mb)", 1, 0},
        {"doc-split", ML_OPT_STR, &split, "documents of text files: file (default) | blank-lines | lines", 0, 0},
        {"jsonl-field", ML_OPT_STR, &field, "*.jsonl files: one JSON object a line, this string field a document", 0, 0},
        {"skip-bad-lines", ML_OPT_FLAG, &skip_bad, "skip (and count) JSONL lines without the field instead of failing", 0, 0},
        {"domain", ML_OPT_STR, &domain, "domain label recorded in the shard(s)", 0, 0},
        {"bos", ML_OPT_FLAG, &bos, "begin each document with BOS", 0, 0},
        {"eos", ML_OPT_FLAG, &eos, "end each document with EOS", 0, 0},
        {"val-fraction", ML_OPT_FLOAT, &val_fraction, "hold out every round(1/F)-th document (0 < F <= 0.5)", 0, 0},
        {"val-out", ML_OPT_STR, &val_out, "shard (or prefix) for the held-out documents", 0, 0},
        {"shard-tokens", ML_OPT_I64, &shard_tokens, "roll over to OUT-NNNNN.shard at a document boundary past N tokens; writes OUT.manifest.json", 0, 0},
        {"shard-mb", ML_OPT_FLOAT, &shard_mb, "the same in MB of 4-byte ids (N = M*1e6/4)", 0, 0},
        {"threads", ML_OPT_INT, &threads, "encoding threads (default: OMP_NUM_THREADS / all cores)", 0, 0},
        {"frame-tokens", ML_OPT_INT, &frame_tokens, "tokens per zstd frame (default 1Mi; for tests)", 0, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]);
    int rc = ml_args_parse("tokenize", "--tokenizer bytes --input FILE|DIR... --out SHARD [options]", opts, n, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;

    ml_ingest_opts o = {.inputs = inputs.items, .n_inputs = inputs.count, .out = out, .val_out = val_out,
                        .val_fraction = val_fraction, .domain = domain, .jsonl_field = field,
                        .skip_bad_lines = skip_bad, .flags = (bos ? ML_TOK_ADD_BOS : 0) | (eos ? ML_TOK_ADD_EOS : 0),
                        .progress = 1, .on_progress = {ml_cli_progress_tty, NULL}};
    ml_status s = ML_OK;
    if (!strcmp(split, "file")) o.split = ML_SPLIT_FILE;
    else if (!strcmp(split, "blank-lines")) o.split = ML_SPLIT_BLANK_LINES;
    else if (!strcmp(split, "lines")) o.split = ML_SPLIT_LINES;
    else s = ml_fail(ML_ERR_ARG, "--doc-split must be file, blank-lines or lines, got '%s'", split);
    int val_seen = ml_args_seen(opts, n, "val-fraction");
    if (s == ML_OK && (val_seen || val_out) && (!val_seen || !val_out))
        s = ml_fail(ML_ERR_ARG, "--val-fraction and --val-out go together");
    int st_seen = ml_args_seen(opts, n, "shard-tokens"), mb_seen = ml_args_seen(opts, n, "shard-mb");
    if (s == ML_OK && st_seen && mb_seen) s = ml_fail(ML_ERR_ARG, "give --shard-tokens or --shard-mb, not both");
    if (s == ML_OK && st_seen && shard_tokens < 1) s = ml_fail(ML_ERR_ARG, "--shard-tokens must be >= 1, got %" PRId64, shard_tokens);
    if (s == ML_OK && mb_seen && !(shard_mb > 0 && shard_mb < 1e9f))
        s = ml_fail(ML_ERR_ARG, "--shard-mb must be > 0, got %g", (double)shard_mb);
    if (s == ML_OK && skip_bad && !field) s = ml_fail(ML_ERR_ARG, "--skip-bad-lines needs --jsonl-field");
    if (s == ML_OK && threads < 0) s = ml_fail(ML_ERR_ARG, "--threads must be >= 0, got %d", threads);
    if (s == ML_OK && frame_tokens < 0) s = ml_fail(ML_ERR_ARG, "--frame-tokens must be >= 0, got %d", frame_tokens);
    o.shard_tokens = st_seen ? (uint64_t)shard_tokens : mb_seen ? (uint64_t)((double)shard_mb * 1e6 / 4) : 0;
    if (o.shard_tokens == 0 && mb_seen) o.shard_tokens = 1;
    o.threads = threads;
    o.frame_tokens = (uint32_t)frame_tokens;

    ml_tokenizer *tok = NULL;
    ml_ingest_result r;
    if (s == ML_OK) s = ml_tokenizer_open(&tok, tokenizer);
    o.tok = tok;
    ml_signals_set_graceful(1); /* stops between files, writing nothing */
    if (s == ML_OK) s = ml_ingest(&o, &r);
    ml_tokenizer_free(tok);
    if (s != ML_OK) return ml_cli_fail("tokenize");

    char mf[4096];
    const char *what = out;
    if (o.shard_tokens) {
        ml_manifest_path(mf, sizeof mf, out);
        what = mf;
    }
    printf("wrote %s: %" PRIu64 " documents, %" PRIu64 " tokens", what, r.docs, r.tokens);
    if (o.shard_tokens) printf(" in %zu shards", r.shards);
    printf(" (%zu files read, %" PRIu64 " binary files skipped", r.files, r.binary_skipped);
    if (field) printf(", %" PRIu64 " bad lines skipped", r.bad_lines);
    printf(")\n");
    if (r.every) {
        if (o.shard_tokens) ml_manifest_path(mf, sizeof mf, val_out);
        printf("wrote %s: %" PRIu64 " documents, %" PRIu64 " tokens", o.shard_tokens ? mf : val_out, r.val_docs,
               r.val_tokens);
        if (o.shard_tokens) printf(" in %zu shards", r.val_shards);
        printf(" (every %d-th document)\n", r.every);
    }
    return 0;
}
