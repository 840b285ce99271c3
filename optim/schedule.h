/* Learning-rate schedules: constant, linear, cosine (MobileLLM) and warmup-stable-decay.
 *
 * Steps count from 0; total_steps steps are 0 .. total_steps-1 ("the last step" is total-1).
 * Every kind starts with a linear warmup:
 *     step < warmup:  lr = peak * (step+1) / warmup      (peak/warmup at step 0, peak at warmup-1)
 * After warmup, with floor = min_ratio * peak and the decay progress
 *     p = (step - start) / (total - 1 - start), clamped to [0, 1]   (p = 1 if total-1 <= start)
 *   constant: lr = peak
 *   linear:   lr = peak * (1 - (1 - min_ratio) * p),                      start = warmup
 *   cosine:   lr = peak * (min_ratio + 0.5*(1 - min_ratio)*(1 + cos(pi*p))), start = warmup
 *             (MobileLLM's pretrain_trainer.py, min_ratio 0.1)
 *   wsd:      warmup-stable-decay: warmup, then peak through step start, then the linear shape
 *             above from start to the last step, where start = total - 1 - D with
 *             D = max(1, round(decay_fraction * total)) but never below warmup - 1. So the last D
 *             steps are below peak (the last one at the floor). The decay shape is linear, not 1-sqrt.
 * So linear, cosine and wsd are at peak at `start` and reach the floor exactly at the last step.
 * Steps past the end stay at the floor; negative steps count as step 0. */
#ifndef ML_SCHEDULE_H
#define ML_SCHEDULE_H

#include <stdint.h>

#include "common/status.h"

typedef enum {
    ML_LR_CONSTANT = 0,
    ML_LR_LINEAR,
    ML_LR_COSINE,
    ML_LR_WSD,
} ml_schedule_kind;

typedef struct {
    ml_schedule_kind kind;
    float peak_lr;
    int64_t total_steps;
    int64_t warmup_steps;  /* 0: no warmup */
    float min_ratio;       /* floor as a fraction of peak (default 0.1) */
    float decay_fraction;  /* wsd: fraction of total_steps spent decaying (default 0.2) */
} ml_schedule;

/* Defaults: cosine, min_ratio 0.1, decay_fraction 0.2, no warmup; peak and total as given. */
ml_schedule ml_schedule_defaults(float peak_lr, int64_t total_steps);

/* "constant", "linear", "cosine", "wsd" (exact, lower case); anything else is ML_ERR_ARG naming it. */
ml_status ml_schedule_kind_parse(const char *name, ml_schedule_kind *out);
const char *ml_schedule_kind_name(ml_schedule_kind kind);

/* Check: peak finite and >= 0, total >= 1, 0 <= warmup <= total, 0 <= min_ratio <= 1,
 * 0 < decay_fraction <= 1 for wsd. */
ml_status ml_schedule_check(const ml_schedule *s);

/* The learning rate at `step` (see the definitions above). */
float ml_lr_at(const ml_schedule *s, int64_t step);

#endif
