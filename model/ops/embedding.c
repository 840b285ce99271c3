#include <string.h>

#include "model/ops/ops.h"

void ml_embedding_forward(float *out, const int32_t *tokens, const float *table, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(out + (int64_t)n * C, table + (int64_t)tokens[n] * C, sizeof(float) * C);
}

/* Threads own disjoint column blocks, so rows shared by repeated tokens never race and the
 * summation order is fixed (bit-exact resume needs deterministic reductions). */
void ml_embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int N, int C) {
    const int block = 16;
    int nblocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < nblocks; cb++) {
        int c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
        for (int n = 0; n < N; n++) {
            float *dst = dtable + (int64_t)tokens[n] * C;
            const float *src = dout + (int64_t)n * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
