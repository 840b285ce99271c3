#include "distill/kd_loss.h"

#include <math.h>
#include <string.h>

static const char *const kind_names[] = {"fkl", "rkl", "jsd"};

ml_status ml_kd_kind_parse(const char *name, ml_kd_kind *kind) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, kind_names[i])) {
            *kind = (ml_kd_kind)i;
            return ML_OK;
        }
    return ml_fail(ML_ERR_ARG, "unknown distillation loss '%s' (expected fkl, rkl or jsd)", name);
}

const char *ml_kd_kind_name(ml_kd_kind kind) { return kind_names[kind]; }

ml_status ml_kd_config_check(const ml_kd_config *c) {
    if (!(c->temperature > 0) || !isfinite(c->temperature))
        return ml_fail(ML_ERR_ARG, "--temperature must be positive, not %g", c->temperature);
    if (!(c->ce_weight >= 0 && c->ce_weight <= 1))
        return ml_fail(ML_ERR_ARG, "--ce-weight must be in [0, 1], not %g", c->ce_weight);
    if (c->kind == ML_KD_JSD && !(c->beta > 0 && c->beta < 1))
        return ml_fail(ML_ERR_ARG, "--beta must be in (0, 1) for jsd, not %g", c->beta);
    return ML_OK;
}

/* log-sum-exp of x * scale, in double for long rows */
static double lse_scaled(const float *x, int V, float scale) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, x[v] * scale);
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)(x[v] * scale - mx));
    return mx + log(sum);
}

void ml_kd_rows(float *zs, float *zt, float *kd, float *ce, const int32_t *targets, int n, int V,
                const ml_kd_config *c, float grad_scale) {
    const float inv_tau = 1.0f / c->temperature, tau = c->temperature;
    const float w_kd = 1.0f - c->ce_weight, w_ce = c->ce_weight, beta = c->beta;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *s = zs + (int64_t)r * V, *t = zt + (int64_t)r * V;
        int y = targets[r];
        if (y < 0) {
            kd[r] = ce[r] = 0.0f;
            if (grad_scale != 0.0f) memset(s, 0, sizeof(float) * (size_t)V);
            continue;
        }
        const double lse_s = lse_scaled(s, V, inv_tau), lse_t = lse_scaled(t, V, inv_tau);
        const double lse_ce = w_ce > 0 ? lse_scaled(s, V, 1.0f) : 0.0;
        ce[r] = (float)(lse_ce - s[y]);
        /* pass 1: the divergence (and the row scalar its gradient needs) */
        double div = 0, S = 0;
        for (int v = 0; v < V; v++) {
            double lps = s[v] * inv_tau - lse_s, lpt = t[v] * inv_tau - lse_t;
            double ps = exp(lps), pt = exp(lpt);
            if (c->kind == ML_KD_FKL) {
                div += pt * (lpt - lps);
            } else if (c->kind == ML_KD_RKL) {
                div += ps * (lps - lpt);
            } else {
                double m = beta * pt + (1 - beta) * ps;
                if (m > 0) {
                    double lm = log(m);
                    double a = pt > 0 ? pt * (lpt - lm) : 0.0, b = ps > 0 ? ps * (lps - lm) : 0.0;
                    div += beta * a + (1 - beta) * b;
                    S += b;
                }
            }
        }
        if (c->kind == ML_KD_RKL) S = div;
        kd[r] = (float)(tau * tau * div);
        if (grad_scale == 0.0f) continue;
        /* pass 2: gradient in place (each element reads only its own logits) */
        const double g_kd = grad_scale * w_kd * tau * tau * inv_tau, g_ce = grad_scale * w_ce;
        for (int v = 0; v < V; v++) {
            double lps = s[v] * inv_tau - lse_s, lpt = t[v] * inv_tau - lse_t;
            double ps = exp(lps), pt = exp(lpt), g;
            if (c->kind == ML_KD_FKL) {
                g = ps - pt;
            } else if (c->kind == ML_KD_RKL) {
                g = ps * (lps - lpt - S);
            } else {
                double m = beta * pt + (1 - beta) * ps;
                g = (m > 0 && ps > 0) ? (1 - beta) * ps * (lps - log(m) - S) : 0.0;
            }
            double gv = g_kd * g;
            if (w_ce > 0) gv += g_ce * (exp(s[v] - lse_ce) - (v == y));
            s[v] = (float)gv;
        }
    }
}
