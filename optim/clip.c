/* Gradient norm and clipping (see clip.h). */
#include "optim/clip.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this many elements the loops run on one thread. */
#define ML_CLIP_PAR_MIN 65536

/* Sum of squares of x[0..n) in double with 8 independent lanes combined in a fixed order: the
 * result depends only on the data, not on alignment or on which thread runs it. */
static double sumsq_block(const float *x, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double ml_grad_norm(const float *g, size_t n) {
    double part[ML_CLIP_BLOCKS];
#pragma omp parallel for schedule(static) if (n >= ML_CLIP_PAR_MIN)
    for (int b = 0; b < ML_CLIP_BLOCKS; b++) {
        /* bounds as n*b/B without overflowing for any realistic n */
        size_t lo = (size_t)((unsigned __int128)n * (unsigned)b / ML_CLIP_BLOCKS);
        size_t hi = (size_t)((unsigned __int128)n * (unsigned)(b + 1) / ML_CLIP_BLOCKS);
        part[b] = sumsq_block(g + lo, hi - lo);
    }
    double total = 0;
    for (int b = 0; b < ML_CLIP_BLOCKS; b++) total += part[b];
    return sqrt(total);
}

double ml_clip_scale(double norm, double max_norm) {
    double s = max_norm / (norm + 1e-6);
    return s < 1.0 ? s : 1.0;
}

double ml_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = ml_grad_norm(g, n);
    if (!isfinite(norm) || !(max_norm > 0)) return norm;
    double s = ml_clip_scale(norm, max_norm);
    if (s < 1.0) {
        const float sf = (float)s;
#pragma omp parallel for simd schedule(static) if (n >= ML_CLIP_PAR_MIN)
        for (size_t i = 0; i < n; i++) g[i] *= sf;
    }
    return norm;
}

int ml_all_finite(const float *x, size_t n) {
    int bad = 0;
#pragma omp parallel for simd schedule(static) reduction(| : bad) if (n >= ML_CLIP_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u; /* exponent all ones: inf or NaN */
    }
    return !bad;
}
