#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "interop/model_load.h"
#include "formats/npy.h"
#include "model/checkpoint.h"

/* Parse "ID ID ..." into a malloc'd array. */
static int parse_ids(const char *text, int32_t **ids, int *n) {
    int cap = 64, k = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    const char *p = text;
    while (v) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 2147483647L) {
            fprintf(stderr, "mobilellm logits: --tokens: '%.20s' at character %d is not a token id\n", p, (int)(p - text));
            free(v);
            return -1;
        }
        if (k == cap) v = realloc(v, sizeof(int32_t) * (size_t)(cap *= 2));
        if (v) v[k++] = (int32_t)x;
        p = end;
    }
    if (!v || k == 0) {
        fprintf(stderr, "mobilellm logits: --tokens holds no token ids\n");
        free(v);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

int ml_cmd_logits(int argc, char **argv) {
    const char *ckpt = NULL, *tokens = NULL, *out = NULL, *act = NULL;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"tokens", ML_OPT_STR, &tokens, "token ids, space-separated", 1, 0},
        {"out", ML_OPT_STR, &out, "float32 [T, V] NumPy file to write", 1, 0},
        {"act", ML_OPT_STR, &act, "quantized checkpoint: round activations on this grid instead of the stored one "
                                  "(none | q8_0 | int8-token)", 0, 0},
    };
    int rc = ml_args_parse("logits", "--ckpt CKPT --tokens \"ID ID ...\" --out FILE.npy [--act GRID]", opts, 4, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    int32_t *ids;
    int T;
    if (parse_ids(tokens, &ids, &T)) return 2;
    ml_model m;
    if (ml_model_load_any_act(ckpt, &m, act) != ML_OK) {
        free(ids);
        return ml_cli_fail("logits");
    }
    float *logits = NULL;
    ml_batch b = {.tokens = ids, .B = 1, .T = T};
    m.recompute = 1; /* forward only: blocks share one set of buffers */
    ml_status s = ml_model_reserve(&m, 1, T, T);
    if (s == ML_OK) s = ml_model_forward(&m, &b);
    if (s == ML_OK) {
        logits = malloc(sizeof(float) * (size_t)T * m.cfg.vocab_size);
        s = logits ? ml_model_logits(&m, &b, logits) : ml_fail(ML_ERR_NOMEM, "out of memory for logits");
    }
    if (s == ML_OK) {
        int64_t shape[2] = {T, m.cfg.vocab_size};
        s = ml_npy_write_f32(out, logits, 2, shape);
    }
    free(logits);
    free(ids);
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("logits");
}
