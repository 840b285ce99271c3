#include "common/prof.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/sysinfo.h"

int ml_prof_on_ = 0;

static double seconds_[ML_PROF_COUNT];
static int64_t calls_[ML_PROF_COUNT];

static const char *const names_[ML_PROF_COUNT] = {
    [ML_PROF_EMBED_FWD] = "embedding.fwd",      [ML_PROF_EMBED_BWD] = "embedding.bwd",
    [ML_PROF_RMSNORM_FWD] = "rmsnorm.fwd",      [ML_PROF_RMSNORM_BWD] = "rmsnorm.bwd",
    [ML_PROF_QKV_FWD] = "matmul.qkv.fwd",       [ML_PROF_QKV_BWD] = "matmul.qkv.bwd",
    [ML_PROF_ROPE_FWD] = "rope.fwd",            [ML_PROF_ROPE_BWD] = "rope.bwd",
    [ML_PROF_QKNORM_FWD] = "qknorm.fwd",        [ML_PROF_QKNORM_BWD] = "qknorm.bwd",
    [ML_PROF_ATTN_FWD] = "attention.fwd",       [ML_PROF_ATTN_BWD] = "attention.bwd",
    [ML_PROF_O_FWD] = "matmul.o.fwd",           [ML_PROF_O_BWD] = "matmul.o.bwd",
    [ML_PROF_RESIDUAL] = "residual.fwd",        [ML_PROF_GATE_UP_FWD] = "matmul.gate_up.fwd",
    [ML_PROF_GATE_UP_BWD] = "matmul.gate_up.bwd", [ML_PROF_SWIGLU_FWD] = "swiglu.fwd",
    [ML_PROF_SWIGLU_BWD] = "swiglu.bwd",        [ML_PROF_DOWN_FWD] = "matmul.down.fwd",
    [ML_PROF_DOWN_BWD] = "matmul.down.bwd",     [ML_PROF_HEAD_FWD] = "matmul.lm_head.fwd",
    [ML_PROF_HEAD_LOSS] = "head.loss",          [ML_PROF_HEAD_BWD] = "matmul.lm_head.bwd",
    [ML_PROF_ZERO_GRAD] = "zero_grad",          [ML_PROF_CLIP] = "clip_grad",
    [ML_PROF_OPTIMIZER] = "optimizer",
};

void ml_prof_enable(int on) { ml_prof_on_ = on ? 1 : 0; }

int ml_prof_enable_from_env(void) {
    const char *e = getenv("ML_PROFILE");
    if (e && *e && strcmp(e, "0")) ml_prof_on_ = 1;
    return ml_prof_on_;
}

void ml_prof_reset(void) {
    memset(seconds_, 0, sizeof seconds_);
    memset(calls_, 0, sizeof calls_);
}

const char *ml_prof_name(ml_prof_id id) { return (int)id >= 0 && id < ML_PROF_COUNT ? names_[id] : NULL; }
double ml_prof_seconds(ml_prof_id id) { return (int)id >= 0 && id < ML_PROF_COUNT ? seconds_[id] : 0.0; }
int64_t ml_prof_calls(ml_prof_id id) { return (int)id >= 0 && id < ML_PROF_COUNT ? calls_[id] : 0; }

double ml_prof_total_seconds(void) {
    double s = 0;
    for (int i = 0; i < ML_PROF_COUNT; i++) s += seconds_[i];
    return s;
}

double ml_prof_start_(void) { return omp_in_parallel() ? 0.0 : ml_now_seconds(); }

void ml_prof_stop_(ml_prof_id id, double t0) {
    if ((int)id < 0 || id >= ML_PROF_COUNT) return;
    seconds_[id] += ml_now_seconds() - t0;
    calls_[id]++;
}

#define APPEND(...)                                                                                                \
    do {                                                                                                           \
        int k_ = snprintf(*len < n ? buf + *len : NULL, *len < n ? n - *len : 0, __VA_ARGS__);                     \
        if (k_ > 0) *len += (size_t)k_;                                                                            \
    } while (0)

void ml_prof_table(char *buf, size_t n, size_t *len, double wall_seconds, int64_t steps) {
    if (steps < 1) steps = 1;
    int order[ML_PROF_COUNT], k = 0;
    for (int i = 0; i < ML_PROF_COUNT; i++)
        if (calls_[i]) order[k++] = i;
    for (int i = 1; i < k; i++) /* insertion sort, longest first */
        for (int j = i; j > 0 && seconds_[order[j]] > seconds_[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    const double per = 1e3 / (double)steps, wall = wall_seconds > 0 ? wall_seconds : 1e-30;
    APPEND("%-20s %10s %7s %8s\n", "kernel", "ms/step", "%step", "calls");
    for (int r = 0; r < k; r++) {
        int i = order[r];
        APPEND("%-20s %10.2f %6.1f%% %8.0f\n", names_[i], seconds_[i] * per, 100.0 * seconds_[i] / wall,
               (double)calls_[i] / (double)steps);
    }
    double other = wall_seconds - ml_prof_total_seconds();
    APPEND("%-20s %10.2f %6.1f%%\n", "other (untimed)", other * per, 100.0 * other / wall);
    APPEND("%-20s %10.2f %6.1f%%\n", "step (wall)", wall_seconds * per, 100.0);
}


void ml_prof_json(char *buf, size_t n, size_t *len, double wall_seconds, int64_t steps) {
    if (steps < 1) steps = 1;
    const double per = 1e3 / (double)steps, wall = wall_seconds > 0 ? wall_seconds : 1e-30;
    APPEND("[");
    for (int i = 0; i < ML_PROF_COUNT; i++)
        APPEND("{\"name\":\"%s\",\"ms_per_step\":%.4f,\"share\":%.5f,\"calls_per_step\":%.2f},", names_[i],
               seconds_[i] * per, seconds_[i] / wall, (double)calls_[i] / (double)steps);
    double other = wall_seconds - ml_prof_total_seconds();
    APPEND("{\"name\":\"other\",\"ms_per_step\":%.4f,\"share\":%.5f,\"calls_per_step\":0}]", other * per,
           other / wall);
}
