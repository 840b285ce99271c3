/* bf16 GEMM with fp32 accumulation on the CPU's AVX512-BF16 instructions (vdpbf16ps).
 *
 *   C[M,N] = beta * C + op(A)[M,K] · op(B)[K,N]        row-major, beta 0 or 1
 *   op(A) = A (stored [M,K], lda >= K) or, with transA, A^T (A stored [K,M], lda >= M)
 *   op(B) = B (stored [K,N], ldb >= N) or, with transB, B^T (B stored [N,K], ldb >= K)
 *
 * The fp32 inputs are rounded to bf16 (round to nearest even, as vcvtne2ps2bf16 does: denormal
 * inputs count as zero) while they are packed into panels whose K pairs are interleaved as vdpbf16ps
 * reads them; products and sums are fp32. OpenMP over the threads of the calling team (do not call it
 * from inside a parallel region). On a CPU without AVX512-BF16 a slow portable path computes the same
 * roundings (for tests elsewhere); callers that want speed check ml_bf16_available() first. */
#ifndef ML_GEMM_BF16_H
#define ML_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "common/bf16.h"

void ml_gemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc);

/* x rounded to bf16 as ml_bf16_bits and widened back. */
float ml_bf16_round(float x);

/* dst[r * cols + c] = the bf16 bits of ml_bf16_round(src[r * ld + c]): a rows x cols block made compact.
 * OpenMP over rows (call it outside a parallel region). */
void ml_bf16_convert(uint16_t *dst, const float *src, int rows, int cols, int ld);
/* dst[i] = the float of bf16 bits src[i], exactly. OpenMP (outside a parallel region). */
void ml_bf16_widen(float *dst, const uint16_t *src, size_t n);

#endif
