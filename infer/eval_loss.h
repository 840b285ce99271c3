/* Held-out loss: one pass over the first batches of a shard stream, never disturbing training. */
#ifndef ML_EVAL_H
#define ML_EVAL_H

#include "data/batch_reader.h"
#include "model/model.h"

/* Mean cross-entropy over up to max_batches batches read from the start of `reader` (0 = one
 * full pass: every whole batch the data holds, at least one). tokens: tokens scored. The model
 * must be reserved for the reader's B x T. */
ml_status ml_eval_loss(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, double *mean_loss,
                       int64_t *tokens);

/* The same pass split over `parts` workers (data-parallel ranks): this one scores batches i with
 * i % parts == part and returns the summed loss and token count, which the caller adds over parts
 * (in part order, for a result equal to ml_eval_loss up to the order of that sum). */
ml_status ml_eval_loss_part(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, int part, int parts,
                            double *loss_sum, int64_t *tokens);

#define ML_EVAL_MAX_DOMAINS 64

typedef struct {
    char domain[256]; /* the shards' domain label ("" when unlabelled) */
    int n_shards;
    double loss;      /* mean cross-entropy over its tokens */
    int64_t tokens;
} ml_domain_loss;

/* Mean loss per domain: the shards are grouped by the domain label they carry (in first-seen
 * order) and each group is scored as its own stream, one pass (or max_batches batches) each.
 * The model is reserved here for B x T. *n receives the number of domains. */
ml_status ml_eval_loss_by_domain(ml_model *m, const char *const *paths, int n_paths, int B, int T, int max_batches,
                                 ml_domain_loss *out, int *n);

#endif
