/* Finite-difference checks of every kernel's backward against its forward.
 * Each test defines a scalar L = sum(out * R) for a fixed random R, perturbs input entries by
 * +-eps and compares (L+ - L-)/(2 eps) with the analytic gradient. fp32 arithmetic limits the
 * agreement: tolerance |num - ana| <= 2e-3 + 2e-2 * |ana| (eps 1e-2 on O(1) inputs). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "common/vmath.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"
#include "tests/support/test_util.h"

static ml_rng rng;

static double dotd(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* forward callback: computes L for the current inputs */
typedef double (*loss_fn)(void *ctx);

static void check_grad(const char *what, loss_fn f, void *ctx, float *x, const float *grad, size_t n, int samples) {
    const float eps = 1e-2f;
    int worst = -1;
    double worst_err = 0;
    for (int s = 0; s < samples; s++) {
        size_t i = samples >= (int)n ? (size_t)s : (size_t)ml_rng_below(&rng, n);
        if (i >= n) break;
        float orig = x[i];
        x[i] = orig + eps;
        double lp = f(ctx);
        x[i] = orig - eps;
        double lm = f(ctx);
        x[i] = orig;
        double num = (lp - lm) / (2 * eps), ana = grad[i];
        double err = fabs(num - ana) - (2e-3 + 2e-2 * fabs(ana));
        if (err > worst_err || worst < 0) {
            worst_err = err;
            worst = (int)i;
        }
        if (err > 0) fail_msg("%s: index %zu numeric %.6f analytic %.6f", what, i, num, ana);
    }
}

/* ---------------------------------------------------------------- matmul */
typedef struct {
    int N, in, out;
    float *x, *w, *y, *R;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    ml_matmul_forward(c->y, c->x, c->w, c->N, c->in, c->out);
    return dotd(c->y, c->R, (size_t)c->N * c->out);
}

static void test_matmul(void **state) {
    mm_ctx c = {.N = 7, .in = 13, .out = 5};
    c.x = ml_test_randn(&rng, (size_t)c.N * c.in, 1);
    c.w = ml_test_randn(&rng, (size_t)c.out * c.in, 1);
    c.y = ml_test_randn(&rng, (size_t)c.N * c.out, 1);
    c.R = ml_test_randn(&rng, (size_t)c.N * c.out, 1);
    float *dx = calloc((size_t)c.N * c.in, 4), *dw = calloc((size_t)c.out * c.in, 4);
    ml_matmul_backward(dx, dw, c.R, c.x, c.w, c.N, c.in, c.out, 0);
    check_grad("matmul dx", mm_loss, &c, c.x, dx, (size_t)c.N * c.in, 1000);
    check_grad("matmul dw", mm_loss, &c, c.w, dw, (size_t)c.out * c.in, 1000);
    /* accumulate flag adds instead of overwriting */
    float *dx2 = malloc((size_t)c.N * c.in * 4);
    for (int i = 0; i < c.N * c.in; i++) dx2[i] = 1.0f;
    ml_matmul_backward(dx2, NULL, c.R, c.x, c.w, c.N, c.in, c.out, 1);
    for (int i = 0; i < c.N * c.in; i++) assert_float_equal(dx2[i], dx[i] + 1.0f, 1e-4);
    free(dx), free(dw), free(dx2), free(c.x), free(c.w), free(c.y), free(c.R);
}

/* ---------------------------------------------------------------- embedding */
typedef struct {
    int N, C, V;
    int32_t *tok;
    float *table, *out, *R;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    ml_embedding_forward(c->out, c->tok, c->table, c->N, c->C);
    return dotd(c->out, c->R, (size_t)c->N * c->C);
}

static void test_embedding(void **state) {
    emb_ctx c = {.N = 9, .C = 37, .V = 5};
    int32_t tok[9] = {0, 3, 3, 1, 4, 3, 0, 2, 3}; /* repeats exercise accumulation */
    c.tok = tok;
    c.table = ml_test_randn(&rng, (size_t)c.V * c.C, 1);
    c.out = ml_test_randn(&rng, (size_t)c.N * c.C, 1);
    c.R = ml_test_randn(&rng, (size_t)c.N * c.C, 1);
    float *dt = calloc((size_t)c.V * c.C, 4);
    ml_embedding_backward(dt, c.R, c.tok, c.N, c.C);
    check_grad("embedding", emb_loss, &c, c.table, dt, (size_t)c.V * c.C, 1000);
    free(dt), free(c.table), free(c.out), free(c.R);
}

