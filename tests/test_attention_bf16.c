/* Attention's bf16 tile kernels (model/ops/attention_bf16.c): each kernel this CPU runs, forward and backward,
 * against a double-precision evaluation on the same bf16-rounded q, k, v and dout, over causal, sliding-window,
 * packed and scattered document masks, GQA and plain multi-head, T that is not a multiple of the 64-row tile,
 * head sizes that need padding, and the KV-cached forward (queries after cached keys). A kernel the CPU lacks is
 * skipped with the reason.
 *
 * Bounds. The kernels also round P and dS to bf16 (8 significant bits, relative error <= 2^-9) before their
 * products, so their error against the reference grows like 2^-9 times the size of the summed terms. Per tensor:
 * max |got - ref| <= 1e-2 * max |ref| and rms(got - ref) <= 5e-3 * rms(ref); the measured figures are printed
 * (AVX512-BF16 on Zen 4: max 0.6-3.3e-3, rms 0.9-1.8e-3). The fp32 kernel on the same inputs meets 2e-5, so a bf16 kernel that stopped rounding
 * would still pass these bounds: the test also asserts that its output differs from the fp32 kernel's. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"
#include "tests/support/test_util.h"

static ml_rng rng;

#define MAX_REL 1e-2
#define RMS_REL 5e-3

/* Queries at positions q_start + i of Tk keys; dq/dk/dv only when Tq == Tk (dq etc. may be NULL). */
static void reference(double *out, double *dq, double *dk, double *dv, const float *q, const float *k, const float *v,
                      const float *dout, const int32_t *doc, int B, int Tq, int Tk, int H, int KV, int hd, int window) {
    const int group = H / KV, q_start = Tk - Tq;
    const double scale = 1.0 / sqrt((double)hd);
    double *p = malloc(sizeof(double) * Tk), *dp = malloc(sizeof(double) * Tk);
    if (dk)
        for (size_t i = 0; i < (size_t)B * Tk * KV * hd; i++) dk[i] = dv[i] = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                const int t = q_start + i;
                const float *qr = q + (((size_t)b * Tq + i) * H + h) * hd;
                double mx = -INFINITY, sum = 0, D = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] = -INFINITY;
                    if (window > 0 && t - j >= window) continue;
                    if (doc && doc[b * Tk + j] != doc[b * Tk + t]) continue;
                    const float *kr = k + (((size_t)b * Tk + j) * KV + h / group) * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)qr[d] * kr[d];
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += p[j] = exp(p[j] - mx);
                double *o = out + (((size_t)b * Tq + i) * H + h) * hd;
                for (int d = 0; d < hd; d++) o[d] = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] /= sum;
                    const float *vr = v + (((size_t)b * Tk + j) * KV + h / group) * hd;
                    for (int d = 0; d < hd; d++) o[d] += p[j] * vr[d];
                }
                if (!dq) continue;
                const float *dor = dout + (((size_t)b * Tq + i) * H + h) * hd;
                for (int j = 0; j <= t; j++) {
                    const float *vr = v + (((size_t)b * Tk + j) * KV + h / group) * hd;
                    dp[j] = 0;
                    for (int d = 0; d < hd; d++) dp[j] += (double)dor[d] * vr[d];
                }
                for (int d = 0; d < hd; d++) D += o[d] * dor[d];
                double *dqr = dq + (((size_t)b * Tq + i) * H + h) * hd;
                for (int d = 0; d < hd; d++) dqr[d] = 0;
                for (int j = 0; j <= t; j++) {
                    const size_t kv = (((size_t)b * Tk + j) * KV + h / group) * hd;
                    const double ds = p[j] * (dp[j] - D) * scale;
                    for (int d = 0; d < hd; d++) {
                        dqr[d] += ds * k[kv + d];
                        dk[kv + d] += ds * qr[d];
                        dv[kv + d] += p[j] * dor[d];
                    }
                }
            }
    free(p), free(dp);
}

static void check(const char *what, const char *kname, const float *got, const double *want, size_t n) {
    double mx = 0, ss = 0, err_mx = 0, err_ss = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = got[i] - want[i];
        if (!isfinite(got[i])) fail_msg("%s %s[%zu] is %f", kname, what, i, got[i]);
        mx = fmax(mx, fabs(want[i])), ss += want[i] * want[i];
        err_mx = fmax(err_mx, fabs(e)), err_ss += e * e;
    }
    const double rel_max = err_mx / mx, rel_rms = sqrt(err_ss / ss);
    printf("  %-11s %-3s max %.2e rms %.2e (relative to the reference's max and rms)\n", kname, what, rel_max, rel_rms);
    if (rel_max > MAX_REL || rel_rms > RMS_REL)
        fail_msg("%s %s: max error %.3e of max |ref|, rms error %.3e of rms (bounds %.0e, %.0e)", kname, what, rel_max,
                 rel_rms, MAX_REL, RMS_REL);
}

