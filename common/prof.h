/* Per-kernel wall-clock profile: named accumulating timers around the kernel call sites of the
 * model (model/model.c) and the trainer's step (zeroing, clipping, the optimizer).
 *
 * Off by default. When off, a timed region costs one predictable branch on a global flag (no
 * clock read). When on (ml_prof_enable(1), `bench --profile`, or ML_PROFILE=1 in the environment
 * for `train`), each region adds CLOCK_MONOTONIC time to its timer. Regions wrap whole kernels, which
 * parallelise internally, so they are entered by one thread; a region entered inside an OpenMP
 * parallel region is not counted (its timer would race). Timers are process-global.
 *
 *     ML_PROFILE(ML_PROF_ATTN_FWD) { ml_attention_forward(...); }
 */
#ifndef ML_PROF_H
#define ML_PROF_H

#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

typedef enum {
    ML_PROF_EMBED_FWD = 0, /* token embedding gather */
    ML_PROF_EMBED_BWD,     /* scatter-add into the embedding gradient */
    ML_PROF_RMSNORM_FWD,   /* every RMSNorm (blocks and final) */
    ML_PROF_RMSNORM_BWD,
    ML_PROF_QKV_FWD,       /* q, k, v projections */
    ML_PROF_QKV_BWD,
    ML_PROF_ROPE_FWD,
    ML_PROF_ROPE_BWD,
    ML_PROF_QKNORM_FWD,    /* R1's weightless QK-norm */
    ML_PROF_QKNORM_BWD,
    ML_PROF_ATTN_FWD,      /* scores, softmax, weighted sum */
    ML_PROF_ATTN_BWD,
    ML_PROF_O_FWD,         /* o_proj */
    ML_PROF_O_BWD,
    ML_PROF_RESIDUAL,      /* residual additions (forward) */
    ML_PROF_GATE_UP_FWD,   /* gate_proj and up_proj */
    ML_PROF_GATE_UP_BWD,
    ML_PROF_SWIGLU_FWD,
    ML_PROF_SWIGLU_BWD,    /* the recomputed forward and the backward */
    ML_PROF_DOWN_FWD,      /* down_proj */
    ML_PROF_DOWN_BWD,
    ML_PROF_HEAD_FWD,      /* LM-head logits matmul (per chunk) */
    ML_PROF_HEAD_LOSS,     /* softmax cross-entropy (or a distillation loss) over the logits */
    ML_PROF_HEAD_BWD,      /* LM-head matmul backward */
    ML_PROF_ZERO_GRAD,
    ML_PROF_CLIP,          /* gradient norm and clipping */
    ML_PROF_OPTIMIZER,     /* AdamW / SGD update */
    ML_PROF_COUNT
} ml_prof_id;

extern int ml_prof_on_;

/* Turn timing on or off (does not clear the timers). */
void ml_prof_enable(int on);
static inline int ml_prof_enabled(void) { return ml_prof_on_; }
/* Turn timing on when the environment variable ML_PROFILE is set to something other than "" or "0";
 * returns whether it is on. */
int ml_prof_enable_from_env(void);
/* Zero every timer and call count. */
void ml_prof_reset(void);

/* Name of a timer: "attention.fwd", "matmul.qkv.bwd", ...; NULL outside [0, ML_PROF_COUNT). */
const char *ml_prof_name(ml_prof_id id);
/* Seconds accumulated and regions counted since the last reset. */
double ml_prof_seconds(ml_prof_id id);
int64_t ml_prof_calls(ml_prof_id id);
/* Sum of all timers, seconds. */
double ml_prof_total_seconds(void);

double ml_prof_start_(void);
void ml_prof_stop_(ml_prof_id id, double t0);

/* Time the statement or block that follows. No break/return out of it (the timer would not stop). */
#define ML_PROFILE(id)                                                                                             \
    for (double ml_prof_t0_ = ml_prof_on_ ? ml_prof_start_() : 0.0, ml_prof_once_ = 1; ml_prof_once_;             \
         ml_prof_once_ = 0, ml_prof_t0_ > 0.0 ? ml_prof_stop_((id), ml_prof_t0_) : (void)0)

/* Append the table as text lines (each ending in a newline) to buf at *len (snprintf semantics): each
 * timer in ms per step and % of the step's wall time, sorted by time, then "other (untimed)" = wall -
 * sum. wall_seconds and steps describe the profiled period. */
void ml_prof_table(char *buf, size_t n, size_t *len, double wall_seconds, int64_t steps);
/* Append the profile as a JSON array of {"name","ms_per_step","share","calls_per_step"} (every timer, in
 * table order, then {"name":"other",...}) to buf at *len (snprintf semantics; *len may exceed n). */
void ml_prof_json(char *buf, size_t n, size_t *len, double wall_seconds, int64_t steps);

#endif