/* ---------------------------------------------------------------- rmsnorm */
typedef struct {
    int N, C;
    float *x, *w, *y, *rstd, *R;
} rn_ctx;

static double rn_loss(void *p) {
    rn_ctx *c = p;
    ml_rmsnorm_forward(c->y, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
    return dotd(c->y, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm(void **state) {
    rn_ctx c = {.N = 6, .C = 40};
    c.x = ml_test_randn(&rng, (size_t)c.N * c.C, 1);
    c.w = ml_test_randn(&rng, (size_t)c.C, 1);
    c.y = malloc((size_t)c.N * c.C * 4);
    c.rstd = malloc((size_t)c.N * 4);
    c.R = ml_test_randn(&rng, (size_t)c.N * c.C, 1);
    rn_loss(&c);
    float *dx = calloc((size_t)c.N * c.C, 4), *dw = calloc((size_t)c.C, 4);
    ml_rmsnorm_backward(dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    check_grad("rmsnorm dx", rn_loss, &c, c.x, dx, (size_t)c.N * c.C, 1000);
    check_grad("rmsnorm dw", rn_loss, &c, c.w, dw, (size_t)c.C, 1000);
    free(dx), free(dw), free(c.x), free(c.w), free(c.y), free(c.rstd), free(c.R);
}

/* ---------------------------------------------------------------- rope (both pairings) + headnorm */
typedef struct {
    int N, T, heads, hd, half_split, norm;
    int32_t *pos;
    float *x, *y, *rstd, *R, *cos_t, *sin_t;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->heads * c->hd;
    memcpy(c->y, c->x, n * 4);
    ml_rope_apply(c->y, c->pos, c->cos_t, c->sin_t, c->N, c->T, c->heads, c->hd, c->half_split, 0);
    if (c->norm) ml_headnorm_forward(c->y, c->rstd, c->N, c->heads, c->hd, 1e-5f);
    return dotd(c->y, c->R, n);
}

static void run_rope(int half_split, int norm, int with_pos) {
    rope_ctx c = {.N = 6, .T = 3, .heads = 3, .hd = 8, .half_split = half_split, .norm = norm};
    int32_t pos[6] = {5, 0, 17, 2, 9, 30};
    c.pos = with_pos ? pos : NULL;
    size_t n = (size_t)c.N * c.heads * c.hd;
    c.cos_t = malloc(32 * 4 * 4);
    c.sin_t = malloc(32 * 4 * 4);
    ml_rope_table(c.cos_t, c.sin_t, 32, c.hd, 10000.0f);
    c.x = ml_test_randn(&rng, n, 1);
    c.y = malloc(n * 4);
    c.rstd = malloc((size_t)c.N * c.heads * 4);
    c.R = ml_test_randn(&rng, n, 1);
    rope_loss(&c);
    float *d = malloc(n * 4);
    memcpy(d, c.R, n * 4);
    if (norm) ml_headnorm_backward(d, c.y, c.rstd, c.N, c.heads, c.hd);
    ml_rope_apply(d, c.pos, c.cos_t, c.sin_t, c.N, c.T, c.heads, c.hd, c.half_split, 1);
    check_grad(half_split ? "rope half-split" : "rope adjacent", rope_loss, &c, c.x, d, n, 1000);
    free(d), free(c.x), free(c.y), free(c.rstd), free(c.R), free(c.cos_t), free(c.sin_t);
}

static void test_rope(void **state) {
    run_rope(1, 0, 0);
    run_rope(0, 0, 1);
    run_rope(1, 1, 1); /* QK-norm after RoPE */
    run_rope(0, 1, 0);
}

/* Known values: a rotation by angle p*inv_freq of pairs (i, i+hd/2) vs (2i, 2i+1). */
static void test_rope_pairings(void **state) {
    float cos_t[4 * 2], sin_t[4 * 2];
    ml_rope_table(cos_t, sin_t, 4, 4, 100.0f);
    /* hd=4: inv_freq = {1, 0.1}; position 1 */
    float x[4] = {1, 2, 3, 4}, y[4];
    int32_t pos[1] = {1};
    memcpy(y, x, sizeof x);
    ml_rope_apply(y, pos, cos_t, sin_t, 1, 1, 1, 4, 1, 0);
    /* half split pairs (0,2) angle 1 and (1,3) angle 0.1 */
    assert_float_equal(y[0], 1 * cosf(1) - 3 * sinf(1), 1e-6);
    assert_float_equal(y[2], 3 * cosf(1) + 1 * sinf(1), 1e-6);
    assert_float_equal(y[1], 2 * cosf(0.1f) - 4 * sinf(0.1f), 1e-6);
    memcpy(y, x, sizeof x);
    ml_rope_apply(y, pos, cos_t, sin_t, 1, 1, 1, 4, 0, 0);
    /* adjacent pairs (0,1) angle 1 and (2,3) angle 0.1 */
    assert_float_equal(y[0], 1 * cosf(1) - 2 * sinf(1), 1e-6);
    assert_float_equal(y[1], 1 * sinf(1) + 2 * cosf(1), 1e-6);
    assert_float_equal(y[2], 3 * cosf(0.1f) - 4 * sinf(0.1f), 1e-6);
}

/* ---------------------------------------------------------------- attention */
typedef struct {
    int B, T, H, KV, hd, window;
    int32_t *doc;
    float *q, *k, *v, *out, *lse, *R;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    ml_attention_forward(c->out, c->lse, c->q, c->k, c->v, c->doc, &(ml_attn_dims){c->B, c->T, c->T, 0, c->H, c->KV, c->hd, c->window, ML_ATTN_FP32}, NULL);
    return dotd(c->out, c->R, (size_t)c->B * c->T * c->H * c->hd);
}

static void run_attention(int window, int with_doc) {
    att_ctx c = {.B = 2, .T = 7, .H = 4, .KV = 2, .hd = 8, .window = window};
    int32_t doc[14] = {0, 0, 0, 1, 1, 1, 1, 5, 5, 6, 6, 6, 6, 6};
    c.doc = with_doc ? doc : NULL;
    size_t nq = (size_t)c.B * c.T * c.H * c.hd, nk = (size_t)c.B * c.T * c.KV * c.hd;
    c.q = ml_test_randn(&rng, nq, 1), c.k = ml_test_randn(&rng, nk, 1), c.v = ml_test_randn(&rng, nk, 1);
    c.out = malloc(nq * 4), c.lse = malloc((size_t)c.B * c.H * c.T * 4), c.R = ml_test_randn(&rng, nq, 1);
    att_loss(&c);
    float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    ml_attention_backward(dq, dk, dv, c.R, c.out, c.lse, c.q, c.k, c.v, c.doc,
                          &(ml_attn_dims){c.B, c.T, c.T, 0, c.H, c.KV, c.hd, c.window, ML_ATTN_FP32}, NULL);
    check_grad("attention dq", att_loss, &c, c.q, dq, nq, 2000);
    check_grad("attention dk", att_loss, &c, c.k, dk, nk, 2000);
    check_grad("attention dv", att_loss, &c, c.v, dv, nk, 2000);
    free(dq), free(dk), free(dv), free(c.q), free(c.k), free(c.v), free(c.out), free(c.lse), free(c.R);
}

static void test_attention(void **state) {
    run_attention(0, 0);
    run_attention(3, 0); /* sliding window shorter than T */
    run_attention(0, 1); /* document mask */
    run_attention(2, 1);
}

/* Masking semantics: query 0 sees only itself; with a window of 1 every query sees only itself;
 * a document mask isolates documents. */
static void test_attention_masks(void **state) {
    const int T = 5, hd = 4;
    float *q = ml_test_randn(&rng, T * hd, 1), *k = ml_test_randn(&rng, T * hd, 1), *v = ml_test_randn(&rng, T * hd, 1), out[5 * 4], lse[5];
    ml_attention_forward(out, lse, q, k, v, NULL, &(ml_attn_dims){1, T, T, 0, 1, 1, hd, 1, ML_ATTN_FP32}, NULL);
    for (int i = 0; i < T * hd; i++) assert_float_equal(out[i], v[i], 1e-6);
    int32_t doc[5] = {0, 0, 1, 1, 1};
    float full[5 * 4];
    ml_attention_forward(full, lse, q, k, v, doc, &(ml_attn_dims){1, T, T, 0, 1, 1, hd, 0, ML_ATTN_FP32}, NULL);
    for (int i = 0; i < hd; i++) assert_float_equal(full[2 * hd + i], v[2 * hd + i], 1e-6); /* doc start */
    ml_attention_forward(out, lse, q, k, v, NULL, &(ml_attn_dims){1, T, T, 0, 1, 1, hd, 0, ML_ATTN_FP32}, NULL);
    int differs = 0;
    for (int i = 2 * hd; i < T * hd; i++) differs |= fabsf(out[i] - full[i]) > 1e-6f;
    assert_true(differs);
    free(q), free(k), free(v);
}

/* The tiled kernels against a direct double-precision evaluation, with T spanning several 64-row
 * tiles so that tile skipping (window, packed documents), partial tiles, masked diagonal tiles and
 * documents that are not contiguous (no skipping allowed) are all exercised. */
static void naive_attention(double *out, double *dq, double *dk, double *dv, const float *q, const float *k,
                            const float *v, const float *dout, const int32_t *doc, int B, int T, int H, int KV, int hd,
                            int window) {
    const int group = H / KV;
    const double scale = 1.0 / sqrt((double)hd);
    double *p = malloc(sizeof(double) * T), *dp = malloc(sizeof(double) * T);
    size_t nk = (size_t)B * T * KV * hd;
    for (size_t i = 0; i < nk; i++) dk[i] = dv[i] = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *qr = q + (((size_t)b * T + t) * H + h) * hd;
                const float *dor = dout + (((size_t)b * T + t) * H + h) * hd;
                double mx = -INFINITY, sum = 0, D = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] = -INFINITY;
                    if (window > 0 && t - j >= window) continue;
                    if (doc && doc[b * T + j] != doc[b * T + t]) continue;
                    const float *kr = k + (((size_t)b * T + j) * KV + h / group) * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)qr[d] * kr[d];
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += p[j] = exp(p[j] - mx);
                double *o = out + (((size_t)b * T + t) * H + h) * hd;
                for (int d = 0; d < hd; d++) o[d] = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] /= sum;
                    const float *vr = v + (((size_t)b * T + j) * KV + h / group) * hd;
                    dp[j] = 0;
                    for (int d = 0; d < hd; d++) o[d] += p[j] * vr[d], dp[j] += (double)dor[d] * vr[d];
                }
                for (int d = 0; d < hd; d++) D += o[d] * dor[d];
                double *dqr = dq + (((size_t)b * T + t) * H + h) * hd;
                for (int d = 0; d < hd; d++) dqr[d] = 0;
                for (int j = 0; j <= t; j++) {
                    size_t kv = (((size_t)b * T + j) * KV + h / group) * hd;
                    double ds = p[j] * (dp[j] - D) * scale;
                    for (int d = 0; d < hd; d++) {
                        dqr[d] += ds * k[kv + d];
                        dk[kv + d] += ds * qr[d];
                        dv[kv + d] += p[j] * dor[d];
                    }
                }
            }
    free(p), free(dp);
}

