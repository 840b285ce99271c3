#include "merge/methods.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

#define PAR_MIN 65536 /* elements below which loops stay on one thread */

void ml_merge_defaults(ml_merge_method m, ml_merge_shared_params *sh, ml_merge_in_params *in) {
    /* mergekit's registry: ties normalizes, the DARE variants rescale, the rest do neither; linear
     * normalizes. */
    sh->normalize = m == ML_MERGE_LINEAR || m == ML_MERGE_TIES;
    sh->rescale = m == ML_MERGE_DARE_LINEAR || m == ML_MERGE_DARE_TIES;
    sh->lambda = 1.0;
    sh->t = 0.0;
    in->weight = NAN;
    in->density = 1.0;
    in->gamma = 0.01;
}

void ml_merge_linear(float *out, const float *const *x, const double *w, int n, size_t len, int normalize) {
    float den = 0.0f;
    float wf[64];
    for (int i = 0; i < n && i < 64; i++) {
        wf[i] = (float)w[i];
        den += wf[i];
    }
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) {
        float acc = 0.0f;
        for (int i = 0; i < n; i++) acc += x[i][e] * wf[i];
        out[e] = normalize ? acc / den : acc;
    }
}

void ml_merge_slerp(float *out, const float *a, const float *b, size_t len, double t) {
    double na = 0, nb = 0;
#pragma omp parallel for reduction(+ : na, nb) schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) {
        na += (double)a[e] * a[e];
        nb += (double)b[e] * b[e];
    }
    na = sqrt(na);
    nb = sqrt(nb);
    if (!(na > 1e-8)) na = 1;
    if (!(nb > 1e-8)) nb = 1;
    double dot = 0;
#pragma omp parallel for reduction(+ : dot) schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) dot += ((double)a[e] / na) * ((double)b[e] / nb);
    if (dot > 1) dot = 1;
    if (dot < -1) dot = -1;
    float ca, cb;
    if (fabs(dot) > 0.9995) {
        ca = (float)(1 - t);
        cb = (float)t;
    } else {
        double theta = acos(dot), s = sin(theta);
        ca = (float)(sin((1 - t) * theta) / s);
        cb = (float)(sin(t * theta) / s);
    }
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) out[e] = ca * a[e] + cb * b[e];
}

/* ---------------------------------------------------------------- selection */

/* For non-negative floats the order of the bit patterns is the order of the values, so ranks of |x| are
 * found by radix selection on the 31 magnitude bits: one pass histograms the upper 16 bits, a second the
 * lower 16 bits inside the bins that hold the wanted ranks. Two parallel read-only passes, no copy. */
static inline uint32_t abits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x7fffffffu;
}

#define NBINS 65536

/* Histogram of key(x[e]) over the elements that `want` accepts (upper 16 bits equal to bin, or all when
 * bin < 0), into hist[NBINS] (zeroed here). Returns 0 when out of memory. */
static int histogram(const float *x, size_t n, int64_t bin, int upper, uint64_t *hist) {
    memset(hist, 0, NBINS * sizeof *hist);
    int ok = 1;
#pragma omp parallel if (n >= PAR_MIN)
    {
        uint64_t *local = calloc(NBINS, sizeof *local);
        if (!local) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp for schedule(static)
        for (size_t e = 0; e < n; e++) {
            if (!local) continue;
            uint32_t u = abits(x[e]);
            if (upper) local[u >> 16]++;
            else if ((int64_t)(u >> 16) == bin) local[u & 0xffffu]++;
        }
        if (local) {
#pragma omp critical
            for (int b = 0; b < NBINS; b++) hist[b] += local[b];
            free(local);
        }
    }
    return ok;
}

/* The bin holding rank r of a histogram, and the count below it. */
static uint32_t find_bin(const uint64_t *hist, uint64_t r, uint64_t *below) {
    uint64_t cum = 0;
    for (uint32_t b = 0; b < NBINS; b++) {
        if (cum + hist[b] > r) {
            *below = cum;
            return b;
        }
        cum += hist[b];
    }
    *below = cum;
    return NBINS - 1;
}

