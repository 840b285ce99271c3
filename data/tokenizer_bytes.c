#include "data/tokenizer_bytes.h"

#include <stdio.h>
#include <stdlib.h>

static ml_status bytes_encode(const ml_tokenizer *t, ml_id_buf *out, const char *text, size_t len, unsigned flags) {
    (void)t;
    size_t extra = len + ((flags & ML_TOK_ADD_BOS) != 0) + ((flags & ML_TOK_ADD_EOS) != 0);
    ML_TRY(ml_id_buf_reserve(out, extra));
    uint32_t *p = out->ids + out->n;
    const unsigned char *s = (const unsigned char *)text;
    if (flags & ML_TOK_ADD_BOS) *p++ = ML_BYTES_BOS;
    for (size_t i = 0; i < len; i++) *p++ = s[i];
    if (flags & ML_TOK_ADD_EOS) *p++ = ML_BYTES_EOS;
    out->n += extra;
    return ML_OK;
}

static ml_status bytes_decode(const ml_tokenizer *t, ml_byte_buf *out, const uint32_t *ids, size_t n) {
    (void)t;
    ML_TRY(ml_byte_buf_reserve(out, n));
    size_t m = out->n;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 256) out->bytes[m++] = (char)ids[i];
        else if (ids[i] >= ML_BYTES_VOCAB)
            return ml_fail(ML_ERR_RANGE, "token id %u at position %zu is not a byte-tokenizer id (vocab %d)", ids[i], i,
                           ML_BYTES_VOCAB);
        /* BOS/EOS/PAD: no text */
    }
    out->n = m;
    return ML_OK;
}

static void bytes_destroy(ml_tokenizer *t) { free(t); }

static const ml_tokenizer_vtable bytes_vt = {bytes_encode, bytes_decode, bytes_destroy};

ml_status ml_tokenizer_bytes_new(ml_tokenizer **out) {
    ml_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ml_fail(ML_ERR_NOMEM, "out of memory creating the byte tokenizer");
    t->vt = &bytes_vt;
    t->vocab_size = ML_BYTES_VOCAB;
    t->bos = ML_BYTES_BOS;
    t->eos = ML_BYTES_EOS;
    t->pad = ML_BYTES_PAD;
    snprintf(t->fingerprint, sizeof t->fingerprint, "%s", ML_BYTES_FINGERPRINT);
    *out = t;
    return ML_OK;
}