static void assert_close(const char *what, const float *got, const double *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > tol * (1 + fabs(want[i])))
            fail_msg("%s[%zu]: %.7f vs reference %.7f", what, i, got[i], want[i]);
}

/* hd = 32 takes the register-blocked AVX-512 products everywhere; hd = 24 the plain loops for the
 * products whose width is hd. */
static void run_tiled_vs_reference(int hd) {
    const int B = 2, T = 203, H = 6, KV = 2;
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    int32_t packed[2 * 203], scattered[2 * 203];
    for (int t = 0; t < B * T; t++) {
        int pos = t % T;
        packed[t] = pos < 37 ? 3 : pos < 127 ? 4 : 9;     /* documents of 37, 90 and 76 tokens */
        scattered[t] = (pos / 50) % 2 + (pos > 180 ? 7 : 0); /* ids that go back: no tile may be skipped */
    }
    const int32_t *docs[3] = {NULL, packed, scattered};
    const int windows[3] = {0, 70, 130};
    float *q = ml_test_randn(&rng, nq, 1), *k = ml_test_randn(&rng, nk, 1), *v = ml_test_randn(&rng, nk, 1), *dout = ml_test_randn(&rng, nq, 1);
    float *out = malloc(nq * 4), *lse = malloc((size_t)B * H * T * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4),
          *dv = malloc(nk * 4);
    double *rout = malloc(nq * 8), *rdq = malloc(nq * 8), *rdk = malloc(nk * 8), *rdv = malloc(nk * 8);
    for (int di = 0; di < 3; di++)
        for (int wi = 0; wi < 3; wi++) {
            ml_attention_forward(out, lse, q, k, v, docs[di], &(ml_attn_dims){B, T, T, 0, H, KV, hd, windows[wi], ML_ATTN_FP32}, NULL);
            ml_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, docs[di],
                          &(ml_attn_dims){B, T, T, 0, H, KV, hd, windows[wi], ML_ATTN_FP32}, NULL);
            naive_attention(rout, rdq, rdk, rdv, q, k, v, dout, docs[di], B, T, H, KV, hd, windows[wi]);
            assert_close("out", out, rout, nq, 2e-5);
            assert_close("dq", dq, rdq, nq, 2e-5);
            assert_close("dk", dk, rdk, nk, 2e-5);
            assert_close("dv", dv, rdv, nk, 2e-5);
        }
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
    free(rout), free(rdq), free(rdk), free(rdv);
}

