/* Kernels of the MobileLLM block, llm.c style: outputs first, then inputs, then sizes; each
 * backward next to its forward; backward kernels ACCUMULATE (+=) into parameter gradients and,
 * unless stated otherwise, OVERWRITE input gradients. Each has a finite-difference test in
 * tests/test_ops.c. N = number of tokens (B*T). */
#ifndef ML_OPS_H
#define ML_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "model/ops/gemm.h"

/* ---- matmul (model/ops/matmul.c): Y[N,out] = X[N,in] · W[out,in]^T, weights in HF [out,in] layout */
void ml_matmul_forward(float *y, const float *x, const float *w, int N, int in, int out);
/* dX[N,in] (= or += per accumulate_dx) dY·W and dW[out,in] += dY^T·X. Either output may be NULL. */
void ml_matmul_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                        int out, int accumulate_dx);
/* The same with bf16 inputs (round to nearest even) and fp32 accumulation, on AVX512-BF16
 * (model/ops/gemm_bf16.h; callers check ml_bf16_available() for speed, the result is the same). */
void ml_matmul_forward_bf16(float *y, const float *x, const float *w, int N, int in, int out);
void ml_matmul_backward_bf16(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int in,
                             int out, int accumulate_dx);
/* The same on a GEMM engine of model/ops/gemm.h (ML_GEMM_AUTO: the dispatcher's choice per product; the plain
 * and _bf16 forms above are openblas and bf16), with each operand given as fp32, bf16 bits or both
 * (ml_gemm_operand; x and dy with ld = their row length, w with ld = in). When dy has no bf16 copy and both backward
 * products read bf16 operands, dy is rounded once for the two. dW is written (accumulate_dw 0: what dw held is
 * neither read nor kept) or added to (1). */
void ml_matmul_forward_on(ml_gemm_engine e, float *y, ml_gemm_operand x, ml_gemm_operand w, int N, int in, int out);
void ml_matmul_backward_on(ml_gemm_engine e, float *dx, float *dw, ml_gemm_operand dy, ml_gemm_operand x,
                           ml_gemm_operand w, int N, int in, int out, int accumulate_dx, int accumulate_dw);
/* The same with dX written as bf16 bits [N, in] (each sum rounded once, not accumulated): an input gradient that
 * only bf16 readers take. */
void ml_matmul_backward_to_bf16_on(ml_gemm_engine e, uint16_t *dx16, float *dw, ml_gemm_operand dy,
                                   ml_gemm_operand x, ml_gemm_operand w, int N, int in, int out, int accumulate_dw);

/* ---- embedding (model/ops/embedding.c) */
void ml_embedding_forward(float *out, const int32_t *tokens, const float *table, int N, int C);
/* dtable[tok] += dout (serialised per vocabulary row: deterministic regardless of threads) */
void ml_embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int N, int C);

/* ---- RMSNorm (model/ops/rmsnorm.c): y = x * rsqrt(mean(x^2) + eps) * w */
void ml_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* The same with y written as bf16 bits (each value rounded as ml_bf16_bits): the bf16 activations of a model whose
 * products read bf16 operands (ml_model.act16). */
