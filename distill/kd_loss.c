#include "distill/kd_loss.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/vmath.h"

/* log-sum-exp of x * scale, in double for long rows */
static double lse_scaled(const float *x, int V, float scale) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, x[v] * scale);
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)(x[v] * scale - mx));
    return mx + log(sum);
}

/* ---------------------------------------------------------------- dense targets, per divergence
 * Each divergence gives three inline pieces over one vocabulary entry (log-probabilities lps, lpt and
 * probabilities ps, pt of student and teacher at tau; beta stays a float, as the row's arithmetic
 * always had it): its term of D (accumulating the row scalar S its
 * gradient needs), the final S from (D, S), and dD/dz_s * tau at the entry. KD_DENSE_ROWS expands the
 * two-pass row loop around them, one function per divergence (no per-element dispatch). */

static inline double fkl_div(double lps, double lpt, double ps, double pt, float beta, double *S) {
    return pt * (lpt - lps);
}
static inline double fkl_S(double div, double S) { return S; }
static inline double fkl_grad(double lps, double lpt, double ps, double pt, float beta, double S) { return ps - pt; }

static inline double rkl_div(double lps, double lpt, double ps, double pt, float beta, double *S) {
    return ps * (lps - lpt);
}
static inline double rkl_S(double div, double S) { return div; }
static inline double rkl_grad(double lps, double lpt, double ps, double pt, float beta, double S) {
    return ps * (lps - lpt - S);
}

static inline double jsd_div(double lps, double lpt, double ps, double pt, float beta, double *S) {
    double m = beta * pt + (1 - beta) * ps;
    if (!(m > 0)) return 0.0;
    double lm = log(m);
    double a = pt > 0 ? pt * (lpt - lm) : 0.0, b = ps > 0 ? ps * (lps - lm) : 0.0;
    *S += b;
    return beta * a + (1 - beta) * b;
}
static inline double jsd_S(double div, double S) { return S; }
static inline double jsd_grad(double lps, double lpt, double ps, double pt, float beta, double S) {
    double m = beta * pt + (1 - beta) * ps;
    return (m > 0 && ps > 0) ? (1 - beta) * ps * (lps - log(m) - S) : 0.0;
}

#define KD_DENSE_ROWS(NAME)                                                                                     \
    static void NAME##_rows(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,   \
                            const ml_kd_config *c, float grad_scale) {                                          \
        const float inv_tau = 1.0f / c->temperature, tau = c->temperature;                                     \
        const float w_kd = 1.0f - c->ce_weight, w_ce = c->ce_weight, beta = c->beta;                           \
        _Pragma("omp parallel for schedule(static)") for (int r = 0; r < n; r++) {                              \
            float *s = zs + (int64_t)r * V, *t = zt + (int64_t)r * V;                                           \
            int y = targets[r];                                                                                 \
            if (y < 0) {                                                                                        \
                kd[r] = ce[r] = 0.0f;                                                                           \
                if (grad_scale != 0.0f) memset(s, 0, sizeof(float) * (size_t)V);                                \
                continue;                                                                                       \
            }                                                                                                   \
            const double lse_s = lse_scaled(s, V, inv_tau), lse_t = lse_scaled(t, V, inv_tau);                  \
            const double lse_ce = lse_scaled(s, V, 1.0f); /* cross-entropy is reported even when not mixed in */ \
            ce[r] = (float)(lse_ce - s[y]);                                                                     \
            /* pass 1: the divergence (and the row scalar its gradient needs) */                               \
            double div = 0, S = 0;                                                                              \
            for (int v = 0; v < V; v++) {                                                                       \
                double lps = s[v] * inv_tau - lse_s, lpt = t[v] * inv_tau - lse_t;                              \
                div += NAME##_div(lps, lpt, exp(lps), exp(lpt), beta, &S);                                      \
            }                                                                                                   \
            S = NAME##_S(div, S);                                                                               \
            kd[r] = (float)(tau * tau * div);                                                                   \
            if (grad_scale == 0.0f) continue;                                                                   \
            /* pass 2: gradient in place (each element reads only its own logits) */                           \
            const double g_kd = grad_scale * w_kd * tau * tau * inv_tau, g_ce = grad_scale * w_ce;              \
            for (int v = 0; v < V; v++) {                                                                       \
                double lps = s[v] * inv_tau - lse_s, lpt = t[v] * inv_tau - lse_t;                              \
                double gv = g_kd * NAME##_grad(lps, lpt, exp(lps), exp(lpt), beta, S);                          \
                if (w_ce > 0) gv += g_ce * (exp(s[v] - lse_ce) - (v == y));                                     \
                s[v] = (float)gv;                                                                               \
            }                                                                                                   \
        }                                                                                                       \
    }

