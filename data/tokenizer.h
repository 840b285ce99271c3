/* The tokenizer interface: a vtable, so the byte tokenizer (here) and the real ones
 * (SentencePiece here; tiktoken, HF tokenizer.json later) sit behind one type. Open one with
 * ml_tokenizer_open(&t, spec): spec "bytes" is the byte tokenizer; a tokenizer file path selects
 * the tokenizer its content says. Encode and decode take a const tokenizer and may run on
 * several threads at once. */
#ifndef ML_DATA_TOKENIZER_H
#define ML_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_TOK_ADD_BOS 1u /* encode flags */
#define ML_TOK_ADD_EOS 2u
#define ML_TOK_MAX_FINGERPRINT 256

/* Growable output buffers: encode/decode append to them (n grows; cap is managed). */
typedef struct {
    uint32_t *ids;
    size_t n, cap;
} ml_id_buf;

typedef struct {
    char *bytes;
    size_t n, cap;
} ml_byte_buf;

ml_status ml_id_buf_reserve(ml_id_buf *b, size_t extra);
void ml_id_buf_free(ml_id_buf *b);
ml_status ml_byte_buf_reserve(ml_byte_buf *b, size_t extra);
void ml_byte_buf_free(ml_byte_buf *b);

typedef struct ml_tokenizer ml_tokenizer;

typedef struct {
    /* Append the ids of text[0..len) to out, with BOS/EOS per flags (ML_TOK_ADD_*). */
    ml_status (*encode)(const ml_tokenizer *t, ml_id_buf *out, const char *text, size_t len, unsigned flags);
    /* Append the bytes of ids to out; special tokens (BOS/EOS/PAD) give no text. An id that
     * is not in the vocabulary is an ML_ERR_RANGE error naming its position. */
    ml_status (*decode)(const ml_tokenizer *t, ml_byte_buf *out, const uint32_t *ids, size_t n);
    void (*destroy)(ml_tokenizer *t);
} ml_tokenizer_vtable;

struct ml_tokenizer {
    const ml_tokenizer_vtable *vt;
    uint32_t vocab_size;
    int32_t bos, eos, pad; /* -1 where the tokenizer has none */
    /* Identifies the exact vocabulary and rules ("bytes-v1", or a hash of a tokenizer file);
     * shards record it and the loader refuses to mix shards that differ. */
    char fingerprint[ML_TOK_MAX_FINGERPRINT];
    void *impl; /* the implementation's state */
};

/* spec: "bytes" (the byte tokenizer) or a tokenizer file, recognised by its content: a SentencePiece
 * .model (data/tokenizer_spm.h). Anything else fails with ML_ERR_UNSUPPORTED. */
ml_status ml_tokenizer_open(ml_tokenizer **t, const char *spec);
void ml_tokenizer_free(ml_tokenizer *t); /* NULL is fine */

static inline ml_status ml_tokenizer_encode(const ml_tokenizer *t, ml_id_buf *out, const char *text, size_t len,
                                            unsigned flags) {
    return t->vt->encode(t, out, text, len, flags);
}
static inline ml_status ml_tokenizer_decode(const ml_tokenizer *t, ml_byte_buf *out, const uint32_t *ids, size_t n) {
    return t->vt->decode(t, out, ids, n);
}
static inline uint32_t ml_tokenizer_vocab_size(const ml_tokenizer *t) { return t->vocab_size; }
static inline const char *ml_tokenizer_fingerprint(const ml_tokenizer *t) { return t->fingerprint; }
static inline int32_t ml_tokenizer_bos(const ml_tokenizer *t) { return t->bos; }
static inline int32_t ml_tokenizer_eos(const ml_tokenizer *t) { return t->eos; }
static inline int32_t ml_tokenizer_pad(const ml_tokenizer *t) { return t->pad; }

#endif