static void test_attention_tiled_vs_reference(void **state) {
    run_tiled_vs_reference(24);
    run_tiled_vs_reference(32);
}

/* The bf16-output norm (bf16 activations) writes exactly the bf16 rounding of the fp32 kernel's output, with the
 * same rstd; a ragged width and a row of zeros (rstd from eps alone) included. */
static void test_rmsnorm_b16(void **state) {
    enum { N = 5, C = 37 };
    float *x = ml_test_randn(&rng, N * C, 3), *w = ml_test_randn(&rng, C, 1), y[N * C], rstd[N], rstd16[N];
    memset(x + 2 * C, 0, C * sizeof(float));
    uint16_t y16[N * C];
    ml_rmsnorm_forward(y, rstd, x, w, N, C, 1e-5f);
    ml_rmsnorm_forward_b16(y16, rstd16, x, w, N, C, 1e-5f);
    assert_memory_equal(rstd, rstd16, sizeof rstd);
    int rounded = 0;
    for (int i = 0; i < N * C; i++) {
        assert_int_equal(y16[i], ml_bf16_bits(y[i]));
        rounded += ml_bf16_value(y16[i]) != y[i];
    }
    assert_true(rounded > N * C / 2); /* really bf16, not truncated fp32 bits of something else */
    free(x), free(w);
}