KD_DENSE_ROWS(fkl)
KD_DENSE_ROWS(rkl)
KD_DENSE_ROWS(jsd)

/* ---------------------------------------------------------------- sparse targets, per divergence
 * One category c with teacher q and student P: its term of D, h_c = P_c g_c and g_c = dD/dP_c. */

static void fkl_category(double q, double lq, double P, double lP, double beta, double *div, double *h, double *g) {
    if (q > 0) *div += q * (lq - lP);
    *h = -q;
    *g = -q / P;
}

static void rkl_category(double q, double lq, double P, double lP, double beta, double *div, double *h, double *g) {
    *div += P * (lP - lq);
    *g = lP - lq + 1.0;
    *h = P * *g;
}

static void jsd_category(double q, double lq, double P, double lP, double beta, double *div, double *h, double *g) {
    const double m = beta * q + (1 - beta) * P, lm = log(m);
    if (q > 0) *div += beta * q * (lq - lm);
    if (P > 0) *div += (1 - beta) * P * (lP - lm);
    *g = m > 0 ? (1 - beta) * (lP - lm) : 0.0;
    *h = P * *g;
}

static ml_status jsd_check(const ml_kd_config *c) {
    if (!(c->beta > 0 && c->beta < 1)) return ml_fail(ML_ERR_ARG, "--beta must be in (0, 1) for jsd, not %g", c->beta);
    return ML_OK;
}

/* The registry: one row per divergence; its index is the ml_kd_kind. */
static const ml_kd_loss_def registry[] = {
    {"fkl", fkl_rows, fkl_category, NULL},
    {"rkl", rkl_rows, rkl_category, NULL},
    {"jsd", jsd_rows, jsd_category, jsd_check},
};
#define N_KINDS ((int)(sizeof registry / sizeof registry[0]))

int ml_kd_num_kinds(void) { return N_KINDS; }

const ml_kd_loss_def *ml_kd_loss_def_of(ml_kd_kind kind) {
    return (int)kind >= 0 && (int)kind < N_KINDS ? &registry[kind] : NULL;
}

ml_status ml_kd_kind_parse(const char *name, ml_kd_kind *kind) {
    char names[256] = "";
    for (int i = 0; i < N_KINDS; i++) {
        if (!strcmp(name, registry[i].name)) {
            *kind = (ml_kd_kind)i;
            return ML_OK;
        }
        size_t k = strlen(names);
        snprintf(names + k, sizeof names - k, "%s%s", i == 0 ? "" : i == N_KINDS - 1 ? " or " : ", ", registry[i].name);
    }
    return ml_fail(ML_ERR_ARG, "unknown distillation loss '%s' (expected %s)", name, names);
}

const char *ml_kd_kind_name(ml_kd_kind kind) {
    const ml_kd_loss_def *d = ml_kd_loss_def_of(kind);
    return d ? d->name : "unknown";
}

ml_status ml_kd_config_check(const ml_kd_config *c) {
    const ml_kd_loss_def *d = ml_kd_loss_def_of(c->kind);
    if (!d) return ml_fail(ML_ERR_ARG, "distillation loss kind %d is not registered", (int)c->kind);
    if (!(c->temperature > 0) || !isfinite(c->temperature))
        return ml_fail(ML_ERR_ARG, "--temperature must be positive, not %g", c->temperature);
    if (!(c->ce_weight >= 0 && c->ce_weight <= 1))
        return ml_fail(ML_ERR_ARG, "--ce-weight must be in [0, 1], not %g", c->ce_weight);
    return d->check ? d->check(c) : ML_OK;
}

void ml_kd_rows(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,
                const ml_kd_config *c, float grad_scale) {
    registry[c->kind].rows(zs, zt, kd, ce, targets, n, V, c, grad_scale);
}

/* ---------------------------------------------------------------- sparse (top-K) targets */

static const char *const tail_names[] = {"renorm", "bucket"};

ml_status ml_kd_tail_parse(const char *name, ml_kd_tail *tail) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, tail_names[i])) {
            *tail = (ml_kd_tail)i;
            return ML_OK;
        }
    return ml_fail(ML_ERR_ARG, "unknown tail mode '%s' (expected renorm or bucket)", name);
}

const char *ml_kd_tail_name(ml_kd_tail tail) { return tail_names[tail]; }