static float *rounded(size_t n) {
    float *x = ml_test_randn(&rng, n, 1);
    for (size_t i = 0; i < n; i++) x[i] = ml_bf16_round(x[i]);
    return x;
}

static int differs(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 1;
    return 0;
}

typedef struct {
    int B, Tq, Tk, H, KV, hd, window, doc; /* doc: 0 none, 1 packed documents, 2 ids that go back */
} att_case;

static void run_case(ml_attn_kernel kern, const att_case *c) {
    const int B = c->B, Tq = c->Tq, Tk = c->Tk, H = c->H, KV = c->KV, hd = c->hd;
    const size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * KV * hd;
    int32_t *doc = NULL;
    if (c->doc) {
        doc = malloc(sizeof(int32_t) * B * Tk);
        for (int t = 0; t < B * Tk; t++) {
            const int pos = t % Tk;
            doc[t] = c->doc == 1 ? (pos < 37 ? 3 : pos < 127 ? 4 : 9) : (pos / 50) % 2 + (pos > 180 ? 7 : 0);
        }
    }
    printf("%s: B %d Tq %d Tk %d H %d KV %d hd %d window %d doc %d\n", ml_attn_kernel_name(kern), B, Tq, Tk, H, KV, hd,
           c->window, c->doc);
    float *q = rounded(nq), *k = rounded(nk), *v = rounded(nk), *dout = rounded(nq);
    float *out = malloc(nq * 4), *o32 = malloc(nq * 4), *lse = malloc((size_t)B * H * Tq * 4);
    double *rout = malloc(nq * 8);
    ml_attn_dims d = {B, Tq, Tk, Tk - Tq, H, KV, hd, c->window, kern};
    ml_attention_forward(out, lse, q, k, v, doc, &d, NULL);
    d.kernel = ML_ATTN_FP32;
    ml_attention_forward(o32, lse, q, k, v, doc, &d, NULL);
    assert_true(differs(out, o32, nq)); /* the bf16 products ran */
    const int train = Tq == Tk;
    double *rdq = NULL, *rdk = NULL, *rdv = NULL;
    if (train) rdq = malloc(nq * 8), rdk = malloc(nk * 8), rdv = malloc(nk * 8);
    reference(rout, rdq, rdk, rdv, q, k, v, dout, doc, B, Tq, Tk, H, KV, hd, c->window);
    check("out", ml_attn_kernel_name(kern), out, rout, nq);
    if (train) {
        float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
        d.kernel = kern;
        ml_attention_forward(out, lse, q, k, v, doc, &d, NULL); /* the backward reads this kernel's out and lse */
        ml_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, doc, &d, NULL);
        check("dq", ml_attn_kernel_name(kern), dq, rdq, nq);
        check("dk", ml_attn_kernel_name(kern), dk, rdk, nk);
        check("dv", ml_attn_kernel_name(kern), dv, rdv, nk);
        free(dq), free(dk), free(dv);
    }
    free(q), free(k), free(v), free(dout), free(out), free(o32), free(lse), free(rout), free(rdq), free(rdk), free(rdv);
    free(doc);
}

static const att_case cases[] = {
    {2, 203, 203, 6, 2, 64, 0, 0},   /* causal GQA, ragged T */
    {2, 203, 203, 6, 2, 64, 70, 0},  /* sliding window */
    {2, 203, 203, 6, 2, 64, 130, 1}, /* packed documents (tiles skipped) with a window */
    {2, 203, 203, 6, 2, 64, 0, 2},   /* document ids that go back (no skipping) */
    {1, 130, 130, 3, 3, 24, 0, 0},   /* multi-head, head size padded to 32 */
    {1, 64, 64, 4, 1, 40, 0, 1},     /* one full tile, head size padded to 64 */
    {2, 1, 203, 6, 2, 64, 0, 0},     /* KV-cached: one query after 202 cached keys */
    {1, 17, 203, 6, 2, 64, 50, 0},   /* KV-cached chunk with a window */
    {1, 70, 150, 4, 2, 32, 0, 0},    /* KV-cached chunk over two query tiles */
};

static void run_kernel(ml_attn_kernel kern) {
    if (!ml_attn_kernel_available(kern))
        ML_SKIP("attention kernel %s: this CPU %s", ml_attn_kernel_name(kern),
                kern == ML_ATTN_AMX ? "has no AMX-BF16 (or Linux refused the tile state)" : "has no AVX512-BF16");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(kern, &cases[i]);
}

static void test_avx512bf16(void **state) { run_kernel(ML_ATTN_AVX512BF16); }
static void test_amx(void **state) { run_kernel(ML_ATTN_AMX); }

