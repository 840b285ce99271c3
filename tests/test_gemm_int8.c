/* The int8 engine (model/ops/gemm_int8.h) and the integer QAT forward it serves (model/linear.c, quant/).
 *
 * Kernel. Against an int64 / long double reference on random codes: with unit (or power-of-two) scales and one
 * group per row the result is the integer group sum itself, bit for bit; with random scales
 *   |Y - exact| <= (groups + 2) * 2^-24 * sum_g |xs ws isum_g|,
 * the kernel's stated bound (a wrong code, offset or scale is off by far more). Every group the grids give
 * (32, 64, 128, 256, a whole row, rows over 512 split), activation scales per row and per block of 32, ragged M, N
 * and K; the AVX512-VNNI kernel and the portable one give the same bits.
 * Integer forms. For every weight and activation grid, code * scale is the fake-quantized value bit for bit.
 * Model. A small Llama with a QAT recipe on the int8 engine against the fp32 fake-quant forward (engine openblas):
 * logits and loss within LOGIT_BOUND / LOSS_BOUND (the per-product difference is fp32 rounding, ~K 2^-24 of
 * sum |x w|; a few activations then round to the neighbouring int8 code downstream, which the bounds cover); the
 * int8 engine really ran; backward is the fake-quant one bit for bit; a few training steps track the fp32 path's
 * losses within LOSS_BOUND and repeat bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/arena.h"
#include "common/rng.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/ops/gemm.h"
#include "model/ops/gemm_int8.h"
#include "model/ops/gemm_onednn.h"
#include "optim/optimizer.h"
#include "quant/quant.h"
#include "tests/support/test_util.h"
#include "train/trainer.h"

/* The whole model, int8 against fp32 fake-quant: logits max |int8 - fp32| / max |fp32 logit|, the first loss
 * |int8 - fp32| / fp32, and the losses of four AdamW steps (lr 1e-3). A product differs by fp32 rounding only
 * (test_products), but a fake-quantized network is discontinuous: an activation a rounding away from a code
 * boundary lands on the neighbouring code on one path and not the other (measured here: none for int4-g32 +
 * int8-token, logits 5.5e-7 apart; some for q4_0 + q8_0 and int4-channel-lsq, 1.0e-2 and 1.8e-2), and training
 * carries such differences on (measured up to 5.8e-3 after four steps). The bounds sit above those; a wrong code,
 * scale or zero point moves the first loss by far more. The first loss must also move less than the fp32 path's
 * own does when every weight moves up by one unit in the last place. */
#define LOGIT_BOUND 5e-2
#define LOSS_BOUND 1e-4
#define TRAIN_BOUND 1e-2

static ml_rng rng;

typedef struct {
    int M, N, K, wgroup, xgroup, wmax; /* weight codes in [-wmax - 1, wmax] (int4: 7, int8: 127) */
    int unit;                          /* 1: all scales 1 (exact integer results) */
} kcase;

