#include <math.h>

#include "common/arena.h"
#include "common/vmath.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

/* One row: its loss, and with grad_scale != 0 the row overwritten by grad_scale * d loss / d logits. */
static float xent_row(float *row, int y, int V, float grad_scale) {
    if (y < 0) {
        if (grad_scale != 0.0f)
            for (int v = 0; v < V; v++) row[v] = 0.0f;
        return 0.0f;
    }
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    const float zy = row[y];
    float sum;
    if (grad_scale != 0.0f) {
        sum = ml_exp_shifted(row, row, mx, V); /* exp computed once, reused for the gradient */
        const float scale = grad_scale / sum;
        for (int v = 0; v < V; v++) row[v] *= scale;
        row[y] -= grad_scale;
    } else {
        sum = ml_exp_shifted(NULL, row, mx, V); /* the logits stay as they are */
    }
    return logf(sum) + mx - zy;
}

void ml_softmax_xent_rows(float *z, float *losses, const int32_t *targets, int n, int V, float grad_scale) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) losses[r] = xent_row(z + (int64_t)r * V, targets[r], V, grad_scale);
}

/* one widened row per thread, kept between calls */
static _Thread_local ml_scratch row_scratch;

void ml_softmax_xent_rows_b16(uint16_t *z, float *losses, const int32_t *targets, int n, int V, float grad_scale) {
#pragma omp parallel
    {
        float *row = ml_scratch_get(&row_scratch, (size_t)V * sizeof(float));
#pragma omp for schedule(static)
        for (int r = 0; r < n; r++) {
            uint16_t *z16 = z + (int64_t)r * V;
            if (!row) { /* no memory for the widened row: a NaN loss (the trainer skips that update), no gradient */
                losses[r] = NAN;
                for (int v = 0; v < V; v++) z16[v] = 0;
                continue;
            }
#pragma omp simd
            for (int v = 0; v < V; v++) row[v] = ml_bf16_value(z16[v]);
            losses[r] = xent_row(row, targets[r], V, grad_scale);
            if (grad_scale != 0.0f) ml_bf16_round_row(z16, row, (size_t)V);
        }
    }
}
