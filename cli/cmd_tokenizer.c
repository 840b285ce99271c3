/* mobilellm tokenizer encode|decode|info: use a tokenizer directly (text on stdin). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "common/status.h"
#include "data/tokenizer.h"
#include "data/tokenizer_spm.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mobilellm tokenizer <encode|decode|info> --tokenizer PATH|bytes ...\n\n"
               "  tokenizer encode --tokenizer T [--bos] [--eos]  UTF-8 text on stdin -> ids on one line\n"
               "  tokenizer decode --tokenizer T                  ids (whitespace-separated) on stdin -> text\n"
               "  tokenizer info --tokenizer T                    vocabulary size, specials, fingerprint\n");
}

static ml_status read_stdin(char **data, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    if (!b) return ml_fail(ML_ERR_NOMEM, "out of memory reading standard input");
    for (;;) {
        if (len == cap) {
            char *q = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!q) {
                free(b);
                return ml_fail(ML_ERR_NOMEM, "out of memory reading standard input (%zu bytes so far)", len);
            }
            b = q;
            cap *= 2;
        }
        size_t got = fread(b + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(b);
        return ml_fail(ML_ERR_IO, "cannot read standard input: %s", strerror(errno));
    }
    *data = b;
    *n = len;
    return ML_OK;
}

static ml_status finish_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) return ml_fail(ML_ERR_IO, "cannot write to standard output");
    return ML_OK;
}

static ml_status encode(const char *spec, int bos, int eos) {
    ml_tokenizer *t = NULL;
    char *text = NULL;
    size_t n = 0;
    ml_id_buf ids = {0};
    ML_TRY(ml_tokenizer_open(&t, spec));
    ml_status s = read_stdin(&text, &n);
    if (s == ML_OK)
        s = ml_tokenizer_encode(t, &ids, text, n, (bos ? ML_TOK_ADD_BOS : 0) | (eos ? ML_TOK_ADD_EOS : 0));
    if (s == ML_OK) {
        /* All ids through one buffer: large outputs are written quickly. */
        char *line = malloc(ids.n * 11 + 2), *p = line;
        if (!line) s = ml_fail(ML_ERR_NOMEM, "out of memory formatting %zu ids", ids.n);
        for (size_t i = 0; line && i < ids.n; i++) {
            char d[11];
            int k = 0;
            uint32_t v = ids.ids[i];
            do d[k++] = (char)('0' + v % 10); while ((v /= 10) != 0);
            if (i) *p++ = ' ';
            while (k) *p++ = d[--k];
        }
        if (line) {
            *p++ = '\n';
            fwrite(line, 1, (size_t)(p - line), stdout);
            free(line);
            s = finish_stdout();
        }
    }
    free(text);
    ml_id_buf_free(&ids);
    ml_tokenizer_free(t);
    return s;
}

static ml_status decode(const char *spec) {
    ml_tokenizer *t = NULL;
    char *text = NULL;
    size_t n = 0;
    ml_id_buf ids = {0};
    ml_byte_buf out = {0};
    ML_TRY(ml_tokenizer_open(&t, spec));
    ml_status s = read_stdin(&text, &n);
    /* Parse everything before writing anything: a bad id gives no partial output. */
    for (size_t i = 0; s == ML_OK && i < n;) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        if (c < '0' || c > '9') {
            s = ml_fail(ML_ERR_ARG, "standard input byte %zu: expected a token id, got '%c'", i, c >= 32 && c < 127 ? c : '?');
            break;
        }
        uint64_t v = 0;
        size_t start = i;
        while (i < n && text[i] >= '0' && text[i] <= '9') {
            v = v * 10 + (uint64_t)(text[i++] - '0');
            if (v > UINT32_MAX) break;
        }
        if (v > UINT32_MAX) {
            s = ml_fail(ML_ERR_RANGE, "standard input byte %zu: token id is too large", start);
            break;
        }
        if ((s = ml_id_buf_reserve(&ids, 1)) == ML_OK) ids.ids[ids.n++] = (uint32_t)v;
    }
    if (s == ML_OK) s = ml_tokenizer_decode(t, &out, ids.ids, ids.n);
    if (s == ML_OK) {
        fwrite(out.bytes, 1, out.n, stdout);
        s = finish_stdout();
    }
    free(text);
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&out);
    ml_tokenizer_free(t);
    return s;
}

