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

static void swapf(float *a, float *b) {
    float t = *a;
    *a = *b;
    *b = t;
}

/* The value of ascending rank r (0-based) of v[0..n), reordering v. Three-way partitions, so runs of
 * equal values (zeros) cost nothing extra. */
static float select_rank(float *v, size_t n, size_t r) {
    size_t lo = 0, hi = n; /* [lo, hi) holds rank r */
    uint64_t state = 0x9E3779B97F4A7C15ull;
    while (hi - lo > 1) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float p = v[lo + (size_t)((state >> 33) % (hi - lo))];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < p) swapf(&v[lt++], &v[i++]);
            else if (v[i] > p) swapf(&v[i], &v[--gt]);
            else i++;
        }
        if (r < lt) hi = lt;
        else if (r >= gt) lo = gt;
        else return p;
    }
    return v[lo];
}

/* Keep the elements whose ascending rank of |x| (ties in index order) lies in [r0, r1); zero the rest. */
static size_t keep_ranks(float *x, size_t len, size_t r0, size_t r1, float *scratch) {
    if (r1 <= r0) {
        memset(x, 0, len * sizeof *x);
        return 0;
    }
    for (size_t e = 0; e < len; e++) scratch[e] = fabsf(x[e]);
    float lo = select_rank(scratch, len, r0);
    for (size_t e = 0; e < len; e++) scratch[e] = fabsf(x[e]);
    float hi = select_rank(scratch, len, r1 - 1);
    size_t less_lo = 0, less_hi = 0;
    for (size_t e = 0; e < len; e++) {
        float a = fabsf(x[e]);
        less_lo += a < lo;
        less_hi += a < hi;
    }
    size_t seen_lo = 0, seen_hi = 0, kept = 0;
    for (size_t e = 0; e < len; e++) {
        float a = fabsf(x[e]);
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

size_t ml_sparsify_magnitude(float *x, size_t len, double density, int rescale, float *scratch) {
    if (density >= 1 || len == 0) return len;
    double before = rescale ? l1(x, len) : 0;
    size_t k = (size_t)(density * (double)len);
    if (k < 1) k = 1;
    size_t kept = keep_ranks(x, len, len - k, len, scratch);
    if (rescale) rescale_l1(x, len, before);
    return kept;
}

size_t ml_sparsify_outliers(float *x, size_t len, double density, double gamma, int rescale, float *scratch) {
    if (density >= 1 || len == 0) return len;
    double before = rescale ? l1(x, len) : 0;
    size_t target = (size_t)(density * (double)len), top = (size_t)(gamma * (double)len);
    size_t bot = len > target + top ? len - target - top : 0;
    size_t kept = keep_ranks(x, len, bot, bot + target, scratch);
    if (rescale) rescale_l1(x, len, before);
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
                        const ml_merge_shared_params *sh, size_t len, uint64_t seed, float *scratch) {
    if (n > 64) return ml_fail(ML_ERR_UNSUPPORTED, "at most 64 models can be merged at once");
    const float *bx = x[base];
    float wf[64];
    int idx[64], k = 0;
    for (int i = 0; i < n; i++) {
        if (i == base) continue;
        float *d = x[i];
#pragma omp parallel for schedule(static) if (len >= PAR_MIN)
        for (size_t e = 0; e < len; e++) d[e] -= bx[e];
        switch (m) {
        case ML_MERGE_TIES: ml_sparsify_magnitude(d, len, in[i].density, sh->rescale, scratch); break;
        case ML_MERGE_DARE_LINEAR:
        case ML_MERGE_DARE_TIES: ml_sparsify_random(d, len, in[i].density, sh->rescale, mix64(seed ^ mix64((uint64_t)i + 1))); break;
        case ML_MERGE_BREADCRUMBS:
        case ML_MERGE_BREADCRUMBS_TIES:
            ml_sparsify_outliers(d, len, in[i].density, in[i].gamma, sh->rescale, scratch);
            break;
        default: break;
        }
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
