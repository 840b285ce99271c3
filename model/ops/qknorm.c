/* Weightless RMS norm per attention head: R1's QK-norm (Llama-4 L2Norm), applied after RoPE. */
#include <math.h>

#include "model/ops/ops.h"

void ml_headnorm_forward(float *x, float *rstd, int N, int heads, int hd, float eps) {
    int64_t rows = (int64_t)N * heads;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * hd;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < hd; i++) ss += v[i] * v[i];
        float s = 1.0f / sqrtf(ss / (float)hd + eps);
        rstd[r] = s;
#pragma omp simd
        for (int i = 0; i < hd; i++) v[i] *= s;
    }
}

void ml_headnorm_backward(float *dy, const float *y, const float *rstd, int N, int heads, int hd) {
    int64_t rows = (int64_t)N * heads;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *d = dy + r * hd;
        const float *yr = y + r * hd;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < hd; i++) dot += d[i] * yr[i];
        float mean = dot / (float)hd, s = rstd[r];
#pragma omp simd
        for (int i = 0; i < hd; i++) d[i] = s * (d[i] - yr[i] * mean);
    }
}
