/* AdamW and SGD over segments of one flat parameter array (see optimizer.h). */

/* Contraction of a*b+c into an FMA must be under our control, not the compiler's: torch rounds
 * some products separately and fuses others, and the vectorised and scalar remainder iterations
 * of a loop must round identically for results to be independent of the thread count. Where
 * torch fuses, the code says fmaf(). */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "optim/optimizer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/bf16.h"

/* Below this many elements a step runs on one thread: a parallel region costs more. */
#define ML_OPTIM_PAR_MIN 32768

static void adamw_step(ml_optimizer *o, float *params, const float *grads, float lr);
static void sgd_step(ml_optimizer *o, float *params, const float *grads, float lr);

static ml_status adamw_check(const ml_optim_config *c) {
    if (!(c->beta1 >= 0 && c->beta1 < 1)) return ml_fail(ML_ERR_ARG, "adamw beta1 %g must be in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) return ml_fail(ML_ERR_ARG, "adamw beta2 %g must be in [0, 1)", c->beta2);
    if (!(c->eps >= 0 && isfinite(c->eps))) return ml_fail(ML_ERR_ARG, "adamw eps %g must be finite and >= 0", c->eps);
    return ML_OK;
}

static ml_status sgd_check(const ml_optim_config *c) {
    if (!(c->momentum >= 0 && c->momentum < 1))
        return ml_fail(ML_ERR_ARG, "sgd momentum %g must be in [0, 1)", c->momentum);
    return ML_OK;
}

/* SGD keeps its buffer only with momentum (torch's momentum_buffer) */
static int sgd_keeps(const ml_optim_config *c, int i) { return c->momentum != 0; }

/* The registry: one row per optimizer. Its index is the ml_optim_kind. */
static const ml_optim_def registry[] = {
    {"adamw", 2, {"exp_avg", "exp_avg_sq"}, 0.1, "decoupled", NULL, adamw_check, adamw_step},
    {"sgd", 1, {"momentum_buffer"}, 0.0, "L2", sgd_keeps, sgd_check, sgd_step},
};
#define N_KINDS ((int)(sizeof registry / sizeof registry[0]))

int ml_optim_num_kinds(void) { return N_KINDS; }

const ml_optim_def *ml_optim_def_of(ml_optim_kind kind) {
    return (int)kind >= 0 && (int)kind < N_KINDS ? &registry[kind] : NULL;
}

const ml_optim_def *ml_optim_find(const char *name, ml_optim_kind *kind) {
    for (int i = 0; name && i < N_KINDS; i++)
        if (!strcmp(registry[i].name, name)) {
            if (kind) *kind = (ml_optim_kind)i;
            return &registry[i];
        }
    return NULL;
}

const char *ml_optim_names(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; i < N_KINDS; i++) {
            size_t k = strlen(buf);
            snprintf(buf + k, sizeof buf - k, "%s%s", i ? ", " : "", registry[i].name);
        }
    return buf;
}

ml_optim_config ml_optim_defaults(ml_optim_kind kind) {
    ml_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9;
    c.beta2 = 0.95;
    c.eps = 1e-8;
    const ml_optim_def *d = ml_optim_def_of(kind);
    c.weight_decay = d ? d->default_weight_decay : 0.0;
    c.momentum = 0.0;
    return c;
}

ml_status ml_optim_kind_parse(const char *name, ml_optim_kind *out) {
    if (ml_optim_find(name, out)) return ML_OK;
    return ml_fail(ML_ERR_ARG, "unknown optimizer '%s' (expected one of %s)", name ? name : "(null)", ml_optim_names());
}

const char *ml_optim_kind_name(ml_optim_kind kind) {
    const ml_optim_def *d = ml_optim_def_of(kind);
    return d ? d->name : "unknown";
}