/* One product on the kernel (and the portable path) against the reference; returns the worst error / bound. */
static double check_kernel(const kcase *c) {
    const int M = c->M, N = c->N, K = c->K, wg = c->wgroup, xg = c->xgroup, group = ml_int8_group(K, wg, xg);
    assert_true(group > 0);
    int8_t *codes = malloc((size_t)N * K);
    float *ws = malloc(sizeof(float) * (size_t)N * (K / wg)), *xs = malloc(sizeof(float) * (size_t)M * (K / xg));
    uint8_t *u = malloc((size_t)M * K);
    int32_t *off = malloc(sizeof(int32_t) * M);
    for (size_t i = 0; i < (size_t)N * K; i++)
        codes[i] = (int8_t)((int)ml_rng_below(&rng, (uint64_t)(2 * c->wmax + 2)) - c->wmax - 1);
    for (size_t i = 0; i < (size_t)M * K; i++) u[i] = (uint8_t)ml_rng_below(&rng, 256);
    for (int t = 0; t < M; t++) off[t] = (int32_t)ml_rng_below(&rng, 256);
    for (size_t i = 0; i < (size_t)N * (K / wg); i++) ws[i] = c->unit ? 1.0f : (float)(0.01 + fabs(ml_rng_normal(&rng)) * 0.02);
    for (size_t i = 0; i < (size_t)M * (K / xg); i++) xs[i] = c->unit ? 1.0f : (float)(0.001 + ml_rng_uniform(&rng) * 0.05);
    const int plain = wg == K && xg == K && ml_onednn_int8_available();
    void *mem = ml_aligned_calloc(ml_int8_matrix_bytes(N, K, group, plain));
    ml_int8_matrix W;
    ml_int8_pack(&W, mem, codes, ws, wg, N, K, group, plain);
    float *Y = malloc(sizeof(float) * (size_t)M * N), *Yp = malloc(sizeof(float) * (size_t)M * N);
    ml_gemm_int8(Y, u, xs, xg, off, &W, M);
    ml_gemm_int8_portable(Yp, u, xs, xg, off, &W, M);
    assert_memory_equal(Y, Yp, sizeof(float) * (size_t)M * N);
    double worst = 0;
    for (int pass = 0; pass < 1 + plain; pass++) {
    if (pass) { /* per-row weights and inputs: oneDNN's s32 product and the finish, the same bound */
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)M * N);
        assert_int_equal(ml_onednn_gemm_u8s8(M, N, K, u, W.plain, acc), 0);
        ml_int8_finish_rows(Y, acc, xs, off, &W, M);
        free(acc);
    }
    for (int t = 0; t < M; t++)
        for (int o = 0; o < N; o++) {
            long double exact = 0, mag = 0;
            int64_t total = 0;
            for (int g = 0; g < K / group; g++) {
                int64_t isum = 0;
                for (int k = g * group; k < (g + 1) * group; k++)
                    isum += ((int64_t)u[(size_t)t * K + k] - off[t]) * codes[(size_t)o * K + k];
                total += isum;
                const long double s = (long double)ws[(size_t)o * (K / wg) + g * group / wg] *
                                      xs[(size_t)t * (K / xg) + (xg == K ? 0 : g * group / xg)];
                exact += s * isum, mag += fabsl(s * isum);
            }
            const float got = Y[(size_t)t * N + o];
            if (c->unit) { /* unit scales: the integer itself (exact below 2^24) */
                if (got != (float)total)
                    fail_msg("M %d N %d K %d group %d: Y[%d][%d] = %.1f, integer sum %lld", M, N, K, group, t, o, got,
                             (long long)total);
                continue;
            }
            const double bound = (K / group + 2) * ldexp(1.0, -24) * (double)mag + 1e-30;
            const double err = fabs((double)got - (double)exact);
            if (err > bound)
                fail_msg("M %d N %d K %d wgroup %d xgroup %d: Y[%d][%d] = %.9g, exact %.9Lg (bound %.3g)", M, N, K, wg, xg,
                         t, o, got, exact, bound);
            if (err / bound > worst) worst = err / bound;
        }
    }
    free(codes), free(ws), free(xs), free(u), free(off), free(mem), free(Y), free(Yp);
    return worst;
}

static void test_kernel(void **state) {
    printf("AVX512-VNNI kernel: %s; oneDNN u8 x s8 matmul: %s; per-row products on oneDNN in the model: %s\n",
           ml_int8_vnni_available() ? "yes" : "no (the portable one twice)",
           ml_onednn_int8_available() ? "yes (checked on the per-row cases)" : "no", ml_gemm_int8_onednn() ? "yes" : "no");
    const kcase cases[] = {
        /* every grid's group, per-row int8-token scales, ragged M and N */
        {37, 70, 576, 32, 576, 7, 0},   {13, 33, 256, 64, 256, 7, 0},  {7, 31, 512, 128, 512, 7, 0},
        {64, 96, 768, 256, 768, 7, 0},  {5, 17, 576, 576, 576, 7, 0},  {9, 40, 1536, 1536, 1536, 7, 0},
        /* q8_0 weights and q8_0 activations (blocks of 32 on both sides), int4 groups with q8_0 activations */
        {11, 45, 320, 32, 32, 127, 0},  {6, 64, 384, 128, 32, 7, 0},
        /* several blocks of 512 columns (the running sums pass through Y), ragged last block */
        {13, 40, 1536, 32, 1536, 7, 0}, {7, 33, 1280, 32, 32, 127, 0}, {200, 64, 1024, 64, 1024, 7, 0},
        /* int8 per-row weights (the embedding grid) as a head; K with few groups; single rows and columns */
        {3, 300, 128, 128, 128, 127, 0}, {1, 1, 32, 32, 32, 127, 0}, {1, 50, 100, 100, 100, 7, 0},
        {50, 1, 96, 32, 96, 7, 0},
        /* unit scales: integer sums bit for bit (one group; a 512-column group of int8 codes reaches 2^24) */
        {8, 35, 512, 512, 512, 127, 1}, {19, 32, 64, 32, 64, 127, 1},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) worst = fmax(worst, check_kernel(&cases[i]));
    printf("worst error: %.3f of the stated bound\n", worst);
}

