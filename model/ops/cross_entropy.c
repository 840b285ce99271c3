#include <math.h>

#include "common/vmath.h"
#include "model/ops/ops.h"

void ml_softmax_xent_rows(float *z, float *losses, const int32_t *targets, int n, int V, float grad_scale) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *row = z + (int64_t)r * V;
        int y = targets[r];
        if (y < 0) {
            losses[r] = 0.0f;
            if (grad_scale != 0.0f)
                for (int v = 0; v < V; v++) row[v] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        float zy = row[y];
        float sum = 0.0f;
        if (grad_scale != 0.0f) {
            /* exp computed once, reused for the gradient */
            sum = ml_exp_shifted(row, row, mx, V);
            float scale = grad_scale / sum;
            for (int v = 0; v < V; v++) row[v] *= scale;
            row[y] -= grad_scale;
        } else {
            sum = ml_exp_shifted(NULL, row, mx, V); /* the logits stay as they are */
        }
        losses[r] = logf(sum) + mx - zy;
    }
}
