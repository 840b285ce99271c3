/* Learning-rate schedules (definitions in schedule.h). Computed in double, returned as float. */
#include "optim/schedule.h"

#include <math.h>
#include <string.h>

ml_schedule ml_schedule_defaults(float peak_lr, int64_t total_steps) {
    ml_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = ML_LR_COSINE;
    s.peak_lr = peak_lr;
    s.total_steps = total_steps;
    s.warmup_steps = 0;
    s.min_ratio = 0.1f;
    s.decay_fraction = 0.2f;
    return s;
}

static const char *const kind_names[] = {"constant", "linear", "cosine", "wsd"};

ml_status ml_schedule_kind_parse(const char *name, ml_schedule_kind *out) {
    for (int k = 0; name && k < (int)(sizeof kind_names / sizeof kind_names[0]); k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (ml_schedule_kind)k;
            return ML_OK;
        }
    }
    return ml_fail(ML_ERR_ARG, "unknown learning-rate schedule '%s' (expected constant, linear, cosine or wsd)",
                   name ? name : "(null)");
}

const char *ml_schedule_kind_name(ml_schedule_kind kind) {
    if ((int)kind >= 0 && (int)kind < (int)(sizeof kind_names / sizeof kind_names[0])) return kind_names[kind];
    return "unknown";
}

ml_status ml_schedule_check(const ml_schedule *s) {
    if (!s) return ml_fail(ML_ERR_ARG, "schedule is NULL");
    if ((int)s->kind < 0 || (int)s->kind > ML_LR_WSD)
        return ml_fail(ML_ERR_ARG, "schedule kind %d is not constant, linear, cosine or wsd", (int)s->kind);
    if (!(s->peak_lr >= 0 && isfinite(s->peak_lr)))
        return ml_fail(ML_ERR_ARG, "peak learning rate %g must be finite and >= 0", (double)s->peak_lr);
    if (s->total_steps < 1)
        return ml_fail(ML_ERR_ARG, "total steps %lld must be at least 1", (long long)s->total_steps);
    if (s->warmup_steps < 0 || s->warmup_steps > s->total_steps)
        return ml_fail(ML_ERR_ARG, "warmup steps %lld must be in [0, total steps %lld]", (long long)s->warmup_steps,
                       (long long)s->total_steps);
    if (!(s->min_ratio >= 0 && s->min_ratio <= 1))
        return ml_fail(ML_ERR_ARG, "lr min_ratio %g must be in [0, 1]", (double)s->min_ratio);
    if (s->kind == ML_LR_WSD && !(s->decay_fraction > 0 && s->decay_fraction <= 1))
        return ml_fail(ML_ERR_ARG, "wsd decay_fraction %g must be in (0, 1]", (double)s->decay_fraction);
    return ML_OK;
}

/* Progress of the decay that starts (at peak) at step `start` and ends (at the floor) at the last step. */
static double decay_progress(int64_t step, int64_t start, int64_t total) {
    int64_t span = total - 1 - start;
    if (span <= 0) return step >= start ? 1.0 : 0.0;
    double p = (double)(step - start) / (double)span;
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

float ml_lr_at(const ml_schedule *s, int64_t step) {
    const double peak = s->peak_lr, r = s->min_ratio;
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return (float)(peak * ((double)(step + 1) / (double)s->warmup_steps));
    switch (s->kind) {
    case ML_LR_CONSTANT: return (float)peak;
    case ML_LR_LINEAR: {
        double p = decay_progress(step, s->warmup_steps, s->total_steps);
        return (float)(peak * (1.0 - (1.0 - r) * p));
    }
    case ML_LR_COSINE: {
        double p = decay_progress(step, s->warmup_steps, s->total_steps);
        return (float)(peak * (r + 0.5 * (1.0 - r) * (1.0 + cos(M_PI * p))));
    }
    case ML_LR_WSD: {
        int64_t decay_steps = (int64_t)llround((double)s->decay_fraction * (double)s->total_steps);
        if (decay_steps < 1) decay_steps = 1;
        int64_t start = s->total_steps - 1 - decay_steps;
        if (start < s->warmup_steps - 1) start = s->warmup_steps - 1;
        if (step <= start) return (float)peak;
        double p = decay_progress(step, start, s->total_steps);
        return (float)(peak * (1.0 - (1.0 - r) * p));
    }
    }
    return (float)peak;
}