void ml_rmsnorm_forward_b16(uint16_t *y, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx += ..., dw += ... (dx accumulates: it is the residual stream's gradient) */
void ml_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int N, int C);

/* ---- RoPE (model/ops/rope.c), in place on [N, heads, hd]; cos/sin tables [max_pos, hd/2] */
void ml_rope_table(float *cos_t, float *sin_t, int max_pos, int hd, float theta);
/* pos[N] (NULL: pos = token index mod T), half_split: pairs (i, i+hd/2) else (2i, 2i+1).
 * Rotates when inverse = 0; rotates backwards (the backward pass of a rotation) when inverse = 1. */
void ml_rope_apply(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N, int T, int heads,
                   int hd, int half_split, int inverse);

/* ---- weightless RMS norm per head (R1's QK-norm) (model/ops/qknorm.c), in place on [N, heads, hd] */
void ml_headnorm_forward(float *x, float *rstd, int N, int heads, int hd, float eps);
/* y and rstd from the forward; dy overwritten in place by dx */
void ml_headnorm_backward(float *dy, const float *y, const float *rstd, int N, int heads, int hd);

/* ---- causal GQA attention (model/ops/attention.c)
 * Each of B rows holds Tk keys/values k,v [B,Tk,KV,hd] and Tq queries q [B,Tq,H,hd]; query i sits at key
 * position q_start + i (training: Tq = Tk, q_start = 0; a KV-cached decoder: the chunk's Tq queries after
 * the cached keys, q_start = Tk - Tq). out [B,Tq,H,hd]; lse [B,H,Tq] log-sum-exp of each score row (may be
 * NULL in the forward). window > 0: key j visible from position t only if t - j < window. doc (NULL or
 * [B*Tk]): only keys of the same document. Scores are never materialised beyond one tile per thread.
 * kernel: how the tile products (S = Q K^T, O += P V; backward S, dP = dO V^T, dQ += dS K, dV += P^T dO,
 * dK += dS^T Q) run. fp32 (0, the default): fp32 FMAs. avx512bf16, amx: on bf16-rounded operands with fp32
 * sums (model/ops/attention_bf16.c); softmax, exp, log-sum-exp, scaling and masking stay fp32. A model in bf16
 * precision sets it from ml_attn_kernel_resolve. */
typedef enum { ML_ATTN_FP32 = 0, ML_ATTN_AVX512BF16, ML_ATTN_AMX, ML_ATTN_NUM_KERNELS } ml_attn_kernel;
typedef struct {
    int B, Tq, Tk, q_start;
    int H, KV, hd;
    int window;
    ml_attn_kernel kernel;
} ml_attn_dims;
/* "fp32" | "avx512bf16" | "amx" */
const char *ml_attn_kernel_name(ml_attn_kernel k);
/* 1 when this CPU runs it (amx: AMX-BF16 and AVX512-BF16, and Linux granted the tile state to this process). */
int ml_attn_kernel_available(ml_attn_kernel k);
/* The kernel of a model: fp32 when bf16 is 0; else ML_ATTN_KERNEL (auto | fp32 | avx512bf16 | amx) when set, or the
 * best this CPU has (amx, then avx512bf16, then fp32). Fails (one line) for an unknown name or a kernel the CPU
 * lacks. */
ml_status ml_attn_kernel_resolve(int bf16, ml_attn_kernel *out);
/* One line: what bf16 precision's attention runs on here. */
void ml_attn_kernels_describe(char *buf, size_t n);
/* Scratch for the forward and backward of rows of up to T keys on `threads` threads; initialise once
 * with ml_attention_work_init. Passing work = NULL makes the kernel allocate its own (tests, benches). */
size_t ml_attention_work_floats(int B, int T, int H, int KV, int hd, int threads);
void ml_attention_work_init(float *work, int threads);
void ml_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *doc, const ml_attn_dims *dims, float *work);
/* Training only (Tq = Tk, q_start = 0). dq, dk, dv overwritten. */
void ml_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                           const float *q, const float *k, const float *v, const int32_t *doc, const ml_attn_dims *dims,
                           float *work);
/* The dimensions of training attention: B rows of T tokens attending among themselves. */
static inline ml_attn_dims ml_attn_dims_self(int B, int T, int H, int KV, int hd, int window) {
    ml_attn_dims d = {B, T, T, 0, H, KV, hd, window, ML_ATTN_FP32};
    return d;
}

/* ---- SwiGLU (model/ops/swiglu.c): h = silu(gate) * up, elementwise over n */
void ml_swiglu_forward(float *h, const float *gate, const float *up, int64_t n);
/* dgate, dup overwritten */
void ml_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int64_t n);
/* The same with gate and up given as bf16 bits (the model's bf16 activations): exactly the fp32 kernels on their
 * values, with every output written as bf16 bits, the fp32 kernel's results rounded once: h (read only by the down
 * projection's products, which would round it themselves), and in backward dgate and dup from dh, also bf16 (its
 * inputs and outputs are products' bf16 outputs and inputs). */
void ml_swiglu_forward_b16(uint16_t *h, const uint16_t *gate, const uint16_t *up, int64_t n);
void ml_swiglu_backward_b16(uint16_t *dgate, uint16_t *dup, const uint16_t *dh, const uint16_t *gate,
                            const uint16_t *up, int64_t n);

/* ---- softmax cross-entropy rows (model/ops/cross_entropy.c)
 * logits [n, V] overwritten in place by d(loss)/d(logits) * grad_scale when grad_scale != 0
 * (rows whose target < 0 get zero gradient). losses[n] per-row loss (0 when target < 0). */
void ml_softmax_xent_rows(float *logits_to_dlogits, float *losses, const int32_t *targets, int n, int V,
                          float grad_scale);
/* The same on logits given as bf16 bits, overwritten by the gradient as bf16 bits: exactly the fp32 kernel on the
 * widened logits, its gradient rounded once (the bf16 head, where both backward products read bf16). */
void ml_softmax_xent_rows_b16(uint16_t *logits_to_dlogits, float *losses, const int32_t *targets, int n, int V,
                              float grad_scale);

#endif