/* The gradients of a bf16 kernel against the fp32 kernel's on unrounded inputs: what training sees. */
static void test_bf16_gradients_vs_fp32(void **state) {
    ml_attn_kernel kern;
    assert_int_equal(ml_attn_kernel_resolve(1, &kern), ML_OK);
    if (kern == ML_ATTN_FP32) ML_SKIP("no bf16 attention kernel on this CPU");
    const int B = 2, T = 160, H = 6, KV = 2, hd = 64;
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *q = ml_test_randn(&rng, nq, 1), *k = ml_test_randn(&rng, nk, 1), *v = ml_test_randn(&rng, nk, 1),
          *dout = ml_test_randn(&rng, nq, 1);
    float *out[2], *lse[2], *g[2][3];
    for (int r = 0; r < 2; r++) {
        ml_attn_dims d = {B, T, T, 0, H, KV, hd, 0, r ? kern : ML_ATTN_FP32};
        out[r] = malloc(nq * 4), lse[r] = malloc((size_t)B * H * T * 4);
        g[r][0] = malloc(nq * 4), g[r][1] = malloc(nk * 4), g[r][2] = malloc(nk * 4);
        ml_attention_forward(out[r], lse[r], q, k, v, NULL, &d, NULL);
        ml_attention_backward(g[r][0], g[r][1], g[r][2], dout, out[r], lse[r], q, k, v, NULL, &d, NULL);
    }
    const char *names[3] = {"dq", "dk", "dv"};
    const size_t n[3] = {nq, nk, nk};
    for (int t = 0; t < 3; t++) {
        double dot = 0, n0 = 0, n1 = 0, nd = 0;
        for (size_t i = 0; i < n[t]; i++) {
            const double a = g[0][t][i], b = g[1][t][i];
            dot += a * b, n0 += a * a, n1 += b * b, nd += (b - a) * (b - a);
        }
        const double cosv = dot / sqrt(n0 * n1), rel = sqrt(nd / n0);
        printf("%s against fp32: %s cosine %.6f, relative rms difference %.2e\n", ml_attn_kernel_name(kern), names[t],
               cosv, rel);
        if (cosv < 0.9999 || rel > 1e-2) fail_msg("%s: cosine %.6f, relative difference %.3e", names[t], cosv, rel);
    }
    for (int r = 0; r < 2; r++) free(out[r]), free(lse[r]), free(g[r][0]), free(g[r][1]), free(g[r][2]);
    free(q), free(k), free(v), free(dout);
}

/* ML_ATTN_KERNEL forces a kernel in bf16 precision only, and a bad name or an absent kernel fails. */
static void test_kernel_choice(void **state) {
    ml_attn_kernel k;
    setenv("ML_ATTN_KERNEL", "fp32", 1);
    assert_int_equal(ml_attn_kernel_resolve(1, &k), ML_OK);
    assert_int_equal(k, ML_ATTN_FP32);
    setenv("ML_ATTN_KERNEL", "amx", 1);
    assert_int_equal(ml_attn_kernel_resolve(0, &k), ML_OK); /* fp32 precision: always fp32 */
    assert_int_equal(k, ML_ATTN_FP32);
    assert_int_equal(ml_attn_kernel_resolve(1, &k) == ML_OK, ml_attn_kernel_available(ML_ATTN_AMX));
    setenv("ML_ATTN_KERNEL", "tensor-cores", 1);
    assert_int_not_equal(ml_attn_kernel_resolve(1, &k), ML_OK);
    unsetenv("ML_ATTN_KERNEL");
    assert_int_equal(ml_attn_kernel_resolve(1, &k), ML_OK);
    assert_int_equal(k, ml_attn_kernel_available(ML_ATTN_AMX)           ? ML_ATTN_AMX
                        : ml_attn_kernel_available(ML_ATTN_AVX512BF16) ? ML_ATTN_AVX512BF16
                                                                       : ML_ATTN_FP32);
}

/* Two ctest entries: this program as is, and with ML_ATTN_TEST_AMX=1 (test_attention_amx) the AMX kernel alone, so
 * that a CPU without AMX skips exactly that entry and says why. */
int main(void) {
    ml_rng_seed(&rng, 4321);
    const char *amx_only = getenv("ML_ATTN_TEST_AMX");
    if (amx_only && !strcmp(amx_only, "1")) {
        const struct CMUnitTest amx[] = {cmocka_unit_test(test_amx)};
        return ml_test_exit(cmocka_run_group_tests(amx, NULL, NULL));
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avx512bf16),
        cmocka_unit_test(test_bf16_gradients_vs_fp32),
        cmocka_unit_test(test_kernel_choice),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