static void test_groups(void **state) {
    assert_int_equal(ml_int8_group(576, 32, 576), 32);
    assert_int_equal(ml_int8_group(576, 576, 576), 288); /* per-row weights: split below 512 */
    assert_int_equal(ml_int8_group(1536, 1536, 1536), 384);
    assert_int_equal(ml_int8_group(4096, 4096, 4096), 512);
    assert_int_equal(ml_int8_group(320, 64, 32), 32);     /* q8_0 activations under int4-g64 weights */
    assert_int_equal(ml_int8_group(100, 100, 100), 100);
    assert_int_equal(ml_int8_group(6, 6, 6), 0);          /* not a multiple of 4: no integer product */
    assert_int_equal(ml_int8_group(576, 128, 576), 0);    /* a group that does not divide the row */
    assert_int_equal(ml_int8_group(2 * 1030, 2 * 1030, 2 * 1030), 0); /* no split under 512 keeps a multiple of 4 */
}

/* code * scale == the fake-quantized value, for every grid, on rows with ties, zeros and clipped extremes. */
static void test_integer_forms(void **state) {
    enum { n = 256 };
    float x[n], y[n], s[n / 4 + 1], v;
    int8_t q[n];
    uint8_t u[n];
    int32_t off;
    for (int rep = 0; rep < 20; rep++) {
        for (int j = 0; j < n; j++) x[j] = (float)ml_rng_normal(&rng) * (rep % 3 ? 1.0f : 1e-3f);
        if (rep % 4 == 1) for (int j = 0; j < 32; j++) x[j] = 0; /* an all-zero block */
        if (rep % 4 == 2) for (int j = 0; j < n; j += 7) x[j] = (float)(j % 15 - 7) * 0.25f; /* ties */
        ml_fq_q4_0(y, NULL, x, n), ml_q_q4_0(q, s, x, n);
        for (int j = 0; j < n; j++) assert_true((float)q[j] * s[j / 32] == y[j] && q[j] >= -8 && q[j] <= 7);
        ml_fq_q8_0(y, x, n), ml_q_q8_0(q, s, x, n);
        for (int j = 0; j < n; j++) assert_true((float)q[j] * s[j / 32] == y[j]);
        for (int g = 32; g <= n; g *= 2) {
            ml_fq_sym(y, NULL, x, n, g, 4), ml_q_sym(q, s, x, n, g, 4);
            for (int j = 0; j < n; j++) assert_true((float)q[j] * s[j / g] == y[j] && q[j] >= -8 && q[j] <= 7);
        }
        ml_fq_sym(y, NULL, x, n, n, 8), ml_q_sym(q, s, x, n, n, 8);
        for (int j = 0; j < n; j++) assert_true((float)q[j] * s[0] == y[j]);
        v = 0.013f * (float)(rep + 1);
        ml_fq_scaled(y, NULL, x, n, v, 4), ml_q_scaled(q, x, n, v, 4);
        for (int j = 0; j < n; j++) assert_true((float)q[j] * v == y[j]);
        ml_fq_act_q8_0(y, x, n), ml_q_act_q8_0(u, s, x, n);
        for (int j = 0; j < n; j++) assert_true((float)(u[j] - 128) * s[j / 32] == y[j]);
        if (rep % 5 == 3) for (int j = 0; j < n; j++) x[j] = fabsf(x[j]); /* no negative: zero point at -128 */
        ml_fq_act_int8_token(y, NULL, x, n), ml_q_act_int8_token(u, &v, &off, x, n);
        for (int j = 0; j < n; j++) assert_true((float)(u[j] - off) * v == y[j]);
    }
}

