#include <math.h>

#include "common/arena.h"
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
        for (int c0 = 0; c0 < C; c0 += 256) { /* a piece of the row in fp32, then rounded */
            float y32[256];
            const int len = C - c0 < 256 ? C - c0 : 256;
#pragma omp simd
            for (int c = 0; c < len; c++) y32[c] = xr[c0 + c] * r * w[c0 + c];
            ml_bf16_round_row(yr + c0, y32, (size_t)len);
        }
    }
}

/* dw's partial sums per block of ROWS rows, added in block order afterwards: one pass over x and dy (the column-block
 * pass it replaced read them again, 16 columns at a time), and the same bits for any number of threads. */
enum { ROWS = 64 };
static _Thread_local ml_scratch dw_parts;

void ml_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int N, int C) {
    const int blocks = (N + ROWS - 1) / ROWS;
    float *part = ml_scratch_get(&dw_parts, sizeof(float) * (size_t)blocks * C);
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int b = 0; b < blocks; b++) {
            float *pb = part ? part + (size_t)b * C : NULL;
            if (pb)
                for (int c = 0; c < C; c++) pb[c] = 0.0f;
            for (int n = b * ROWS; n < N && n < (b + 1) * ROWS; n++) {
                const float *xr = x + (int64_t)n * C, *dyr = dy + (int64_t)n * C;
                float *dxr = dx + (int64_t)n * C;
                const float r = rstd[n];
                float dot = 0.0f; /* sum_c dy*w*x */
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < C; c++) dot += dyr[c] * w[c] * xr[c];
                const float k = dot * r * r * r / (float)C;
#pragma omp simd
                for (int c = 0; c < C; c++) dxr[c] += r * w[c] * dyr[c] - k * xr[c];
                if (pb)
#pragma omp simd
                    for (int c = 0; c < C; c++) pb[c] += dyr[c] * xr[c] * r;
            }
        }
        if (part) {
#pragma omp for schedule(static)
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int b = 0; b < blocks; b++) acc += part[(size_t)b * C + c];
                dw[c] += acc;
            }
        } else { /* no memory for the partial sums: the same sums in the same order, column by column */
#pragma omp for schedule(static)
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int b = 0; b < blocks; b++) {
                    float pb = 0.0f;
                    for (int n = b * ROWS; n < N && n < (b + 1) * ROWS; n++)
                        pb += dy[(int64_t)n * C + c] * x[(int64_t)n * C + c] * rstd[n];
                    acc += pb;
                }
                dw[c] += acc;
            }
        }
    }
}