/* Bits of |x| at ascending rank r, and how many elements are strictly below it. */
static int select_rank(const float *x, size_t n, size_t r, uint64_t *hist, uint32_t *bits, uint64_t *less) {
    uint64_t below_hi, below_lo;
    if (!histogram(x, n, -1, 1, hist)) return 0;
    uint32_t hi = find_bin(hist, r, &below_hi);
    if (!histogram(x, n, hi, 0, hist)) return 0;
    uint32_t lo = find_bin(hist, r - below_hi, &below_lo);
    *bits = hi << 16 | lo;
    *less = below_hi + below_lo;
    return 1;
}

/* Keep the elements whose ascending rank of |x| (ties in index order) lies in [r0, r1); zero the rest.
 * Returns the number kept, or SIZE_MAX when out of memory. */
static size_t keep_ranks(float *x, size_t len, size_t r0, size_t r1) {
    if (r1 <= r0) {
        memset(x, 0, len * sizeof *x);
        return 0;
    }
    uint64_t *hist = malloc(NBINS * sizeof *hist), less_lo, less_hi;
    uint32_t lo, hi;
    int ok = hist && select_rank(x, len, r0, hist, &lo, &less_lo) && select_rank(x, len, r1 - 1, hist, &hi, &less_hi);
    free(hist);
    if (!ok) return SIZE_MAX;
    size_t seen_lo = 0, seen_hi = 0, kept = 0;
    for (size_t e = 0; e < len; e++) {
        uint32_t a = abits(x[e]);
        int keep;
        if (a > lo && a < hi) keep = 1;
        else if (a == lo) {
            size_t rank = less_lo + seen_lo++;
            keep = rank >= r0 && rank < r1;
        } else if (a == hi) {
            size_t rank = less_hi + seen_hi++;
            keep = rank < r1;
        } else keep = 0;
        if (keep) kept++;
        else x[e] = 0.0f;
    }
    return kept;
}

/* mergekit's rescaled_masked_tensor with the L1 norm: scale the kept values so that sum |x| is as before. */
static void rescale_l1(float *x, size_t len, double before) {
    double after = 0;
#pragma omp parallel for reduction(+ : after) schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) after += fabs((double)x[e]);
    if (before < 1e-7 || after < 1e-7) return;
    float s = (float)(before / after);
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) x[e] *= s;
}

static double l1(const float *x, size_t len) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) s += fabs((double)x[e]);
    return s;
}

size_t ml_sparsify_magnitude(float *x, size_t len, double density, int rescale) {
    if (density >= 1 || len == 0) return len;
    double before = rescale ? l1(x, len) : 0;
    size_t k = (size_t)(density * (double)len);
    if (k < 1) k = 1;
    size_t kept = keep_ranks(x, len, len - k, len);
    if (rescale && kept != SIZE_MAX) rescale_l1(x, len, before);
    return kept;
}

size_t ml_sparsify_outliers(float *x, size_t len, double density, double gamma, int rescale) {
    if (density >= 1 || len == 0) return len;
    double before = rescale ? l1(x, len) : 0;
    size_t target = (size_t)(density * (double)len), top = (size_t)(gamma * (double)len);
    size_t bot = len > target + top ? len - target - top : 0;
    size_t kept = keep_ranks(x, len, bot, bot + target);
    if (rescale && kept != SIZE_MAX) rescale_l1(x, len, before);
    return kept;
}

#define RAND_BLOCK 65536 /* each block of elements draws from its own stream: same result on any thread count */