ml_status ml_optim_config_check(const ml_optim_config *c) {
    if (!c) return ml_fail(ML_ERR_ARG, "optimizer config is NULL");
    const ml_optim_def *d = ml_optim_def_of(c->kind);
    if (!d) return ml_fail(ML_ERR_ARG, "optimizer kind %d is not one of %s", (int)c->kind, ml_optim_names());
    if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return ml_fail(ML_ERR_ARG, "optimizer weight_decay %g must be finite and >= 0", c->weight_decay);
    return d->check ? d->check(c) : ML_OK;
}

static int keeps(const ml_optim_def *d, const ml_optim_config *c, int i) { return !d->keeps_state || d->keeps_state(c, i); }

int ml_optim_state_names(const ml_optim_config *cfg, const char **names) {
    const ml_optim_def *d = ml_optim_def_of(cfg->kind);
    int n = 0;
    for (int i = 0; d && i < d->n_state; i++)
        if (keeps(d, cfg, i)) names[n++] = d->state_names[i];
    return n;
}

size_t ml_optim_state_floats(const ml_optim_config *cfg, size_t num_floats) {
    const char *names[ML_OPTIM_MAX_STATE];
    return (size_t)ml_optim_state_names(cfg, names) * num_floats;
}

static int seg_cmp(const void *a, const void *b) {
    const ml_optim_segment *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

ml_status ml_optim_create(ml_optimizer *o, const ml_optim_config *cfg, const ml_optim_segment *segs,
                          int n_segs, size_t num_floats, float *state) {
    if (!o) return ml_fail(ML_ERR_ARG, "ml_optim_create: optimizer is NULL");
    memset(o, 0, sizeof *o);
    ML_TRY(ml_optim_config_check(cfg));
    if (n_segs < 0 || (n_segs > 0 && !segs))
        return ml_fail(ML_ERR_ARG, "ml_optim_create: %d segments but no segment array", n_segs);
    if (num_floats > SIZE_MAX / (ML_OPTIM_MAX_STATE * sizeof(float)))
        return ml_fail(ML_ERR_RANGE, "ml_optim_create: %zu parameters is too many", num_floats);

    ml_optim_segment *copy = NULL;
    if (n_segs > 0) {
        copy = malloc((size_t)n_segs * sizeof *copy);
        if (!copy) return ml_fail(ML_ERR_NOMEM, "out of memory copying %d optimizer segments", n_segs);
        memcpy(copy, segs, (size_t)n_segs * sizeof *copy);
    }
    for (int i = 0; i < n_segs; i++) {
        if (copy[i].offset > num_floats || copy[i].numel > num_floats - copy[i].offset) {
            ml_status s = ml_fail(ML_ERR_ARG, "optimizer segment %d [%zu, +%zu) lies outside the %zu parameters",
                                  i, copy[i].offset, copy[i].numel, num_floats);
            free(copy);
            return s;
        }
    }
    if (n_segs > 1) qsort(copy, (size_t)n_segs, sizeof *copy, seg_cmp);
    for (int i = 1; i < n_segs; i++) {
        if (copy[i - 1].offset + copy[i - 1].numel > copy[i].offset) {
            ml_status s = ml_fail(ML_ERR_ARG, "optimizer segments [%zu, +%zu) and [%zu, +%zu) overlap",
                                  copy[i - 1].offset, copy[i - 1].numel, copy[i].offset, copy[i].numel);
            free(copy);
            return s;
        }
    }

    size_t need = ml_optim_state_floats(cfg, num_floats);
    float *st = state;
    if (need > 0 && !st) {
        st = o->owned = ml_aligned_calloc(need * sizeof(float));
        if (!st) {
            free(copy);
            return ml_fail(ML_ERR_NOMEM, "out of memory allocating optimizer state (%.1f MiB)",
                           (double)need * 4 / 1048576.0);
        }
    }
    o->cfg = *cfg;
    o->segs = copy;
    o->n_segs = n_segs;
    o->num_floats = num_floats;
    const ml_optim_def *d = ml_optim_def_of(cfg->kind);
    for (int i = 0, k = 0; i < d->n_state; i++)
        if (keeps(d, cfg, i)) o->state[i] = st + (size_t)k++ * num_floats;
    ml_optim_reset(o);
    return ML_OK;
}

void ml_optim_free(ml_optimizer *o) {
    if (!o) return;
    free(o->segs);
    free(o->owned);
    memset(o, 0, sizeof *o);
}

void ml_optim_reset(ml_optimizer *o) {
    for (int i = 0; i < ML_OPTIM_MAX_STATE; i++)
        if (o->state[i]) memset(o->state[i], 0, o->num_floats * sizeof(float));
    o->t = 0;
}

int ml_optim_num_state(const ml_optimizer *o) {
    int n = 0;
    for (int i = 0; i < ML_OPTIM_MAX_STATE; i++) n += o->state[i] != NULL;
    return n;
}

float *ml_optim_state(const ml_optimizer *o, int i, const char **name) {
    const ml_optim_def *d = ml_optim_def_of(o->cfg.kind);
    for (int j = 0, k = 0; d && j < d->n_state; j++) {
        if (!o->state[j]) continue;
        if (k++ == i) {
            if (name) *name = d->state_names[j];
            return o->state[j];
        }
    }
    if (name) *name = NULL;
    return NULL;
}

static size_t total_numel(const ml_optimizer *o) {
    size_t n = 0;
    for (int s = 0; s < o->n_segs; s++) n += o->segs[s].numel;
    return n;
}

/* torch 1.13 _single_tensor_adamw, per element, with torch's roundings:
 *   p *= (float)(1 - lr*wd)                          (decay segments; others multiply by 1, exact)
 *   m  = fma(g, (float)(1-b1), m*(float)b1)          (mul_, then add_ with alpha: an FMA on AVX2)
 *   v  = fma((float)(1-b2)*g, g, v*(float)b2)        (mul_, then addcmul_: its vectorised
 *                                                     a + s*x*y is contracted to an FMA)
 *   d  = sqrt(v) / (float)sqrt(1-b2^t) + (float)eps
 *   p  = p + ((float)(-lr/(1-b1^t)) * m) / d         (addcdiv_)
 * Written once as a macro over scalar floats or GCC vectors (vector op scalar is allowed). */
#define ADAMW_UPDATE(P, M, V, G, D, A1, FMA, SQRT, DIV_BC2) \
    do {                                                     \
        P = P * (D);                                         \
        M = FMA(G, A1, M * b1);                              \
        V = FMA(a2 * G, G, V * b2);                          \
        P = P + (neg_step * M) / (DIV_BC2(SQRT(V)) + eps);   \
    } while (0)
#define SCALAR_DIV_BC2(x) ((x) / bc2_sqrt)

/* The vector path uses intrinsics for sqrt, fma and the division by sqrt(1 - beta2^t): GCC will not vectorise sqrtf
 * without -fno-math-errno, which a pragma cannot switch on for builtins, and the scalar loop is 3.5x slower. Both
 * paths round identically (IEEE sqrt, div, fma; the vector division is correctly rounded too), so the split point
 * between them does not change any result. */
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 ml_vf;
#define ML_VW 16
#define VLOAD(x) _mm512_loadu_ps(x)
#define VSTORE(x, y) _mm512_storeu_ps(x, y)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSQRT(x) _mm512_sqrt_ps(x)
/* s / bc2_sqrt rounded as the divider rounds it, by Markstein's correction: with y = RN(1 / bc2_sqrt), q = RN(s y) is
 * within an ulp of the quotient, r = s - bc2_sqrt q is exact, and RN(q + r y) is the correctly rounded quotient (s =
 * sqrt(v) is 0, normal, +inf or NaN, and the quotient normal; +inf lanes, where r is NaN, keep q = inf). Three FMA-unit
 * operations instead of a division, which shares the divider with the square root. */
#define VDIV_BC2(s) div_bc2(s, VSET1(bc2_sqrt), VSET1(bc2_recip))
static inline __m512 div_bc2(__m512 s, __m512 b, __m512 y) {
    const __m512 q = _mm512_mul_ps(s, y);
    const __m512 r = _mm512_fnmadd_ps(b, q, s);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(q, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ), _mm512_fmadd_ps(r, y, q), q);
}
#elif defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 ml_vf;
#define ML_VW 8
#define VLOAD(x) _mm256_loadu_ps(x)
#define VSTORE(x, y) _mm256_storeu_ps(x, y)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VSQRT(x) _mm256_sqrt_ps(x)
#define VDIV_BC2(s) _mm256_div_ps(s, VSET1(bc2_sqrt))
#else
#define ML_VW 1
#endif

