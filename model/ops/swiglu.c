#include <math.h>

#include "common/vmath.h"
#include "model/ops/ops.h"

/* exp(-gate) for a chunk, vectorised (common/vmath.h); the rest of each kernel is plain simd. */
enum { CHUNK = 256 };

static inline void neg_exp(float *e, const float *gate, int64_t n) {
    for (int64_t i = 0; i < n; i++) e[i] = -gate[i];
    ml_exp_inplace(e, n);
}

void ml_swiglu_forward(float *h, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        const int64_t m = n - c < CHUNK ? n - c : CHUNK;
        float e[CHUNK];
        neg_exp(e, gate + c, m);
#pragma omp simd
        for (int64_t i = 0; i < m; i++) h[c + i] = gate[c + i] / (1.0f + e[i]) * up[c + i];
    }
}

void ml_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n; c += CHUNK) {
        const int64_t m = n - c < CHUNK ? n - c : CHUNK;
        float e[CHUNK];
        neg_exp(e, gate + c, m);
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            const float g = gate[c + i], sig = 1.0f / (1.0f + e[i]), silu = g * sig;
            dup[c + i] = dh[c + i] * silu;
            dgate[c + i] = dh[c + i] * up[c + i] * (sig + silu * (1.0f - sig));
        }
    }
}