/* ---------------------------------------------------------------- the model */

enum { B = 2, T = 48, V = 300 };

typedef struct {
    double loss[4];
    float *logits, *grads;
    size_t n_grads;
    int int8_products, int8_head; /* distinct products the int8 engine ran; of them, the head's */
} run_out;

/* A QAT run on a small Llama on engine e: `steps` AdamW steps, logits and gradients of the first kept. switch_engine
 * 1: each forward on openblas, its backward after switching to e; -1: every initial weight one ulp up. */
static void run_qat(const char *scheme, const char *emb, const char *act, ml_gemm_engine e, int steps, int switch_engine,
                    run_out *out) {
    ml_config c;
    ml_test_small_llama(&c, V, 128, 320, 32);
    int32_t tok[B * T], tgt[B * T];
    ml_rng r;
    ml_rng_seed(&r, 11);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)ml_rng_below(&r, V), tgt[i] = (int32_t)ml_rng_below(&r, V);
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    ml_model m;
    assert_int_equal(ml_model_create(&m, &c), ML_OK);
    ml_model_init_weights(&m, 3);
    if (switch_engine < 0) /* every weight one unit in the last place up: the fp32 path's own sensitivity */
        for (size_t i = 0; i < m.param_arena.used; i++) m.param_arena.base[i] = nextafterf(m.param_arena.base[i], INFINITY);
    ml_quant_recipe rc;
    assert_int_equal(ml_quant_recipe_parse(&rc, scheme, emb, act), ML_OK);
    assert_int_equal(ml_quant_install(&m, &rc), ML_OK);
    assert_int_equal(ml_model_set_gemm_engine(&m, switch_engine > 0 ? ML_GEMM_OPENBLAS : e), ML_OK);
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAMW);
    ml_optimizer opt;
    assert_int_equal(ml_optimizer_for_model(&opt, &m, &oc), ML_OK);
    memset(out, 0, sizeof *out);
    ml_gemm_stats_reset();
    for (int step = 0; step < steps; step++) {
        int64_t cnt;
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_refresh_weights(&m), ML_OK);
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        if (step == 0) {
            out->logits = malloc(sizeof(float) * B * T * V);
            assert_int_equal(ml_model_logits(&m, &b, out->logits), ML_OK);
        }
        assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (B * T), &out->loss[step], &cnt), ML_OK);
        out->loss[step] /= (double)cnt;
        if (switch_engine > 0) assert_int_equal(ml_model_set_gemm_engine(&m, e), ML_OK);
        assert_int_equal(ml_model_backward(&m, &b), ML_OK);
        ml_model_grads_to_latent(&m);
        if (step == 0) {
            out->n_grads = m.grad_arena.capacity;
            out->grads = malloc(out->n_grads * sizeof(float));
            memcpy(out->grads, m.grad_arena.base, out->n_grads * sizeof(float));
        }
        assert_int_equal(ml_optim_step(&opt, m.param_arena.base, m.grad_arena.base, 1e-3f), ML_OK);
        ml_model_weights_changed(&m);
    }
    ml_gemm_stat rows[64];
    const int n = ml_gemm_stats(rows, 64);
    for (int i = 0; i < n && i < 64; i++)
        if (rows[i].engine == ML_GEMM_INT8) out->int8_products++, out->int8_head += rows[i].N == V;
    ml_optim_free(&opt);
    ml_model_free(&m);
}

