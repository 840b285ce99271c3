/* Every fp32 GEMM of the model goes through OpenBLAS, the bf16 ones through gemm_bf16.c; weights stay in the
 * HF [out, in] layout. */
#include <cblas.h>

#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

void ml_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}

void ml_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                        int out, int accumulate_dx) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, w, in,
                    accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
}

/* The same three products with bf16 inputs and fp32 accumulation (model/ops/gemm_bf16.h). */
void ml_matmul_forward_bf16(float *y, const float *x, const float *w, int N, int in, int out) {
    ml_gemm_bf16(0, 1, N, out, in, x, in, w, in, 0.0f, y, out);
}

void ml_matmul_backward_bf16(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                             int out, int accumulate_dx) {
    if (dx) ml_gemm_bf16(0, 0, N, in, out, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (dw) ml_gemm_bf16(1, 0, out, in, N, dy, out, x, in, 1.0f, dw, in);
}
