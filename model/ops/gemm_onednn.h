/* oneDNN's matmul as a GEMM engine (model/ops/gemm.h): it multiplies bf16 operands, compact in their stored layout
 * (the dispatcher rounds fp32 ones first, as ml_bf16_convert), with fp32 accumulation into the fp32 C (a sum
 * post-op for beta 1). oneDNN picks its kernel for the CPU: AMX on
 * Xeons that have it (the library asks Linux for the AMX permission itself), avx512_core_bf16 or VNNI-era
 * kernels elsewhere. The Debian build runs on OpenMP, so its threads are ours.
 * One primitive per (shape, transposes, beta, ldc) is created on first use and kept for the process. */
#ifndef ML_GEMM_ONEDNN_H
#define ML_GEMM_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the build has oneDNN and a bf16 matmul can be created on this CPU (checked once). */
int ml_onednn_available(void);
/* C = beta C + op(A16) op(B16) (see above): A16 stored [M,K] (transA: [K,M]), B16 [K,N] (transB: [N,K]), both
 * compact. Returns 0, or -1 when oneDNN could not create or run the product (the caller falls back to another
 * engine). */
int ml_onednn_gemm_bf16(int transA, int transB, int M, int N, int K, const uint16_t *A16, const uint16_t *B16,
                        float beta, float *C, int ldc);
/* The same with C written as bf16, compact [M,N] (beta 0): each fp32 sum rounded once (nearest even). */
int ml_onednn_gemm_bf16_out(int transA, int transB, int M, int N, int K, const uint16_t *A16, const uint16_t *B16,
                            uint16_t *C16);
/* "oneDNN 2.6.3 (OpenMP), ISA avx512_core_bf16" or why it is absent. */
void ml_onednn_describe(char *buf, size_t n);
/* The implementation oneDNN chose for a bf16 product of this shape ("brg:avx512_core_amx_bf16", ...), or why
 * none; for bench --gemm. */
void ml_onednn_impl_name(int transA, int transB, int M, int N, int K, char *buf, size_t n);

/* Integer products for the int8 engine (model/ops/gemm_int8.h): s32 C[M,N] = u8 A[M,K] . B^T with B the s8 weight
 * codes stored [N,K] row-major. A is given untransposed: with a transposed u8 source oneDNN 2.6 leaves AMX for a
 * slower kernel. Exact (int32 sums of u8 x s8 products, K < 2^16). Returns 0, or -1 when oneDNN cannot run it. */
int ml_onednn_int8_available(void);
int ml_onednn_gemm_u8s8(int M, int N, int K, const uint8_t *A, const int8_t *B, int32_t *C);
/* oneDNN's kernel for that product ("brg:avx512_core_amx_int8", ...), or "-". */
void ml_onednn_int8_impl_name(int M, int N, int K, char *buf, size_t n);

#endif