static void compare(const char *scheme, const char *emb, const char *act, int head_int8) {
    run_out f, q, q2;
    run_qat(scheme, emb, act, ML_GEMM_OPENBLAS, 4, 0, &f);
    run_qat(scheme, emb, act, ML_GEMM_INT8, 4, 0, &q);
    run_qat(scheme, emb, act, ML_GEMM_INT8, 4, 0, &q2);
    run_out u;
    run_qat(scheme, emb, act, ML_GEMM_OPENBLAS, 4, -1, &u);
    printf("fp32 with every weight 1 ulp up:");
    for (int s = 0; s < 4; s++) printf(" %.7f", u.loss[s]);
    printf("\n");
    assert_int_equal(f.int8_products, 0);
    /* q, k, v, o, gate, up, down (shapes 128x128, 64x128, 320x128, 128x320), and the head when it is quantized */
    assert_int_equal(q.int8_products - q.int8_head, 4);
    assert_int_equal(q.int8_head > 0, head_int8);
    double lmax = 0, dmax = 0;
    for (size_t i = 0; i < (size_t)B * T * V; i++)
        lmax = fmax(lmax, fabs(f.logits[i])), dmax = fmax(dmax, fabs((double)q.logits[i] - f.logits[i]));
    printf("%s embedding=%s act=%s: logits differ by %.2e of the largest; losses", scheme, emb, act, dmax / lmax);
    for (int s = 0; s < 4; s++) printf(" %.7f/%.7f", q.loss[s], f.loss[s]);
    printf(" (int8/fp32)\n");
    assert_true(dmax / lmax < LOGIT_BOUND);
    assert_true(dmax > 0); /* another arithmetic really ran */
    assert_true(fabs(q.loss[0] - f.loss[0]) <= LOSS_BOUND * f.loss[0]);
    assert_true(fabs(q.loss[0] - f.loss[0]) < fabs(u.loss[0] - f.loss[0]));
    for (int s = 0; s < 4; s++) {
        assert_true(fabs(q.loss[s] - f.loss[s]) <= TRAIN_BOUND * f.loss[s]);
        assert_true(q.loss[s] == q2.loss[s]); /* a run repeats bit for bit */
    }
    assert_true(f.loss[3] < f.loss[0]);
    assert_memory_equal(q.grads, q2.grads, q.n_grads * sizeof(float));
    free(f.logits), free(f.grads), free(q.logits), free(q.grads), free(q2.logits), free(q2.grads);
    free(u.logits), free(u.grads);
}

/* Each quantized product of a real forward (the saved inputs of every block and the head), on the int8 engine and on
 * the fp32 fake-quant path, against a double product of the fake-quantized operands: the int8 engine within
 * (groups + 4) 2^-24 sum |xq w| (its kernel bound, and the roundings of xq and w), sgemm within 2 (K + 2) 2^-24. */