/* ---------------------------------------------------------------- swiglu */
typedef struct {
    int n;
    float *g, *u, *h, *R;
} sw_ctx;

static double sw_loss(void *p) {
    sw_ctx *c = p;
    ml_swiglu_forward(c->h, c->g, c->u, c->n);
    return dotd(c->h, c->R, (size_t)c->n);
}

/* The bf16-input SwiGLU kernels are the fp32 kernels on the widened values, bit for bit (n not a multiple of the
 * chunk); the backward (dh in bf16 too) writes the fp32 kernel's gradients rounded once. */
static void test_swiglu_b16(void **state) {
    enum { n = 1000 };
    float *g = ml_test_randn(&rng, n, 3), *u = ml_test_randn(&rng, n, 1), *dh = ml_test_randn(&rng, n, 1);
    uint16_t g16[n], u16[n];
    for (int i = 0; i < n; i++) g16[i] = ml_bf16_bits(g[i]), u16[i] = ml_bf16_bits(u[i]), g[i] = ml_bf16_value(g16[i]),
                                u[i] = ml_bf16_value(u16[i]);
    float h[n], dg[n], du[n];
    uint16_t dh16[n], hb[n], h16[n], dgb[n], dub[n], dg16[n], du16[n];
    for (int i = 0; i < n; i++) dh16[i] = ml_bf16_bits(dh[i]), dh[i] = ml_bf16_value(dh16[i]);
    ml_swiglu_forward(h, g, u, n);
    ml_swiglu_forward_b16(h16, g16, u16, n);
    ml_swiglu_backward(dg, du, dh, g, u, n);
    ml_swiglu_backward_b16(dg16, du16, dh16, g16, u16, n);
    for (int i = 0; i < n; i++) hb[i] = ml_bf16_bits(h[i]), dgb[i] = ml_bf16_bits(dg[i]), dub[i] = ml_bf16_bits(du[i]);
    assert_memory_equal(hb, h16, sizeof hb);
    assert_memory_equal(dgb, dg16, sizeof dgb);
    assert_memory_equal(dub, du16, sizeof dub);
    free(g), free(u), free(dh);
}

