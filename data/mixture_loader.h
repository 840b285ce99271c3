/* The mixture-aware data loader: several sources, each drawn per row by its weight.
 *
 * A source is a list of shards (one sequential stream, as in data/batch_reader.h), a weight > 0
 * and a domain label. For every row the loader draws a source from its own seeded RNG
 * (xoshiro256**, a cumulative table of the normalised weights); the row is the next T+1 tokens of
 * that source's stream, which wraps on its own (its own epoch counter) exactly like the batch
 * reader's. With a shuffle buffer of R rows, rows are first drawn into the buffer (R of them), then
 * each output row is a uniformly drawn buffer slot, refilled at once by a freshly drawn row (the
 * classic shuffle buffer). The buffer holds row references (source, stream offset), not tokens.
 *
 * Output per batch: the batch reader's contract (inputs, targets [B*T]; optional doc ids and
 * positions, ml_pos_mode). Document ids are numbered across the sources in order (source i's
 * documents after those of sources 0..i-1), so rows of different sources never share an id.
 *
 * Resume: the whole state (RNG, each source's epoch and offset, the buffer) is a flat int64 array
 * of ml_mixture_state_size() words; ml_mixture_set_state on a loader opened with the same sources,
 * B, T and R continues bit-exactly. The trainer stores it as the checkpoint dataset /state/mixture.
 *
 * Source spec strings: "SHARD[,SHARD...]:WEIGHT[:DOMAIN]". The field after the last ':' is the
 * weight when it parses as a number, else the domain (then the weight precedes it). The domain
 * defaults to the first shard's domain label (or "source<i>" when it has none). */
#ifndef ML_DATA_MIXTURE_LOADER_H
#define ML_DATA_MIXTURE_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "data/batch_reader.h"

#define ML_MIXTURE_MAX_SOURCES 64
#define ML_MIXTURE_MAX_DOMAIN 64

typedef struct {
    char **paths; /* owned (ml_mixture_source_free) */
    int n_paths;
    double weight;                      /* > 0, not normalised */
    char domain[ML_MIXTURE_MAX_DOMAIN]; /* "" = take the shards' label */
} ml_mixture_source;

/* Parse one spec string; one-line errors naming the spec. */
ml_status ml_mixture_parse_source(const char *spec, ml_mixture_source *out);
void ml_mixture_source_free(ml_mixture_source *s);

typedef struct {
    int B, T;
    ml_pos_mode pos_mode;
    int shuffle_rows; /* R: shuffle buffer rows, 0 = off */
    uint64_t seed;
} ml_mixture_opts;

typedef struct ml_mixture ml_mixture;

/* Open the sources: every shard must share one tokenizer fingerprint and vocab (else an error
 * naming both files); each source needs at least T+1 tokens. */
ml_status ml_mixture_open(ml_mixture **m, const ml_mixture_source *src, int n_src, const ml_mixture_opts *o);
/* Same, from spec strings. */
ml_status ml_mixture_open_specs(ml_mixture **m, const char *const *specs, int n_specs, const ml_mixture_opts *o);
void ml_mixture_close(ml_mixture *m);

/* Fill the next batch (buffers as ml_batch_reader_next). A failed batch leaves the state unchanged. */
ml_status ml_mixture_next(ml_mixture *m, int32_t *inputs, int32_t *targets, int32_t *doc_ids, int32_t *positions);

/* Resume state as int64 words. */
/* Draw the next batch's rows (sources, offsets, shuffle buffer, counts) like ml_mixture_next, without
 * reading their tokens: data-parallel ranks skip the other ranks' micro-batches this way, so every rank
 * keeps the same mixture state. */
void ml_mixture_skip(ml_mixture *m);
size_t ml_mixture_state_size(const ml_mixture *m);
void ml_mixture_get_state(const ml_mixture *m, int64_t *words);
/* ML_ERR_RANGE/ML_ERR_FORMAT with the reason when the words do not fit these sources, B, T, R. */
ml_status ml_mixture_set_state(ml_mixture *m, const int64_t *words, size_t n_words);

int ml_mixture_num_sources(const ml_mixture *m);
const char *ml_mixture_domain(const ml_mixture *m, int i);
double ml_mixture_weight(const ml_mixture *m, int i); /* normalised */
uint64_t ml_mixture_epoch(const ml_mixture *m, int i);
/* Rows source i contributed to the last batch, and in total since the loader's state began. */
uint64_t ml_mixture_batch_rows(const ml_mixture *m, int i);
uint64_t ml_mixture_total_rows(const ml_mixture *m, int i);
/* Which source each row of the last batch came from ([B]). */
const int *ml_mixture_row_sources(const ml_mixture *m);
uint32_t ml_mixture_vocab_size(const ml_mixture *m);
const char *ml_mixture_tokenizer(const ml_mixture *m);

#endif
