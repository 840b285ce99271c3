#include <math.h>

#include "common/vmath.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

/* exp(-gate) for a chunk, vectorised (common/vmath.h); the rest of each kernel is plain simd. The bf16-input forms
 * widen a chunk of gate and up on the stack and run the same chunk code. */
enum { CHUNK = 256 };

static inline void neg_exp(float *e, const float *gate, int64_t n) {
    for (int64_t i = 0; i < n; i++) e[i] = -gate[i];
    ml_exp_inplace(e, n);
}

static inline void forward_chunk(float *h, const float *gate, const float *up, int64_t m) {
    float e[CHUNK];
    neg_exp(e, gate, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) h[i] = gate[i] / (1.0f + e[i]) * up[i];
}

static inline void backward_chunk(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                                  int64_t m) {
    float e[CHUNK];
    neg_exp(e, gate, m);
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
        const float g = gate[i], sig = 1.0f / (1.0f + e[i]), silu = g * sig;
        dup[i] = dh[i] * silu;
        dgate[i] = dh[i] * up[i] * (sig + silu * (1.0f - sig));
    }
}

static inline void widen_chunk(float *g, float *u, const uint16_t *gate, const uint16_t *up, int64_t m) {
#pragma omp simd
    for (int64_t i = 0; i < m; i++) g[i] = ml_bf16_value(gate[i]), u[i] = ml_bf16_value(up[i]);
}

void ml_swiglu_forward(float *h, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) forward_chunk(h + c, gate + c, up + c, n - c < CHUNK ? n - c : CHUNK);
}

void ml_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK)
        backward_chunk(dgate + c, dup + c, dh + c, gate + c, up + c, n - c < CHUNK ? n - c : CHUNK);
}

void ml_swiglu_forward_b16(uint16_t *h, const uint16_t *gate, const uint16_t *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        const int64_t m = n - c < CHUNK ? n - c : CHUNK;
        float g[CHUNK], u[CHUNK], hf[CHUNK];
        widen_chunk(g, u, gate + c, up + c, m);
        forward_chunk(hf, g, u, m);
        ml_bf16_round_row(h + c, hf, (size_t)m);
    }
}

void ml_swiglu_backward_b16(uint16_t *dgate, uint16_t *dup, const uint16_t *dh, const uint16_t *gate,
                            const uint16_t *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        const int64_t m = n - c < CHUNK ? n - c : CHUNK;
        float g[CHUNK], u[CHUNK], d[CHUNK], dg[CHUNK], du[CHUNK];
        widen_chunk(g, u, gate + c, up + c, m);
#pragma omp simd
        for (int64_t i = 0; i < m; i++) d[i] = ml_bf16_value(dh[c + i]);
        backward_chunk(dg, du, d, g, u, m);
        ml_bf16_round_row(dgate + c, dg, (size_t)m);
        ml_bf16_round_row(dup + c, du, (size_t)m);
    }
}
