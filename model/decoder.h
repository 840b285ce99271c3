/* Incremental (KV-cached) forward pass of every MobileLLM variant, for generation and scoring.
 * Feed tokens in any number of calls: each call runs its tokens through the network in batched
 * chunks of up to max_chunk tokens, at absolute positions continuing from the previous call. Each
 * chunk goes through the same block code as training (model/block.h: the same linear-layer calls,
 * precision and weight transforms, the same attention kernel over the cache), so the logits equal
 * ml_model_forward + ml_model_logits on the whole sequence (tests/test_decode.c).
 * All memory (cache, scratch, RoPE tables) is allocated by ml_decoder_create; nothing per token. */
#ifndef ML_MODEL_DECODER_H
#define ML_MODEL_DECODER_H

#include <stdint.h>

#include "model/kv_cache.h"
#include "model/model.h"

typedef struct {
    ml_model *m;
    ml_kv_cache kv;
    int max_chunk;
    ml_arena arena;
    ml_block_acts acts; /* one chunk's activations (resid_in is the running residual) */
    float *out, *ffn_h, *ln_f, *rstd_f;
    float *logits; /* [V] logits of the last token fed */
    float *rope_cos, *rope_sin;
    float *attn_work;
    int32_t *pos; /* [max_chunk] */
} ml_decoder;

/* max_len: positions the sequence may reach; max_chunk: tokens per batched pass (>= 1). The model's
 * weights must not change while the decoder is in use (transformed copies are refreshed at creation). */
ml_status ml_decoder_create(ml_decoder *d, ml_model *m, int max_len, int max_chunk);
void ml_decoder_free(ml_decoder *d);
/* Start a new sequence (position 0). */
static inline void ml_decoder_reset(ml_decoder *d) { ml_kv_cache_reset(&d->kv); }
/* Tokens consumed so far = the position of the next token. */
static inline int ml_decoder_len(const ml_decoder *d) { return d->kv.len; }
/* Logits [V] after the last token fed. */
static inline const float *ml_decoder_logits(const ml_decoder *d) { return d->logits; }

/* Feed n tokens. If `logits` is not NULL it receives the logits of tokens logits_from..n-1 of this
 * call, [n - logits_from, V]. The last token's logits are always in ml_decoder_logits(d).
 * Fails (nothing consumed) on an id outside the vocabulary or when the sequence would pass max_len. */
ml_status ml_decoder_feed(ml_decoder *d, const int32_t *tokens, int n, int logits_from, float *logits);

/* Move back to position len <= ml_decoder_len(d), forgetting later tokens (for scoring several
 * continuations of one context). Not possible when a sliding-window slot has already dropped keys
 * that positions from len on would see: returns ML_ERR_UNSUPPORTED, nothing changed. */
ml_status ml_decoder_rewind(ml_decoder *d, int len);

#endif
