/* The deterministic sequential batch reader for training.
 *
 * The shards, in the order given, form one token stream. Each batch has B rows; a row takes
 * T+1 consecutive tokens [cursor, cursor+T+1) of the stream and the cursor advances by T+1, so
 * a stream of exactly B*(T+1) tokens is one full batch. When fewer than T+1 tokens remain, the
 * cursor wraps to the start of the stream and the epoch counter increases (the wrap is done as
 * soon as the cursor reaches that point, so a saved cursor always names a row start). Rows never
 * wrap inside themselves; a row may span shards (a shard end is a document boundary).
 *
 * Outputs per batch (caller-owned, B*T each): inputs = row[0..T), targets = row[1..T], and
 * optionally the document id of each input token (global: documents are numbered across the
 * shards in order) and positions (0..T-1 per row, or restarting at 0 at each document start
 * within the row). Nothing is allocated per batch. */
#ifndef ML_DATA_BATCH_READER_H
#define ML_DATA_BATCH_READER_H

#include <stdint.h>

#include "common/status.h"

/* Where the next row starts. Save it in a checkpoint; set it back for a bit-exact resume. */
typedef struct {
    uint64_t epoch;  /* completed passes over the stream */
    uint64_t shard;  /* index into the shard list */
    uint64_t offset; /* token offset inside that shard */
} ml_data_cursor;

typedef enum {
    ML_POS_ROW = 0, /* 0..T-1 in every row */
    ML_POS_DOC = 1, /* restart at 0 at each document start within a row */
} ml_pos_mode;

typedef struct {
    int B, T;
    ml_pos_mode pos_mode;
} ml_batch_opts;

typedef struct ml_batch_reader ml_batch_reader;

/* Open the shards (all must share tokenizer fingerprint and vocab: else an error naming both
 * files). Fails with the numbers when the stream holds fewer than B*(T+1) tokens. */
ml_status ml_batch_reader_open(ml_batch_reader **br, const char *const *paths, int n_paths, const ml_batch_opts *opts);
void ml_batch_reader_close(ml_batch_reader *br);

/* Fill the next batch. inputs, targets: [B*T]; doc_ids, positions: [B*T] or NULL. */
ml_status ml_batch_reader_next(ml_batch_reader *br, int32_t *inputs, int32_t *targets, int32_t *doc_ids,
                               int32_t *positions);

ml_data_cursor ml_batch_reader_get_cursor(const ml_batch_reader *br);
/* Move the cursor past n batches without reading them, exactly as n calls of ml_batch_reader_next
 * would (data-parallel ranks skip the other ranks' micro-batches). */
void ml_batch_reader_skip(ml_batch_reader *br, int64_t n);
/* Restore a cursor from ml_batch_reader_get_cursor (same shards, B and T). A cursor outside
 * the data or not leaving room for a row is an ML_ERR_RANGE error. */
ml_status ml_batch_reader_set_cursor(ml_batch_reader *br, const ml_data_cursor *c);

uint64_t ml_batch_reader_total_tokens(const ml_batch_reader *br);
uint64_t ml_batch_reader_total_docs(const ml_batch_reader *br);
uint32_t ml_batch_reader_vocab_size(const ml_batch_reader *br);
const char *ml_batch_reader_tokenizer(const ml_batch_reader *br);

#endif
