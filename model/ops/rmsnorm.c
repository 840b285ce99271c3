#include <math.h>

#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

/* 1 / sqrt(mean(x^2) + eps) of one row */
static inline float row_rstd(const float *xr, int C, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
    return 1.0f / sqrtf(ss / (float)C + eps);
}

void ml_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C;
        float *yr = y + (int64_t)n * C;
        const float r = rstd[n] = row_rstd(xr, C, eps);
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] = xr[c] * r * w[c];
    }
}

void ml_rmsnorm_forward_b16(uint16_t *y, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (int64_t)n * C;
        uint16_t *yr = y + (int64_t)n * C;
        const float r = rstd[n] = row_rstd(xr, C, eps);
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] = ml_bf16_bits(xr[c] * r * w[c]);
    }
}

void ml_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int N, int C) {
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (int64_t)n * C, *dyr = dy + (int64_t)n * C;
            float *dxr = dx + (int64_t)n * C;
            float r = rstd[n];
            float dot = 0.0f; /* sum_c dy*w*x */
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++) dot += dyr[c] * w[c] * xr[c];
            float k = dot * r * r * r / (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++) dxr[c] += r * w[c] * dyr[c] - k * xr[c];
        }
        /* dw by column blocks: fixed summation order, no races */
        const int block = 16;
        int nblocks = (C + block - 1) / block;
#pragma omp for schedule(static)
        for (int cb = 0; cb < nblocks; cb++) {
            int c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
            float acc[16] = {0};
            for (int n = 0; n < N; n++) {
                const float *xr = x + (int64_t)n * C, *dyr = dy + (int64_t)n * C;
                float r = rstd[n];
                for (int c = c0; c < c1; c++) acc[c - c0] += dyr[c] * xr[c] * r;
            }
            for (int c = c0; c < c1; c++) dw[c] += acc[c - c0];
        }
    }
}