/* The calling thread's share [lo, hi) of a segment of n elements in a parallel region: whole vectors, the last thread
 * taking the remainder too (the vector and scalar paths round alike, so the split changes no result). */
static void thread_share(size_t n, size_t *lo, size_t *hi) {
    const size_t tid = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads(), nvec = n / ML_VW;
    *lo = nvec * tid / nt * ML_VW;
    *hi = tid + 1 == nt ? n : nvec * (tid + 1) / nt * ML_VW;
}

/* Elements per rounding to the bf16 mirror: the block's updated weights are still in L1. */
enum { MIRROR_BLOCK = 512 };

/* One step's constants, rounded as torch rounds them. */
typedef struct {
    float b1, a1, b2, a2, bc2_sqrt, bc2_recip, eps, neg_step;
} adamw_consts;

/* AdamW on n elements of one segment (decay factor d): whole vectors, then the scalar remainder, a mirror block at a
 * time. Kept apart from the threading so that the vector loop is only this (GCC kept the parallel loop's counters on
 * the stack). */
static inline void adamw_range(const adamw_consts *k, float d, float *restrict p, float *restrict m, float *restrict v,
                               const float *restrict g, uint16_t *restrict b16, size_t n) {
    const float b1 = k->b1, a1 = k->a1, b2 = k->b2, a2 = k->a2, bc2_sqrt = k->bc2_sqrt, bc2_recip = k->bc2_recip,
                eps = k->eps, neg_step = k->neg_step;
    (void)bc2_recip; /* the AVX-512 path's */
    for (size_t b0 = 0; b0 < n; b0 += MIRROR_BLOCK) {
        const size_t e = n - b0 < MIRROR_BLOCK ? n : b0 + MIRROR_BLOCK;
        size_t i = b0;
#if ML_VW > 1
        for (; i + ML_VW <= e; i += ML_VW) {
            ml_vf P = VLOAD(p + i), M = VLOAD(m + i), V = VLOAD(v + i), G = VLOAD(g + i);
            ADAMW_UPDATE(P, M, V, G, d, VSET1(a1), VFMA, VSQRT, VDIV_BC2);
            VSTORE(p + i, P);
            VSTORE(m + i, M);
            VSTORE(v + i, V);
        }
#endif
        for (; i < e; i++) {
            float P = p[i], M = m[i], V = v[i], G = g[i];
            ADAMW_UPDATE(P, M, V, G, d, a1, fmaf, sqrtf, SCALAR_DIV_BC2);
            p[i] = P;
            m[i] = M;
            v[i] = V;
        }
        if (b16) ml_bf16_round_row(b16 + b0, p + b0, e - b0);
    }
}

