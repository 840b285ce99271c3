/* The model's three products of a linear layer, on a GEMM engine (model/ops/gemm.h); weights stay in the HF
 * [out, in] layout. */
#include <stddef.h>

#include "common/arena.h"
#include "model/ops/gemm.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

void ml_matmul_forward_on(ml_gemm_engine e, float *y, ml_gemm_operand x, ml_gemm_operand w, int N, int in, int out) {
    ml_gemm_ops(e, 0, 1, N, out, in, x, w, 0.0f, y, out);
}

/* dy's bf16 copy when both backward products read one, kept by the calling thread */
static _Thread_local ml_scratch dy16;

/* dy with its bf16 bits when it has none and the dX product (on `e`, writing bf16 or not) and the dW product both
 * read bf16: rounded once for the two. */
static ml_gemm_operand share_dy16(ml_gemm_engine e, ml_gemm_operand dy, int dx_reads_bf16, int N, int in, int out) {
    if (dy.b16 || !dx_reads_bf16 || !ml_gemm_reads_bf16(e, 1, 0, out, in, N)) return dy;
    uint16_t *d = ml_scratch_get(&dy16, (size_t)N * out * sizeof(uint16_t));
    if (d) {
        ml_bf16_convert(d, dy.f32, N, out, dy.ld);
        dy.b16 = d;
    }
    return dy;
}

void ml_matmul_backward_on(ml_gemm_engine e, float *dx, float *dw, ml_gemm_operand dy, ml_gemm_operand x,
                           ml_gemm_operand w, int N, int in, int out, int accumulate_dx, int accumulate_dw) {
    if (dx && dw) dy = share_dy16(e, dy, ml_gemm_reads_bf16(e, 0, 0, N, in, out), N, in, out);
    if (dx) ml_gemm_ops(e, 0, 0, N, in, out, dy, w, accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (dw) ml_gemm_ops(e, 1, 0, out, in, N, dy, x, accumulate_dw ? 1.0f : 0.0f, dw, in);
}

void ml_matmul_backward_to_bf16_on(ml_gemm_engine e, uint16_t *dx16, float *dw, ml_gemm_operand dy,
                                   ml_gemm_operand x, ml_gemm_operand w, int N, int in, int out, int accumulate_dw) {
    if (dw) dy = share_dy16(e, dy, ml_gemm_reads_bf16(e, 0, 0, N, in, out), N, in, out);
    ml_gemm_ops_to_bf16(e, 0, 0, N, in, out, dy, w, dx16);
    if (dw) ml_gemm_ops(e, 1, 0, out, in, N, dy, x, accumulate_dw ? 1.0f : 0.0f, dw, in);
}

void ml_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out) {
    ml_matmul_forward_on(ML_GEMM_OPENBLAS, y, ml_gemm_f32(x, in), ml_gemm_f32(w, in), N, in, out);
}

void ml_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                        int out, int accumulate_dx) {
    ml_matmul_backward_on(ML_GEMM_OPENBLAS, dx, dw, ml_gemm_f32(dy, out), ml_gemm_f32(x, in), ml_gemm_f32(w, in), N,
                          in, out, accumulate_dx, 1);
}

void ml_matmul_forward_bf16(float *y, const float *x, const float *w, int N, int in, int out) {
    ml_matmul_forward_on(ML_GEMM_BF16, y, ml_gemm_f32(x, in), ml_gemm_f32(w, in), N, in, out);
}

void ml_matmul_backward_bf16(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                             int out, int accumulate_dx) {
    ml_matmul_backward_on(ML_GEMM_BF16, dx, dw, ml_gemm_f32(dy, out), ml_gemm_f32(x, in), ml_gemm_f32(w, in), N, in,
                          out, accumulate_dx, 1);
}
