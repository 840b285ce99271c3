/* `mobilellm teacher-logits`: run a teacher over the batches the trainer will read and write its
 * top-K log-probabilities to a logit cache (distill/logit_cache.h), with progress (rate, ETA). */
#ifndef ML_TEACHER_LOGITS_H
#define ML_TEACHER_LOGITS_H

#include <stdint.h>

#include "common/log.h"
#include "common/status.h"

typedef struct {
    const char *teacher;          /* checkpoint or HF directory */
    const char *const *data;      /* shards, in the trainer's order */
    int n_data;
    int B, T, K;
    int64_t batches;              /* 0 = one pass over the data (at least one batch) */
    const char *out;              /* the cache file, written atomically */
    int quiet;                    /* no per-batch progress */
    /* a report per batch (task "teacher-logits", units: batches); the opening and closing lines go to
     * the log sink (common/log.h) */
    ml_progress progress;
} ml_teacher_logits_args;

ml_status ml_teacher_logits(const ml_teacher_logits_args *a);

#endif
