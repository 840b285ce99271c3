/* Held-out loss: one pass over the first batches of a shard stream, never disturbing training. */
#ifndef ML_EVAL_H
#define ML_EVAL_H

#include "data/batch_reader.h"
#include "train/model.h"

/* Mean cross-entropy over up to max_batches batches read from the start of `reader` (0 = one
 * full pass: every whole batch the data holds, at least one). tokens: tokens scored. The model
 * must be reserved for the reader's B x T. */
ml_status ml_eval_loss(ml_model *m, ml_batch_reader *reader, int B, int T, int max_batches, double *mean_loss,
                       int64_t *tokens);

#endif