static void check_products(const char *scheme, const char *emb, const char *act) {
    ml_config c;
    ml_test_small_llama(&c, V, 128, 320, 32);
    int32_t tok[B * T];
    ml_rng r;
    ml_rng_seed(&r, 12);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)ml_rng_below(&r, V);
    ml_batch b = {.tokens = tok, .targets = tok, .B = B, .T = T};
    ml_model m8, f;
    ml_quant_recipe rc;
    assert_int_equal(ml_quant_recipe_parse(&rc, scheme, emb, act), ML_OK);
    for (int k = 0; k < 2; k++) {
        ml_model *x = k ? &f : &m8;
        assert_int_equal(ml_model_create(x, &c), ML_OK);
        ml_model_init_weights(x, 3);
        assert_int_equal(ml_quant_install(x, &rc), ML_OK);
        assert_int_equal(ml_model_set_gemm_engine(x, k ? ML_GEMM_OPENBLAS : ML_GEMM_INT8), ML_OK);
        assert_int_equal(ml_model_reserve(x, B, T, T), ML_OK);
        assert_int_equal(ml_model_refresh_weights(x), ML_OK);
    }
    assert_int_equal(ml_model_forward(&f, &b), ML_OK);
    const int N = B * T;
    float *y8 = malloc(sizeof(float) * N * 320), *y32 = malloc(sizeof(float) * N * 320), *xq = malloc(sizeof(float) * N * 320);
    double worst8 = 0, worst32 = 0;
    int checked = 0, onednn_products = 0;
    for (int l = -1; l < c.num_layers; l++) {
        const struct {
            ml_param_kind kind;
            const float *x;
        } prods[] = {{ML_P_WQ, l >= 0 ? f.acts[l].ln1 : NULL}, {ML_P_WK, l >= 0 ? f.acts[l].ln1 : NULL},
                     {ML_P_WO, l >= 0 ? f.acts[l].att : NULL}, {ML_P_WGATE, l >= 0 ? f.acts[l].ln2 : NULL},
                     {ML_P_LM_HEAD, l < 0 ? f.ln_f : NULL}};
        for (size_t k = 0; k < sizeof prods / sizeof prods[0]; k++) {
            if (!prods[k].x) continue;
            const ml_param_kind kind = prods[k].kind == ML_P_LM_HEAD ? ML_P_EMBED : prods[k].kind;
            int i = 0;
            while (i < f.n_params && !(f.params[i].kind == kind && f.params[i].layer == l)) i++;
            assert_true(i < f.n_params);
            const ml_param *p = &f.params[i];
            if (!f.act_transforms || !f.act_transforms[i]) continue; /* an unquantized embedding: no integer product */
            assert_true(m8.w8 && m8.w8[i].N > 0);
            { /* per-row weights and inputs keep the plain form exactly when they run on oneDNN */
                const ml_weight_transform *wt = f.transforms[i];
                const ml_act_transform *at = f.act_transforms[i];
                const int K = (int)p->shape[1];
                const int per_row = wt->int8_group(wt->ctx, p) == K && at->int8_group(at->ctx, p, K) == K;
                assert_int_equal(m8.w8[i].plain != NULL, per_row && ml_gemm_int8_onednn());
                onednn_products += m8.w8[i].plain != NULL;
            }
            const int in = (int)p->shape[1], out = (int)p->shape[0], groups = in / m8.w8[i].group;
            ml_linear_forward(&m8, prods[k].kind, l, y8, prods[k].x, N);
            ml_linear_forward(&f, prods[k].kind, l, y32, prods[k].x, N);
            f.act_transforms[i]->forward(f.act_transforms[i]->ctx, p, xq, prods[k].x, N, in);
            const float *w = f.used_arena.base + p->offset;
            for (int t = 0; t < N; t++)
                for (int o = 0; o < out; o++) {
                    double ref = 0, mag = 0;
                    for (int j = 0; j < in; j++) {
                        const double v = (double)xq[(size_t)t * in + j] * w[(size_t)o * in + j];
                        ref += v, mag += fabs(v);
                    }
                    const double e8 = fabs(y8[(size_t)t * out + o] - ref), b8 = (groups + 4) * ldexp(1.0, -24) * mag + 1e-30;
                    const double e32 = fabs(y32[(size_t)t * out + o] - ref), b32 = 2 * (in + 2) * ldexp(1.0, -24) * mag + 1e-30;
                    if (e8 > b8) fail_msg("%s: %s row %d output %d: int8 %.9g, exact %.9g (bound %.3g)", m8.quant, p->name, t, o, y8[(size_t)t * out + o], ref, b8);
                    assert_true(e32 <= b32);
                    worst8 = fmax(worst8, e8 / b8), worst32 = fmax(worst32, e32 / b32);
                }
            checked++;
        }
    }
    printf("%s: %d products on a forward's inputs (%d on oneDNN); worst error int8 %.3f, sgemm %.3f of their bounds\n",
           m8.quant, checked, onednn_products, worst8, worst32);
    assert_true(checked >= 8);
    free(y8), free(y32), free(xq);
    ml_model_free(&m8);
    ml_model_free(&f);
}

static void test_products(void **state) {
    check_products("int4-g32", "int4-g32", "int8-token");
    check_products("q4_0", "q4_0", "q8_0");
    check_products("int4-channel-lsq", "int8", "int8-token");
    check_products("q8_0", "none", "int8-token");
}

static void test_model_int4_g32_int8_token(void **state) { compare("int4-g32", "none", "int8-token", 0); }
static void test_model_q4_0_q8_0(void **state) { compare("q4_0", "q4_0", "q8_0", 1); }
static void test_model_lsq_int8_token(void **state) { compare("int4-channel-lsq", "int8", "int8-token", 1); }

/* Backward reads the same dequantized weights and inputs on either engine: gradients bit for bit. */
static void test_backward_unchanged(void **state) {
    run_out f, s;
    run_qat("int4-g32", "int4-g32", "int8-token", ML_GEMM_OPENBLAS, 1, 0, &f);
    run_qat("int4-g32", "int4-g32", "int8-token", ML_GEMM_INT8, 1, 1, &s);
    assert_true(f.loss[0] == s.loss[0]);
    assert_memory_equal(f.grads, s.grads, f.n_grads * sizeof(float));
    free(f.logits), free(f.grads), free(s.logits), free(s.grads);
}