void ml_kd_sparse_rows(float *zs, const int32_t *ids, const float *lt, const float *tail, int K, float *kd, float *ce,
                       const int32_t *targets, int n, int V, const ml_kd_config *c, ml_kd_tail mode,
                       float grad_scale) {
    const float inv_tau = 1.0f / c->temperature, tau = c->temperature;
    const double w_kd = 1.0 - c->ce_weight, w_ce = c->ce_weight, beta = c->beta;
    const int bucket = mode == ML_KD_TAIL_BUCKET, nc = K + bucket; /* categories */
    const int tau_one = c->temperature == 1.0f;
    void (*const category)(double, double, double, double, double, double *, double *, double *) =
        registry[c->kind].category;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *s = zs + (int64_t)r * V;
        const int32_t *id = ids + (int64_t)r * K;
        const float *lq_in = lt + (int64_t)r * K;
        const int y = targets[r];
        if (y < 0) {
            kd[r] = ce[r] = 0.0f;
            if (grad_scale != 0.0f) memset(s, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float zk[ML_KD_MAX_TOPK];
        double lq[ML_KD_MAX_TOPK + 1], lP[ML_KD_MAX_TOPK + 1], h[ML_KD_MAX_TOPK + 1];
        for (int k = 0; k < K; k++) zk[k] = s[id[k]];
        const float zy = s[y];
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int v = 0; v < V; v++) mx = s[v] > mx ? s[v] : mx;
        /* student: sum of exp((z - max) / tau), kept per element when the gradient needs it and the
         * softmax at tau also serves cross-entropy */
        const int store = grad_scale != 0.0f && (tau_one || w_ce == 0);
        float sum_s = 0.0f, sum_c = 0.0f;
        /* cross-entropy is always reported; at tau = 1 it shares the student's sum */
        if (!tau_one) sum_c = ml_exp_shifted(NULL, s, mx, V);
        sum_s = ml_exp_scaled(store ? s : NULL, s, mx, inv_tau, V);
        if (tau_one) sum_c = sum_s;
        const double log_sum_s = log((double)sum_s);
        const double lse_ce = mx + log((double)sum_c);
        ce[r] = (float)(lse_ce - zy);
        /* student categories */
        double sumP = 0;
        for (int k = 0; k < K; k++) {
            lP[k] = (double)(zk[k] - mx) * inv_tau - log_sum_s;
            sumP += exp(lP[k]);
        }
        if (bucket) lP[K] = log(fmax(1.0 - sumP, 1e-20));
        /* teacher categories, re-tempered and normalised */
        double amax = -INFINITY;
        for (int k = 0; k < K; k++) amax = fmax(amax, lq[k] = (double)lq_in[k] * inv_tau);
        if (bucket) amax = fmax(amax, lq[K] = tail[r] > 0 ? log((double)tail[r]) * inv_tau : -INFINITY);
        double sq = 0;
        for (int i = 0; i < nc; i++) sq += exp(lq[i] - amax);
        const double lse_q = amax + log(sq);
        for (int i = 0; i < nc; i++) lq[i] -= lse_q;
        /* divergence, h_c = P_c dD/dP_c and its sum */
        double div = 0, G = 0, g_rest = 0;
        for (int i = 0; i < nc; i++) {
            double g;
            category(exp(lq[i]), lq[i], exp(lP[i]), lP[i], beta, &div, &h[i], &g);
            G += h[i];
            if (i == K) g_rest = g;
        }
        kd[r] = (float)(tau * tau * div);
        if (grad_scale == 0.0f) continue;
        /* gradient: every entry as the rest category, then the K ids and the target fixed up */
        const double A = grad_scale * w_kd * tau; /* tau^2 / tau */
        const double B = grad_scale * w_ce;
        const float a_rest = (float)(A * (g_rest - G) / sum_s);
        if (store) {
            const float b = (float)(B / sum_s), coef = a_rest + (tau_one ? b : 0.0f);
            for (int v = 0; v < V; v++) s[v] *= coef;
        } else { /* cross-entropy at tau = 1 next to a divergence at another temperature */
            const float b = (float)(B / sum_c);
            for (int v = 0; v < V; v++) {
                const float d = s[v] - mx;
                s[v] = a_rest * expf(d * inv_tau) + b * expf(d);
            }
        }
        for (int k = 0; k < K; k++) {
            const double P = exp(lP[k]);
            double gv = A * (h[k] - P * G);
            if (w_ce > 0) gv += B * exp((double)zk[k] - lse_ce);
            s[id[k]] = (float)gv;
        }
        s[y] -= (float)B;
    }
}
