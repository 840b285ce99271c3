#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "data/tokenizer_bytes.h"
#include "data/tokenizer_hf.h"
#include "data/tokenizer_spm.h"
#include "data/tokenizer_tiktoken.h"

static ml_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return ML_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return ml_fail(ML_ERR_NOMEM, "buffer of %zu elements is too large", need);
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return ml_fail(ML_ERR_NOMEM, "out of memory growing a buffer to %zu elements", c);
    *p = q;
    *cap = c;
    return ML_OK;
}

ml_status ml_id_buf_reserve(ml_id_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->n) return ml_fail(ML_ERR_NOMEM, "id buffer overflow");
    return grow((void **)&b->ids, &b->cap, b->n + extra, sizeof *b->ids);
}

void ml_id_buf_free(ml_id_buf *b) {
    free(b->ids);
    memset(b, 0, sizeof *b);
}

ml_status ml_byte_buf_reserve(ml_byte_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->n) return ml_fail(ML_ERR_NOMEM, "byte buffer overflow");
    return grow((void **)&b->bytes, &b->cap, b->n + extra, 1);
}

void ml_byte_buf_free(ml_byte_buf *b) {
    free(b->bytes);
    memset(b, 0, sizeof *b);
}

ml_status ml_tokenizer_open(ml_tokenizer **t, const char *spec) {
    *t = NULL;
    if (!strcmp(spec, "bytes")) return ml_tokenizer_bytes_new(t);
    /* A tokenizer file: recognised by its content, not its name. */
    char *data = NULL;
    size_t n = 0;
    ml_status s = ml_read_file(spec, &data, &n);
    if (s != ML_OK) return ml_fail_context(s, "tokenizer");
    if (ml_spm_sniff(data, n)) s = ml_tokenizer_spm_from_memory(t, data, n, spec);
    else if (ml_tiktoken_detect(data, n)) s = ml_tokenizer_tiktoken_new(t, spec, data, n);
    else if (ml_hf_json_detect(data, n)) s = ml_tokenizer_hf_new(t, spec, data, n);
    else
        s = ml_fail(ML_ERR_UNSUPPORTED,
                    "tokenizer %s: not 'bytes' and not a recognised tokenizer file (SentencePiece .model, tiktoken "
                    "ranks, tokenizer.json)",
                    spec);
    free(data);
    return s;
}

void ml_tokenizer_free(ml_tokenizer *t) {
    if (t) t->vt->destroy(t);
}