/* On the int8 engine the used copies come from the codes (code * scale): the fake quantizer's values (as numbers: a
 * zero may lose its sign). */
static void test_used_copies(void **state) {
    static const char *recipes[][3] = {{"int4-g32", "int4-g32", "int8-token"}, {"q4_0", "q8_0", "q8_0"},
                                       {"int4-channel-lsq", "int8", "int8-token"}, {"q8_0", "none", "int8-token"}};
    for (size_t r = 0; r < sizeof recipes / sizeof recipes[0]; r++) {
        ml_config c;
        ml_test_small_llama(&c, V, 128, 320, 32);
        ml_model m[2];
        ml_quant_recipe rc;
        assert_int_equal(ml_quant_recipe_parse(&rc, recipes[r][0], recipes[r][1], recipes[r][2]), ML_OK);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(ml_model_create(&m[k], &c), ML_OK);
            ml_model_init_weights(&m[k], 5);
            assert_int_equal(ml_quant_install(&m[k], &rc), ML_OK);
            assert_int_equal(ml_model_set_gemm_engine(&m[k], k ? ML_GEMM_OPENBLAS : ML_GEMM_INT8), ML_OK);
            assert_int_equal(ml_model_reserve(&m[k], B, T, T), ML_OK);
            assert_int_equal(ml_model_refresh_weights(&m[k]), ML_OK);
        }
        int packed = 0;
        for (int i = 0; i < m[0].n_params; i++) {
            if (!m[0].transforms || !m[0].transforms[i]) continue;
            const ml_param *p = &m[0].params[i];
            packed += m[0].w8[i].N > 0;
            const float *a = m[0].used_arena.base + p->offset, *b = m[1].used_arena.base + p->offset;
            for (size_t j = 0; j < p->numel; j++) /* equal values; a zero code gives +0 where the quantizer gave -0 */
                if (a[j] != b[j]) fail_msg("%s %s[%zu]: %.9g from the codes, %.9g fake-quantized", m[0].quant, p->name, j, a[j], b[j]);
        }
        assert_true(packed >= 7);
        ml_model_free(&m[0]);
        ml_model_free(&m[1]);
    }
}

/* The rule and the resolution: int8 in either precision; auto uses it exactly where the CPU has AVX512-VNNI;
 * openblas (the fp32 fake-quant forward) never. */
static void test_engine_choice(void **state) {
    ml_gemm_engine e;
    assert_int_equal(ml_gemm_engine_parse("int8", &e), ML_OK);
    assert_int_equal(e, ML_GEMM_INT8);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_INT8, 0, &e), ML_OK);
    assert_int_equal(e, ML_GEMM_INT8);
    assert_true(ml_gemm_int8_forward(ML_GEMM_INT8));
    assert_false(ml_gemm_int8_forward(ML_GEMM_OPENBLAS));
    assert_false(ml_gemm_int8_forward(ML_GEMM_BF16));
    assert_int_equal(ml_gemm_int8_forward(ML_GEMM_AUTO), ml_int8_vnni_available());
    /* a model without activation rounding has no integer product: nothing packed */
    ml_config c;
    ml_test_small_llama(&c, V, 128, 320, 32);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &c), ML_OK);
    ml_quant_recipe rc;
    assert_int_equal(ml_quant_recipe_parse(&rc, "int4-g32", NULL, NULL), ML_OK);
    assert_int_equal(ml_quant_install(&m, &rc), ML_OK);
    assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_INT8), ML_OK);
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    assert_null(m.w8);
    ml_model_free(&m);
}

int main(void) {
    ml_rng_seed(&rng, 21);
    const char *force = getenv("ML_INT8_ONEDNN");
    if (force && !strcmp(force, "1") && !ml_gemm_int8_onednn()) { /* the oneDNN run of this program has nothing to add */
        printf("skip: ML_INT8_ONEDNN=1 but this build has no oneDNN integer matmul for this CPU\n");
        return ML_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_model_int4_g32_int8_token),
        cmocka_unit_test(test_model_q4_0_q8_0),
        cmocka_unit_test(test_model_lsq_int8_token),
        cmocka_unit_test(test_backward_unchanged),
        cmocka_unit_test(test_used_copies),
        cmocka_unit_test(test_engine_choice),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