size_t ml_sparsify_random(float *x, size_t len, double density, int rescale, uint64_t seed) {
    if (density >= 1 || len == 0) return len;
    double before = rescale ? l1(x, len) : 0;
    size_t nblocks = (len + RAND_BLOCK - 1) / RAND_BLOCK, kept = 0;
    /* compare 24-bit uniforms with the density rounded the same way */
    const uint32_t thresh = (uint32_t)llround(density * 16777216.0);
#pragma omp parallel for reduction(+ : kept) schedule(static) if (len >= PAR_MIN)
    for (size_t b = 0; b < nblocks; b++) {
        ml_rng r;
        ml_rng_seed(&r, seed ^ (0xD1B54A32D192ED03ull * (b + 1)));
        size_t e1 = (b + 1) * RAND_BLOCK < len ? (b + 1) * RAND_BLOCK : len;
        for (size_t e = b * RAND_BLOCK; e < e1; e++) {
            uint32_t u = (uint32_t)(ml_rng_u64(&r) >> 40);
            if (u < thresh) kept++;
            else x[e] = 0.0f;
        }
    }
    if (rescale) rescale_l1(x, len, before);
    return kept;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

ml_status ml_merge_task(ml_merge_method m, float *out, float *const *x, int n, int base, const ml_merge_in_params *in,
                        const ml_merge_shared_params *sh, size_t len, uint64_t seed) {
    if (n > 64) return ml_fail(ML_ERR_UNSUPPORTED, "at most 64 models can be merged at once");
    const float *bx = x[base];
    float wf[64];
    int idx[64], k = 0;
    for (int i = 0; i < n; i++) {
        if (i == base) continue;
        float *d = x[i];
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
        for (size_t e = 0; e < len; e++) d[e] -= bx[e];
        size_t kept = 0;
        switch (m) {
        case ML_MERGE_TIES: kept = ml_sparsify_magnitude(d, len, in[i].density, sh->rescale); break;
        case ML_MERGE_DARE_LINEAR:
        case ML_MERGE_DARE_TIES: ml_sparsify_random(d, len, in[i].density, sh->rescale, mix64(seed ^ mix64((uint64_t)i + 1))); break;
        case ML_MERGE_BREADCRUMBS:
        case ML_MERGE_BREADCRUMBS_TIES: kept = ml_sparsify_outliers(d, len, in[i].density, in[i].gamma, sh->rescale); break;
        default: break;
        }
        if (kept == SIZE_MAX) return ml_fail(ML_ERR_NOMEM, "out of memory for the magnitude histograms");
        wf[k] = (float)in[i].weight;
        const float w = wf[k];
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
        for (size_t e = 0; e < len; e++) d[e] *= w;
        idx[k++] = i;
    }
    const int consensus = m == ML_MERGE_TIES || m == ML_MERGE_DARE_TIES || m == ML_MERGE_BREADCRUMBS_TIES;
    const float lambda = (float)sh->lambda;
    const int scale = sh->lambda != 1.0, normalize = sh->normalize;
    float wsum = 0.0f;
    for (int j = 0; j < k; j++) wsum += wf[j];
    if (fabsf(wsum) < 1e-8f) wsum = 1.0f;
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
    for (size_t e = 0; e < len; e++) {
        float mixed = 0.0f, div;
        if (consensus) {
            float sw = 0.0f;
            for (int j = 0; j < k; j++) sw += x[idx[j]][e];
            const float maj = sw >= 0.0f ? 1.0f : -1.0f;
            div = 0.0f;
            for (int j = 0; j < k; j++) {
                float d = x[idx[j]][e];
                float sg = (float)((d > 0) - (d < 0));
                if (sg == maj) {
                    mixed += d;
                    div += wf[j];
                }
            }
            if (div == 0.0f) div = 1.0f;
        } else {
            for (int j = 0; j < k; j++) mixed += x[idx[j]][e];
            div = wsum;
        }
        if (normalize) mixed /= div;
        if (scale) mixed *= lambda;
        out[e] = bx[e] + mixed;
    }
    return ML_OK;
}
