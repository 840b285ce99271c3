/* The inputs every quantizer test feeds the references (tests/test_quant.c, tests/test_quant_torchao.c): weights
 * with exact ties of the int4 grids, a zero row, Q4_0's clipping side, an outlier; activations all positive,
 * zero, with an outlier, tiny; per-row scales small enough to clip. */
#ifndef ML_TEST_QUANT_INPUTS_H
#define ML_TEST_QUANT_INPUTS_H

#include <math.h>

#include "common/rng.h"

enum { R = 8, C = 256, N = 6, K = 256 };

static float w[R * C], gw[R * C], x[N * K], gx[N * K], sc[R];

static inline void make_inputs(void) {
    ml_rng r;
    ml_rng_seed(&r, 11);
    for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * ml_rng_normal(&r)), gw[i] = (float)ml_rng_normal(&r);
    for (int i = 0; i < N * K; i++) x[i] = (float)ml_rng_normal(&r), gx[i] = (float)ml_rng_normal(&r);
    /* row 1: exact ties of the int4 grids (group max 7.5 -> s = 1): 2.5, -3.5, +7.5 (rounds to 8, clips), -7.5 */
    for (int j = 0; j < C; j++) w[1 * C + j] = (float)((j % 8) - 4) * 0.5f;
    for (int g = 0; g < C; g += 32) w[1 * C + g] = 7.5f, w[1 * C + g + 1] = -7.5f, w[1 * C + g + 2] = 2.5f;
    /* row 2: zeros (d = 0, s = FLT_MIN) */
    for (int j = 0; j < C; j++) w[2 * C + j] = 0.0f;
    /* row 3: Q4_0 extreme negative (d = 1), values above +7.5 on the other side clip to 7 */
    for (int j = 0; j < C; j++) w[3 * C + j] = (float)(j % 17) - 8.0f + 0.6f * (float)(j % 3);
    for (int g = 0; g < C; g += 32) w[3 * C + g] = -8.0f;
    /* row 4: an outlier */
    w[4 * C + 77] = 0.5f;
    /* activations: an all-positive row (zero point -128), a zero row, an outlier, a tiny row */
    for (int j = 0; j < K; j++) x[1 * K + j] = fabsf(x[1 * K + j]) + 0.1f, x[2 * K + j] = 0.0f, x[4 * K + j] *= 1e-3f;
    x[3 * K + 5] = 40.0f;
    for (int i = 0; i < R; i++) {
        float amax = 0;
        for (int j = 0; j < C; j++) amax = fmaxf(amax, fabsf(w[i * C + j]));
        sc[i] = (amax > 0 ? amax : 1e-3f) / 7.5f * (0.7f + 0.1f * (float)i); /* smaller scales clip */
    }
}

#endif