static void test_swiglu(void **state) {
    sw_ctx c = {.n = 300};
    c.g = ml_test_randn(&rng, 300, 2), c.u = ml_test_randn(&rng, 300, 1), c.h = malloc(300 * 4), c.R = ml_test_randn(&rng, 300, 1);
    float *dg = malloc(300 * 4), *du = malloc(300 * 4);
    ml_swiglu_backward(dg, du, c.R, c.g, c.u, 300);
    check_grad("swiglu dgate", sw_loss, &c, c.g, dg, 300, 300);
    check_grad("swiglu dup", sw_loss, &c, c.u, du, 300, 300);
    free(dg), free(du), free(c.g), free(c.u), free(c.h), free(c.R);
}

/* ---------------------------------------------------------------- softmax cross-entropy */
typedef struct {
    int n, V;
    int32_t *t;
    float *z, *work, *losses;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    memcpy(c->work, c->z, (size_t)c->n * c->V * 4);
    ml_softmax_xent_rows(c->work, c->losses, c->t, c->n, c->V, 0.0f);
    double s = 0;
    for (int i = 0; i < c->n; i++) s += c->losses[i];
    return s;
}

static void test_cross_entropy(void **state) {
    int32_t t[5] = {3, -1, 0, 10, 7};
    ce_ctx c = {.n = 5, .V = 11, .t = t};
    c.z = ml_test_randn(&rng, 55, 3), c.work = malloc(55 * 4), c.losses = malloc(5 * 4);
    float *d = malloc(55 * 4), losses[5];
    memcpy(d, c.z, 55 * 4);
    ml_softmax_xent_rows(d, losses, t, 5, 11, 1.0f);
    check_grad("cross-entropy", ce_loss, &c, c.z, d, 55, 55);
    /* reference value for one row: log-sum-exp minus the target logit */
    double lse = 0, mx = -1e30;
    for (int v = 0; v < 11; v++) mx = fmax(mx, c.z[v]);
    for (int v = 0; v < 11; v++) lse += exp(c.z[v] - mx);
    assert_float_equal(losses[0], log(lse) + mx - c.z[3], 1e-5);
    assert_float_equal(losses[1], 0.0f, 0.0f); /* ignored target */
    for (int v = 0; v < 11; v++) assert_float_equal(d[11 + v], 0.0f, 0.0f);
    free(d), free(c.z), free(c.work), free(c.losses);
}

/* The bf16-logit cross-entropy is the fp32 kernel on the widened logits, its gradient rounded once, bit for bit
 * (V not a multiple of the vector width, an ignored row, with and without a gradient). */
