/* The offline teacher-logit cache: a teacher's top-K tokens and log-probabilities for every position
 * of the batches the trainer's batch reader (data/batch_reader.h) produces, so a student can be
 * distilled without running the teacher again (`mobilellm teacher-logits`, then
 * `mobilellm distill --cache`). scripts/teacher_logits_hf.py writes the same layout from any Hugging
 * Face model.
 *
 * Layout (HDF5 written through io/h5, readable by h5py after `import hdf5plugin` for the zstd filter):
 *   /ids         int32   [N, B, T, K]  top-K token ids of each position, by descending probability
 *                                      (equal log-probabilities: lower id first)
 *   /logprobs    float16 [N, B, T, K]  their log-probabilities: log_softmax of the raw logits (temperature 1)
 *   /tail        float32 [N, B, T]     the mass outside the top K, 1 - sum_k exp(logprob_k) (computed
 *                                      from the float32 probabilities before rounding to float16)
 *   /cursor      int64   [N, 3]        the batch reader's cursor (epoch, shard, offset) before batch n
 *   /token_hash  uint64  [N]           FNV-1a 64 of batch n's B*T input ids as int32 little-endian
 * N batches in data order; batch n, row b, position t is input token t of row b (it predicts the next
 * token). Chunks are one batch, zstd-compressed (HDF5 filter 32015, level 3) except /cursor and
 * /token_hash.
 * Root attributes:
 *   format "mobilellm-logit-cache", version 1, batch B, seq T, topk K, vocab_size,
 *   data_tokens (the shard list's total tokens), data_shards (how many), tokenizer (fingerprint),
 *   cursor_epoch, cursor_shard, cursor_offset (the first batch's cursor),
 *   teacher (path or model id), teacher_name, teacher_config (its config.json), logit_temperature 1.0
 *
 * A cache batch is found by the reader's cursor (a resumed run restores the cursor, so it lands on the
 * same cache batch: bit-exact), and its token hash must equal the batch's tokens. */
#ifndef ML_LOGIT_CACHE_H
#define ML_LOGIT_CACHE_H

#include <stdint.h>

#include "common/status.h"
#include "data/batch_reader.h"

#define ML_LOGIT_CACHE_FORMAT "mobilellm-logit-cache"
#define ML_LOGIT_CACHE_VERSION 1

typedef struct {
    int B, T, K, vocab_size;
    uint64_t data_tokens;
    int data_shards;
    char tokenizer[256];
    ml_data_cursor start;
    char teacher[1024], teacher_name[128];
    int64_t n_batches; /* reader: batches stored */
} ml_logit_cache_info;

/* One batch of the cache, in buffers owned by the reader (valid until the next read). */
typedef struct ml_logit_batch {
    const int32_t *ids;    /* [B*T*K] */
    const float *logprobs; /* [B*T*K] (float16 in the file) */
    const float *tail;     /* [B*T] */
} ml_logit_batch;

/* FNV-1a 64 of n int32 ids as little-endian bytes. */
uint64_t ml_logit_cache_token_hash(const int32_t *tokens, int64_t n);

/* Top K of one row of logits: ids by descending logit (ties: lower id), log-softmax values, and the
 * probability mass outside them. 1 <= K <= V. */
void ml_topk_logprobs(const float *logits, int V, int K, int32_t *ids, float *logprobs, float *tail);

/* ---- writer: the file appears (atomically) only at a successful close ---- */
typedef struct ml_logit_cache_writer ml_logit_cache_writer;
ml_status ml_logit_cache_create(ml_logit_cache_writer **w, const char *path, const ml_logit_cache_info *info,
                                const char *teacher_config_json);
/* Append one batch: its cursor (before the batch was read), input tokens [B*T], ids/logprobs [B*T*K],
 * tail [B*T]. */
ml_status ml_logit_cache_append(ml_logit_cache_writer *w, const ml_data_cursor *cursor, const int32_t *tokens,
                                const int32_t *ids, const float *logprobs, const float *tail);
ml_status ml_logit_cache_commit(ml_logit_cache_writer *w); /* frees w, also on failure */
void ml_logit_cache_abort(ml_logit_cache_writer *w);       /* NULL-safe */

/* ---- reader ---- */
typedef struct ml_logit_cache ml_logit_cache;
ml_status ml_logit_cache_open(ml_logit_cache **c, const char *path);
void ml_logit_cache_close(ml_logit_cache *c);
const ml_logit_cache_info *ml_logit_cache_get_info(const ml_logit_cache *c);
/* The cache must have been made from this data and batch shape (B, T, shard count, total tokens,
 * tokenizer) for a model of this vocabulary: else a one-line error saying what differs. */
ml_status ml_logit_cache_check_run(const ml_logit_cache *c, const ml_batch_reader *br, int n_shards, int B, int T,
                                   int vocab_size);
/* The batch that starts at `cursor` with these B*T input tokens (checked against its hash); ids are
 * checked to be < vocab_size. Errors when the cursor is not in the cache. */
ml_status ml_logit_cache_fetch(ml_logit_cache *c, const ml_data_cursor *cursor, const int32_t *tokens,
                               ml_logit_batch *out);
/* Batch `index` (no data checks beyond the id range). */
ml_status ml_logit_cache_read(ml_logit_cache *c, int64_t index, ml_logit_batch *out);

#endif