static void adamw_step(ml_optimizer *o, float *params, const float *grads, float lr) {
    const ml_optim_config *c = &o->cfg;
    const double t = (double)o->t;
    const double bc1 = 1.0 - pow(c->beta1, t);
    const double bc2 = 1.0 - pow(c->beta2, t);
    adamw_consts k = {(float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2, (float)(1.0 - c->beta2),
                      (float)sqrt(bc2), 0.0f, (float)c->eps, (float)(-((double)lr / bc1))};
    k.bc2_recip = 1.0f / k.bc2_sqrt;
    const float decay = (float)(1.0 - (double)lr * c->weight_decay);
    const ml_optim_segment *segs = o->segs;
    const int n_segs = o->n_segs;
    float *mm = o->m, *vv = o->v;
    uint16_t *mirror = o->mirror16;

#pragma omp parallel if (total_numel(o) >= ML_OPTIM_PAR_MIN)
    for (int s = 0; s < n_segs; s++) {
        const size_t off = segs[s].offset;
        size_t lo, hi;
        thread_share(segs[s].numel, &lo, &hi);
        adamw_range(&k, segs[s].weight_decay ? decay : 1.0f, params + off + lo, mm + off + lo, vv + off + lo,
                    grads + off + lo, mirror ? mirror + off + lo : NULL, hi - lo);
    }
}

/* torch 1.13 _single_tensor_sgd (dampening 0, no Nesterov):
 *   d = fma(p, (float)wd, g)                         (g.add(p, alpha=wd), decay segments only)
 *   buf = d on the first step, else buf*(float)mu + d
 *   p = fma(d_or_buf, -lr, p)                        (p.add_(d, alpha=-lr)) */
static void sgd_step(ml_optimizer *o, float *params, const float *grads, float lr) {
    const ml_optim_config *c = &o->cfg;
    const float wd = (float)c->weight_decay, mu = (float)c->momentum, nlr = -lr;
    const int first = o->t == 1;
    const ml_optim_segment *segs = o->segs;
    const int n_segs = o->n_segs;
    float *restrict bb = o->m;

#pragma omp parallel if (total_numel(o) >= ML_OPTIM_PAR_MIN)
    for (int s = 0; s < n_segs; s++) {
        size_t lo, hi;
        thread_share(segs[s].numel, &lo, &hi);
        const size_t off = segs[s].offset + lo;
        float *restrict p = params + off, *restrict b = bb ? bb + off : NULL;
        const float *restrict g = grads + off;
        uint16_t *restrict b16 = o->mirror16 ? o->mirror16 + off : NULL;
        const int decays = segs[s].weight_decay && c->weight_decay != 0;
        for (size_t b0 = 0; b0 < hi - lo; b0 += MIRROR_BLOCK) {
            const size_t e = hi - lo - b0 < MIRROR_BLOCK ? hi - lo : b0 + MIRROR_BLOCK;
#pragma omp simd
            for (size_t i = b0; i < e; i++) {
                const float d = decays ? fmaf(p[i], wd, g[i]) : g[i];
                const float bi = !b ? d : first ? d : b[i] * mu + d;
                if (b) b[i] = bi;
                p[i] = fmaf(bi, nlr, p[i]);
            }
            if (b16) ml_bf16_round_row(b16 + b0, p + b0, e - b0);
        }
    }
}

ml_status ml_optim_step(ml_optimizer *o, float *params, const float *grads, float lr) {
    if (!o || !params || !grads) return ml_fail(ML_ERR_ARG, "ml_optim_step: NULL optimizer, parameters or gradients");
    if (!(lr >= 0 && isfinite(lr))) return ml_fail(ML_ERR_ARG, "ml_optim_step: learning rate %g is not finite and >= 0", (double)lr);
    if (o->t == INT64_MAX) return ml_fail(ML_ERR_RANGE, "ml_optim_step: step counter overflow");
    const ml_optim_def *d = ml_optim_def_of(o->cfg.kind);
    if (!d) return ml_fail(ML_ERR_ARG, "ml_optim_step: optimizer kind %d is not registered", (int)o->cfg.kind);
    o->t++;
    d->step(o, params, grads, lr);
    return ML_OK;
}

ml_status ml_optim_step_mirrored(ml_optimizer *o, float *params, const float *grads, float lr, uint16_t *mirror16) {
    if (!o) return ml_fail(ML_ERR_ARG, "ml_optim_step: NULL optimizer");
    o->mirror16 = mirror16;
    const ml_status s = ml_optim_step(o, params, grads, lr);
    o->mirror16 = NULL;
    return s;
}