static void print_special(const char *name, const ml_tokenizer *t, int32_t id) {
    if (id < 0) {
        printf("%-16s (none)\n", name);
        return;
    }
    size_t len = 0;
    const char *p = ml_tokenizer_spm_piece(t, (uint32_t)id, &len);
    if (p) printf("%-16s %d %.*s\n", name, id, (int)len, p);
    else printf("%-16s %d\n", name, id);
}

static ml_status info(const char *spec) {
    ml_tokenizer *t = NULL;
    ML_TRY(ml_tokenizer_open(&t, spec));
    ml_spm_info si;
    int spm = ml_tokenizer_spm_info(t, &si) == ML_OK;
    printf("tokenizer        %s\n", spec);
    printf("type             %s\n", spm ? "SentencePiece BPE" : !strcmp(spec, "bytes") ? "bytes" : "other");
    printf("vocab            %u\n", ml_tokenizer_vocab_size(t));
    print_special("bos", t, ml_tokenizer_bos(t));
    print_special("eos", t, ml_tokenizer_eos(t));
    print_special("pad", t, ml_tokenizer_pad(t));
    if (spm) {
        print_special("unk", t, si.unk);
        printf("pieces           %u normal, %u byte, %u control, %u unknown\n", si.n_normal, si.n_byte, si.n_control,
               si.n_unknown);
        printf("byte fallback    %s\n", si.byte_fallback ? "yes" : "no");
        printf("normalizer       %s (add_dummy_prefix %s, escape_whitespaces %s)\n", si.normalizer,
               si.add_dummy_prefix ? "yes" : "no", si.escape_whitespaces ? "yes" : "no");
        printf("parallel encode  %s\n", si.word_parallel ? "by words and lines" : si.line_parallel ? "by lines" : "no");
    }
    printf("fingerprint      %s\n", ml_tokenizer_fingerprint(t));
    ml_tokenizer_free(t);
    return finish_stdout();
}

int ml_tokenizer_train_main(int argc, char **argv); /* cli/cmd_tokenizer_train.c */

int ml_cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) return ml_tokenizer_train_main(argc - 1, argv + 1);
    char name[32];
    snprintf(name, sizeof name, "tokenizer %s", sub);
    const char *spec = NULL;
    int bos = 0, eos = 0;
    ml_opt opts[] = {
        {"tokenizer", ML_OPT_STR, &spec, "'bytes' or a tokenizer file (SentencePiece .model, tiktoken, tokenizer.json)", 1, 0},
        {"bos", ML_OPT_FLAG, &bos, "encode: begin with BOS", 0, 0},
        {"eos", ML_OPT_FLAG, &eos, "encode: end with EOS", 0, 0},
    };
    int is_encode = !strcmp(sub, "encode");
    if (!is_encode && strcmp(sub, "decode") && strcmp(sub, "info")) {
        fprintf(stderr, "mobilellm tokenizer: unknown subcommand '%s' (encode, decode, info or train)\n", sub);
        return 2;
    }
    int rc = ml_args_parse(name, is_encode ? "--tokenizer T [--bos] [--eos] < text" : "--tokenizer T", opts,
                           is_encode ? 3 : 1, argc - 1, argv + 1);
    if (rc != 0) return rc > 0 ? 0 : 2;
    ml_status s = is_encode ? encode(spec, bos, eos) : !strcmp(sub, "decode") ? decode(spec) : info(spec);
    return s == ML_OK ? 0 : ml_cli_fail(name);
}