static void test_cross_entropy_b16(void **state) {
    enum { n = 4, V = 1003 };
    const int32_t t[n] = {5, -1, 1002, 0};
    float *z = ml_test_randn(&rng, n * V, 4), losses[n], losses16[n], losses_nograd[n];
    uint16_t *z16 = malloc(n * V * 2), *dz = malloc(n * V * 2), *keep = malloc(n * V * 2);
    for (int i = 0; i < n * V; i++) z16[i] = ml_bf16_bits(z[i]), z[i] = ml_bf16_value(z16[i]);
    memcpy(keep, z16, n * V * 2);
    ml_softmax_xent_rows_b16(z16, losses_nograd, t, n, V, 0.0f);
    assert_memory_equal(z16, keep, n * V * 2); /* no gradient: the logits stay */
    ml_softmax_xent_rows(z, losses, t, n, V, 0.5f);
    ml_softmax_xent_rows_b16(z16, losses16, t, n, V, 0.5f);
    for (int i = 0; i < n * V; i++) dz[i] = ml_bf16_bits(z[i]);
    assert_memory_equal(losses, losses16, sizeof losses);
    assert_memory_equal(losses, losses_nograd, sizeof losses);
    assert_memory_equal(dz, z16, n * V * 2);
    assert_true(losses[0] > 0.0f);
    free(z), free(z16), free(dz), free(keep);
}

/* ---------------------------------------------------------------- exp (common/vmath.h) */
/* ml_exp16 against double exp over its whole finite range (within 2e-7 relative, no subnormal output), and at the
 * edges: below -86 and -inf give 0, above 88.8 +inf, NaN stays NaN; ml_exp_scaled sums what it writes, tail
 * included. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void exp16_store(float *y, const float *x) {
    _mm512_storeu_ps(y, ml_exp16(_mm512_loadu_ps(x)));
}
#endif

static void test_exp(void **state) {
    (void)state;
#if defined(__x86_64__) && defined(__GNUC__)
    if (!__builtin_cpu_supports("avx512f")) skip();
    double worst = 0.0;
    for (float x0 = -86.0f; x0 < 88.7f; x0 += 0.01f) {
        float x[16], y[16];
        for (int i = 0; i < 16; i++) x[i] = x0 + 0.000625f * (float)i;
        exp16_store(y, x);
        for (int i = 0; i < 16; i++) {
            const double e = fabs((double)y[i] / exp((double)x[i]) - 1.0);
            if (e > worst) worst = e;
            assert_true(y[i] == 0.0f || fpclassify(y[i]) == FP_NORMAL);
        }
    }
    print_message("ml_exp16: largest relative error %.3g over [-86, 88.7]\n", worst);
    assert_true(worst < 2e-7);
    float x[16] = {-INFINITY, -1000.0f, -86.01f, -87.3f, -100.0f, 88.81f, 100.0f, INFINITY,
                   NAN,       0.0f,     -0.0f,   1.0f,   -1.0f,   -86.0f, 88.7f,  -50.0f}, y[16];
    exp16_store(y, x);
    for (int i = 0; i < 5; i++) assert_true(y[i] == 0.0f);
    for (int i = 5; i < 8; i++) assert_true(isinf(y[i]) && y[i] > 0);
    assert_true(isnan(y[8]));
    assert_true(y[9] == 1.0f && y[10] == 1.0f);
    for (int i = 11; i < 16; i++) assert_true(fabs((double)y[i] / exp((double)x[i]) - 1.0) < 2e-7);
#endif
    float v[37], w[37];
    double sum = 0.0;
    for (int i = 0; i < 37; i++) v[i] = -0.25f * (float)i;
    const float s = ml_exp_scaled(w, v, -1.0f, 2.0f, 37);
    for (int i = 0; i < 37; i++) {
        assert_true(fabs((double)w[i] / exp(((double)v[i] + 1.0) * 2.0) - 1.0) < 2e-7);
        sum += w[i];
    }
    assert_true(fabs(s - sum) <= 1e-6 * sum);
}

int main(void) {
    ml_rng_seed(&rng, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_rmsnorm),       cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_pairings), cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_masks),
        cmocka_unit_test(test_attention_tiled_vs_reference), cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_swiglu_b16),    cmocka_unit_test(test_rmsnorm_b16),
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_cross_entropy_b16),
        cmocka_unit_test(test_exp),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
