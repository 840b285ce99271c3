/* mobilellm tokenizer encode|decode|info|train: use a tokenizer directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "common/atomic_file.h"
#include "common/status.h"
#include "data/bpe.h"
#include "data/tokenizer.h"

int ml_tokenizer_train_main(int argc, char **argv); /* cli/cmd_tokenizer_train.c */

static void usage(FILE *f) {
    fprintf(f, "usage: mobilellm tokenizer <encode|decode|info|train> ...\n\n"
               "  tokenizer encode --tokenizer SPEC (--input FILE | --text STR) [--bos] [--eos]   ids on one line\n"
               "  tokenizer decode --tokenizer SPEC (--input FILE | --ids \"1 2 3\")               the bytes\n"
               "  tokenizer info --tokenizer SPEC                                                vocabulary, specials, fingerprint\n"
               "  tokenizer train --vocab N --input FILE... --out tokenizer.json                 byte-level BPE\n"
               "SPEC is 'bytes' or a tokenizer file (tiktoken ranks, tokenizer.json).\n");
}

static ml_status do_encode(const char *spec, const char *input, const char *text, int bos, int eos) {
    ml_tokenizer *t = NULL;
    char *data = NULL;
    size_t n = 0;
    ml_id_buf ids = {0};
    if (!!input == !!text) return ml_fail(ML_ERR_ARG, "give one of --input and --text");
    ml_status s = ml_tokenizer_open(&t, spec);
    if (s == ML_OK && input) s = ml_read_file(input, &data, &n);
    if (s == ML_OK)
        s = ml_tokenizer_encode(t, &ids, input ? data : text, input ? n : strlen(text),
                                (bos ? ML_TOK_ADD_BOS : 0) | (eos ? ML_TOK_ADD_EOS : 0));
    if (s == ML_OK) {
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %u" : "%u", ids.ids[i]);
        printf("\n");
        if (fflush(stdout) != 0) s = ml_fail(ML_ERR_IO, "cannot write to standard output");
    }
    free(data);
    ml_id_buf_free(&ids);
    ml_tokenizer_free(t);
    return s;
}

static ml_status parse_ids(const char *str, ml_id_buf *ids) {
    const char *p = str;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',') p++;
        if (!*p) return ML_OK;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || *p == '-' || v > UINT32_MAX)
            return ml_fail(ML_ERR_ARG, "ids: not a token id at offset %zu", (size_t)(p - str));
        ML_TRY(ml_id_buf_reserve(ids, 1));
        ids->ids[ids->n++] = (uint32_t)v;
        p = end;
    }
}

static ml_status do_decode(const char *spec, const char *input, const char *idstr) {
    ml_tokenizer *t = NULL;
    char *data = NULL;
    size_t n = 0;
    ml_id_buf ids = {0};
    ml_byte_buf out = {0};
    if (!!input == !!idstr) return ml_fail(ML_ERR_ARG, "give one of --input and --ids");
    ml_status s = ml_tokenizer_open(&t, spec);
    if (s == ML_OK && input) s = ml_read_file(input, &data, &n);
    if (s == ML_OK) s = parse_ids(input ? data : idstr, &ids);
    if (s == ML_OK) s = ml_tokenizer_decode(t, &out, ids.ids, ids.n);
    if (s == ML_OK && (fwrite(out.bytes, 1, out.n, stdout) != out.n || fflush(stdout) != 0))
        s = ml_fail(ML_ERR_IO, "cannot write to standard output");
    free(data);
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&out);
    ml_tokenizer_free(t);
    return s;
}

static ml_status do_info(const char *spec) {
    ml_tokenizer *t = NULL;
    ML_TRY(ml_tokenizer_open(&t, spec));
    printf("vocab           %u\n", ml_tokenizer_vocab_size(t));
    printf("bos eos pad     %d %d %d\n", ml_tokenizer_bos(t), ml_tokenizer_eos(t), ml_tokenizer_pad(t));
    printf("fingerprint     %s\n", ml_tokenizer_fingerprint(t));
    const ml_bpe *b = ml_tokenizer_bpe(t);
    if (b) {
        uint32_t specials = 0, first = UINT32_MAX;
        for (uint32_t i = 0; i < ml_bpe_n_ids(b); i++)
            if (ml_bpe_special_name(b, i)) specials++, first = first == UINT32_MAX ? i : first;
        printf("merges          %zu\n", ml_bpe_n_merges(b));
        printf("specials        %u", specials);
        if (specials) printf(" (first %u %s)", first, ml_bpe_special_name(b, first));
        printf("\n");
    }
    ml_tokenizer_free(t);
    return fflush(stdout) == 0 ? ML_OK : ml_fail(ML_ERR_IO, "cannot write to standard output");
}

int ml_cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "train")) return ml_tokenizer_train_main(argc - 1, argv + 1);
    const char *spec = NULL, *input = NULL, *text = NULL, *idstr = NULL;
    int bos = 0, eos = 0;
    ml_opt opts[] = {
        {"tokenizer", ML_OPT_STR, &spec, "'bytes' or a tokenizer file", 1, 0},
        {"input", ML_OPT_STR, &input, "a file (text to encode, or ids to decode)", 0, 0},
        {"text", ML_OPT_STR, &text, "encode: the text", 0, 0},
        {"ids", ML_OPT_STR, &idstr, "decode: the ids, space-separated", 0, 0},
        {"bos", ML_OPT_FLAG, &bos, "encode: prepend BOS", 0, 0},
        {"eos", ML_OPT_FLAG, &eos, "encode: append EOS", 0, 0},
    };
    int n_opts = (int)(sizeof opts / sizeof opts[0]);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "tokenizer %s", verb);
    ml_status s;
    if (!strcmp(verb, "encode") || !strcmp(verb, "decode") || !strcmp(verb, "info")) {
        int r = ml_args_parse(cmd, "mobilellm tokenizer encode|decode|info --tokenizer SPEC ...", opts, n_opts, argc - 1,
                              argv + 1);
        if (r) return r < 0 ? 2 : 0;
    } else {
        fprintf(stderr, "mobilellm tokenizer: unknown verb '%s' (encode, decode, info, train)\n", verb);
        return 2;
    }
    if (!strcmp(verb, "encode")) s = do_encode(spec, input, text, bos, eos);
    else if (!strcmp(verb, "decode")) s = do_decode(spec, input, idstr);
    else s = do_info(spec);
    return s == ML_OK ? 0 : ml_cli_fail(cmd);
}
