/* mobilellm data info|dump: look inside token shards. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "common/status.h"
#include "data/shard.h"
#include "data/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mobilellm data <info|dump> ...\n\n"
               "  data info SHARD|MANIFEST... [--verify]         tokens, documents, vocab, tokenizer, domain, frames, size\n"
               "  data dump SHARD [--start N] [--count N] [--text] ids (a line per document), or the decoded bytes\n");
}

/* The shard paths: the arguments after the subcommand up to the first --option. */
static int count_positional(int argc, char **argv) {
    int k = 1;
    while (k < argc && strncmp(argv[k], "--", 2) != 0) k++;
    return k - 1;
}

static ml_status info(const char **paths, int n, int verify) {
    ml_shard_reader **r = calloc((size_t)n, sizeof *r);
    if (!r) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = ML_OK;
    /* Open (and check) them all before printing anything; several shards are a data set, so
     * they must agree on the tokenizer. */
    for (int i = 0; i < n && s == ML_OK; i++) {
        s = ml_shard_open(&r[i], paths[i]);
        if (s == ML_OK && verify) s = ml_shard_verify(r[i]);
        if (s == ML_OK && i > 0) s = ml_shard_check_compatible(r[0], r[i]);
    }
    uint64_t tokens = 0, docs = 0, bytes = 0;
    char domains[1024] = ""; /* the distinct domains, in first-seen order */
    size_t dl = 0;
    for (int i = 0; i < n && s == ML_OK; i++) {
        const ml_shard_info *in = ml_shard_get_info(r[i]);
        printf("%sfile            %s\n", i ? "\n" : "", paths[i]);
        printf("format          version %u\n", in->version);
        printf("tokens          %" PRIu64 "\n", in->n_tokens);
        printf("documents       %" PRIu64 "\n", in->n_docs);
        printf("vocab           %u\n", in->vocab_size);
        printf("tokenizer       %s\n", in->tokenizer);
        printf("domain          %s\n", in->domain[0] ? in->domain : "(none)");
        printf("frames          %" PRIu64 " (up to %u tokens each)\n", in->n_frames, in->frame_tokens);
        printf("bytes on disk   %" PRIu64 "\n", in->file_bytes);
        printf("compression     %.2fx (of %u-byte ids)\n",
               in->file_bytes ? (double)in->n_tokens * in->token_bytes / (double)in->file_bytes : 0.0, in->token_bytes);
        if (verify) printf("verified        all frames decode\n");
        tokens += in->n_tokens;
        docs += in->n_docs;
        const char *d = in->domain[0] ? in->domain : "(none)";
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) {
            const char *dk = ml_shard_get_info(r[k])->domain;
            seen = !strcmp(dk[0] ? dk : "(none)", d);
        }
        if (!seen && dl + strlen(d) + 3 < sizeof domains)
            dl += (size_t)snprintf(domains + dl, sizeof domains - dl, "%s%s", dl ? ", " : "", d);
        bytes += in->file_bytes;
    }
    if (s == ML_OK && n > 1)
        printf("\ntotal           %d shards, %" PRIu64 " tokens, %" PRIu64 " documents, %" PRIu64 " bytes\n", n, tokens,
               docs, bytes);
    if (s == ML_OK && n > 1) printf("domains         %s\n", domains);
    for (int i = 0; i < n; i++) ml_shard_close(r[i]);
    free(r);
    return s;
}

