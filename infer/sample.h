/* Sampling from logits (temperature, top-k, nucleus top-p; greedy at temperature 0) with a seeded
 * common/rng.h generator, so a seed gives the same tokens; the generation loop over an ml_decoder;
 * and a streamer that turns generated ids into text as they come, holding back incomplete UTF-8. */
#ifndef ML_INFER_SAMPLE_H
#define ML_INFER_SAMPLE_H

#include <stdint.h>
#include <stdio.h>

#include "common/rng.h"
#include "data/tokenizer.h"
#include "model/decoder.h"

typedef struct {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    int top_k;         /* keep the k most likely (0: all) */
    float top_p;       /* keep the smallest most-likely set with probability >= top_p (1: all) */
} ml_sampling;

typedef struct {
    ml_sampling o;
    int V;
    ml_rng rng;
    float *prob;     /* [V] */
    int32_t *order;  /* [V] candidate ids, most likely first */
} ml_sampler;

/* Validates the options (temperature >= 0, top_k >= 0, 0 < top_p <= 1) and allocates. */
ml_status ml_sampler_create(ml_sampler *s, int V, const ml_sampling *o, uint64_t seed);
void ml_sampler_free(ml_sampler *s);
/* Next token id from logits [V]. Order as transformers: temperature, then top-k, then top-p. */
int32_t ml_sampler_pick(ml_sampler *s, const float *logits);

/* Called with each generated token (EOS is not passed); return nonzero to stop. */
typedef ml_status (*ml_token_sink)(void *user, int32_t token);

typedef struct {
    int prompt_tokens, new_tokens;
    double prefill_s, decode_s; /* prefill: the prompt pass; decode: every later step incl. sampling */
    int hit_eos, hit_max_len;
} ml_gen_stats;

/* Reset the decoder, prefill prompt[n_prompt] (n_prompt >= 1), then sample up to max_new tokens,
 * stopping at eos (>= 0) or when the decoder is full. The decoder's max_len should be at least
 * n_prompt + max_new. */
ml_status ml_generate(ml_decoder *d, ml_sampler *s, const int32_t *prompt, int n_prompt, int max_new, int32_t eos,
                      ml_token_sink sink, void *user, ml_gen_stats *st);

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence: bytes of a
 * trailing sequence still missing continuation bytes are held back (at most 3). Invalid bytes are
 * not held back. */
size_t ml_utf8_complete_prefix(const char *s, size_t n);

/* Streams generated text: each push decodes the ids generated so far (after the prompt, through
 * the tokenizer, so tokenizers whose pieces depend on their neighbours decode correctly) and writes
 * the new complete UTF-8 text to `out`, flushing it. */
typedef struct {
    const ml_tokenizer *tok;
    FILE *out;
    uint32_t *ids;
    size_t n_ids, cap_ids, n_prompt;
    ml_byte_buf text;
    size_t emitted; /* bytes of text already written (prompt text included) */
} ml_text_stream;

/* cap: the most ids the stream will hold (prompt + generated). */
ml_status ml_text_stream_init(ml_text_stream *ts, const ml_tokenizer *tok, FILE *out, const int32_t *prompt,
                              int n_prompt, size_t cap);
ml_status ml_text_stream_push(ml_text_stream *ts, int32_t id);
/* Write whatever is held back (an incomplete sequence at the very end). */
ml_status ml_text_stream_finish(ml_text_stream *ts);
void ml_text_stream_free(ml_text_stream *ts);

#endif
