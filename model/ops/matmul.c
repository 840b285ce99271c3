/* The model's three products of a linear layer, on a GEMM engine (model/ops/gemm.h); weights stay in the HF
 * [out, in] layout. */
#include <stddef.h>

#include "model/ops/gemm.h"
#include "model/ops/ops.h"

void ml_matmul_forward_on(ml_gemm_engine e, float *y, const float *x, const float *w, const uint16_t *w16, int N,
                          int in, int out) {
    ml_gemm_b16(e, 0, 1, N, out, in, x, in, w, in, w16, 0.0f, y, out);
}

void ml_matmul_backward_on(ml_gemm_engine e, float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const uint16_t *w16, int N, int in, int out, int accumulate_dx) {
    if (dx) ml_gemm_b16(e, 0, 0, N, in, out, dy, out, w, in, w16, accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (dw) ml_gemm(e, 1, 0, out, in, N, dy, out, x, in, 1.0f, dw, in);
}

void ml_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out) {
    ml_matmul_forward_on(ML_GEMM_OPENBLAS, y, x, w, NULL, N, in, out);
}

void ml_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                        int out, int accumulate_dx) {
    ml_matmul_backward_on(ML_GEMM_OPENBLAS, dx, dw, dy, x, w, NULL, N, in, out, accumulate_dx);
}

void ml_matmul_forward_bf16(float *y, const float *x, const float *w, int N, int in, int out) {
    ml_matmul_forward_on(ML_GEMM_BF16, y, x, w, NULL, N, in, out);
}

void ml_matmul_backward_bf16(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                             int out, int accumulate_dx) {
    ml_matmul_backward_on(ML_GEMM_BF16, dx, dw, dy, x, w, NULL, N, in, out, accumulate_dx);
}