static void put_u32_text(FILE *f, uint32_t v, int space) {
    char b[12];
    int k = 11;
    b[k] = 0;
    do {
        b[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (space) fputc(' ', f);
    fputs(b + k, f);
}

static ml_status dump(const char *path, int64_t start, int64_t count, int count_seen, int text) {
    ml_shard_reader *r = NULL;
    ml_tokenizer *tok = NULL;
    uint32_t *ids = NULL;
    ml_byte_buf bytes = {0};
    const size_t chunk = 1u << 16;
    ML_TRY(ml_shard_open(&r, path));
    const ml_shard_info *in = ml_shard_get_info(r);
    ml_status s = ML_OK;
    if (start < 0 || (uint64_t)start > in->n_tokens)
        s = ml_fail(ML_ERR_RANGE, "--start %" PRId64 " is outside %s (%" PRIu64 " tokens)", start, path, in->n_tokens);
    else if (count_seen && count < 0)
        s = ml_fail(ML_ERR_RANGE, "--count must not be negative, got %" PRId64, count);
    if (s == ML_OK && text) {
        s = ml_tokenizer_open(&tok, "bytes");
        if (s == ML_OK && strcmp(in->tokenizer, ml_tokenizer_fingerprint(tok)) != 0)
            s = ml_fail(ML_ERR_UNSUPPORTED, "%s was made with tokenizer '%s'; --text can only decode '%s' yet", path,
                        in->tokenizer, ml_tokenizer_fingerprint(tok));
    }
    if (s == ML_OK && !(ids = malloc(chunk * sizeof *ids))) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    if (s != ML_OK) goto out;

    uint64_t lo = (uint64_t)start, hi = in->n_tokens; /* count is clamped to the shard */
    if (count_seen && (uint64_t)count < hi - lo) hi = lo + (uint64_t)count;
    if (text) {
        for (uint64_t p = lo; p < hi && s == ML_OK; p += chunk) {
            size_t n = hi - p < chunk ? (size_t)(hi - p) : chunk;
            bytes.n = 0;
            s = ml_shard_read_u32(r, ids, p, n);
            if (s == ML_OK) s = ml_tokenizer_decode(tok, &bytes, ids, n);
            if (s == ML_OK) fwrite(bytes.bytes, 1, bytes.n, stdout);
        }
        goto out;
    }
    /* One line per document overlapping [lo, hi); a whole-shard dump also shows empty
     * documents at either end. */
    if (lo == hi && in->n_tokens > 0) goto out;
    uint64_t d = lo == 0 ? 0 : ml_shard_doc_of_token(r, lo);
    for (; d < in->n_docs && s == ML_OK; d++) {
        uint64_t ds = ml_shard_doc_start(r, d), de = ml_shard_doc_end(r, d);
        if (ds > hi) break;
        int show = de > ds ? ds < hi && de > lo
                           : (lo < ds && ds < hi) || (ds == lo && lo == 0) || (ds == hi && hi == in->n_tokens);
        if (!show) continue;
        uint64_t a = ds > lo ? ds : lo, b = de < hi ? de : hi;
        for (uint64_t p = a; p < b && s == ML_OK; p += chunk) {
            size_t n = b - p < chunk ? (size_t)(b - p) : chunk;
            s = ml_shard_read_u32(r, ids, p, n);
            for (size_t i = 0; i < n && s == ML_OK; i++) put_u32_text(stdout, ids[i], p + i > a);
        }
        fputc('\n', stdout);
    }
out:
    if (fflush(stdout) != 0 && s == ML_OK) s = ml_fail(ML_ERR_IO, "cannot write to standard output");
    free(ids);
    ml_byte_buf_free(&bytes);
    ml_tokenizer_free(tok);
    ml_shard_close(r);
    return s;
}

int ml_cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    int np = count_positional(argc - 1, argv + 1);
    char **paths = argv + 2;
    /* The options after the paths, with argv[0] standing for the subcommand. */
    int oargc = argc - 1 - np;
    char **oargv = argv + 1 + np;
    char name[32];
    snprintf(name, sizeof name, "data %s", sub);
    if (!strcmp(sub, "info")) {
        int verify = 0;
        ml_opt opts[] = {{"verify", ML_OPT_FLAG, &verify, "also decode every frame (a full integrity check)", 0, 0}};
        int rc = ml_args_parse(name, "SHARD... [--verify]", opts, 1, oargc, oargv);
        if (rc != 0) return rc > 0 ? 0 : 2;
        if (np < 1) {
            fprintf(stderr, "mobilellm data info: give at least one shard\n");
            return 2;
        }
        ml_str_list l = {(const char **)paths, np, NULL};
        if (ml_expand_data_args(name, &l) != 0) return 1;
        int ret = info(l.items, l.count, verify) == ML_OK ? 0 : ml_cli_fail(name);
        ml_str_list_release(&l);
        return ret;
    }
    if (!strcmp(sub, "dump")) {
        int64_t start = 0, count = 0;
        int text = 0;
        ml_opt opts[] = {
            {"start", ML_OPT_I64, &start, "first token (default 0)", 0, 0},
            {"count", ML_OPT_I64, &count, "number of tokens (default: to the end)", 0, 0},
            {"text", ML_OPT_FLAG, &text, "write the decoded bytes instead of ids", 0, 0},
        };
        int rc = ml_args_parse(name, "SHARD [--start N] [--count N] [--text]", opts, 3, oargc, oargv);
        if (rc != 0) return rc > 0 ? 0 : 2;
        if (np != 1) {
            fprintf(stderr, "mobilellm data dump: give exactly one shard\n");
            return 2;
        }
        return dump(paths[0], start, count, opts[1].seen, text) == ML_OK ? 0 : ml_cli_fail(name);
    }
    fprintf(stderr, "mobilellm data: unknown subcommand '%s' (info or dump)\n", sub);
    return 2;
}
