/* The GEMM engine layer (model/ops/gemm.h): every engine this machine has (openblas, our AVX512-BF16 kernel,
 * oneDNN) against a double-precision product, in all four transposition layouts, beta 0 and 1, odd shapes and
 * leading dimensions larger than the rows; the dispatcher's rule, engine resolution and its errors, the record
 * of what ran; and a whole model in bf16 on each engine against fp32.
 *
 * Reference and tolerance. For the bf16 engines the reference multiplies the bf16-rounded inputs
 * (ml_bf16_round), whose products are exact in fp32, so the only error left is fp32 accumulation in whatever
 * order the engine sums:  |C - ref| <= (K + 2) * 2^-24 * (sum_k |a_k b_k| + |C_in|).  For openblas the inputs
 * are not rounded and each fp32 product adds one more rounding: 2 (K + 2) 2^-24 of the same sum. A wrong layout
 * or a truncation instead of a rounding is hundreds of times over. Each bf16 engine must also differ from the
 * unrounded product somewhere (it really computes in bf16; a silent fp32 fallback would not).
 * An engine missing here (no AVX512-BF16, a build without oneDNN) is skipped and the program exits 77. */
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
#include "model/config.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/ops/gemm.h"
#include "model/ops/gemm_bf16.h"
#include "optim/optimizer.h"
#include "train/trainer.h"
#include "tests/support/test_util.h"

static ml_rng rng;


/* How the operands are handed over (ml_gemm_operand): fp32 only, A or B or both as bf16 bits only, or both forms. */
enum { FORM_F32, FORM_A16, FORM_B16, FORM_AB16, FORM_BOTH, FORMS };
static const char *const form_name[FORMS] = {"fp32", "A bf16", "B bf16", "A, B bf16", "fp32 + bf16"};

/* The operand of stored rows x cols (row stride ld) in the given form; *copy receives the compact bf16 bits made
 * (free it), and the values of a bf16-only operand are replaced by their rounding (what the product multiplies). */
static ml_gemm_operand operand(float *x, int rows, int cols, int ld, int b16_only, int both, uint16_t **copy) {
    *copy = NULL;
    if (!b16_only && !both) return ml_gemm_f32(x, ld);
    *copy = malloc((size_t)rows * cols * sizeof(uint16_t));
    ml_bf16_convert(*copy, x, rows, cols, ld);
    if (b16_only)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) x[(size_t)r * ld + c] = ml_bf16_round(x[(size_t)r * ld + c]);
    return (ml_gemm_operand){b16_only ? NULL : x, *copy, ld};
}

/* One product on engine e against the reference; returns the largest |C - unrounded product| / sum |a b|. */
static double check_one(ml_gemm_engine e, int M, int N, int K, int ta, int tb, float beta, int pad, int form) {
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = ml_test_randn(&rng, na, 1), *B = ml_test_randn(&rng, nb, 1), *C = ml_test_randn(&rng, nc, 1), *C0 = malloc(nc * sizeof(float));
    memcpy(C0, C, nc * sizeof(float));
    uint16_t *a16, *b16;
    const ml_gemm_operand Ao = operand(A, ta ? K : M, ta ? M : K, lda, form == FORM_A16 || form == FORM_AB16,
                                       form == FORM_BOTH, &a16),
                          Bo = operand(B, tb ? N : K, tb ? K : N, ldb, form == FORM_B16 || form == FORM_AB16,
                                       form == FORM_BOTH, &b16);
    if (form == FORM_F32)
        ml_gemm(e, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    else
        ml_gemm_ops(e, ta, tb, M, N, K, Ao, Bo, beta, C, ldc);
    free(a16), free(b16);
    const int bf16 = e != ML_GEMM_OPENBLAS;
    double off_fp32 = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = beta != 0 ? (double)C0[(size_t)i * ldc + j] : 0, mag = fabs(ref), exact = ref;
            for (int k = 0; k < K; k++) {
                const float a = ml_test_op(A, lda, ta, i, k), b = ml_test_op(B, ldb, tb, k, j);
                const double p = bf16 ? (double)ml_bf16_round(a) * ml_bf16_round(b) : (double)a * b;
                ref += p, mag += fabs(p), exact += (double)a * b;
            }
            const double got = C[(size_t)i * ldc + j], tol = (bf16 ? 1 : 2) * (K + 2) * ldexp(1.0, -24) * mag + 1e-30;
            if (fabs(got - ref) > tol)
                fail_msg("%s, %s: M %d N %d K %d ta %d tb %d beta %g pad %d: C[%d][%d] = %.9g, reference %.9g "
                         "(tolerance %.3g)",
                         ml_gemm_engine_name(e), form_name[form], M, N, K, ta, tb, beta, pad, i, j, got, ref, tol);
            if (fabs(got - exact) / (mag + 1e-30) > off_fp32) off_fp32 = fabs(got - exact) / (mag + 1e-30);
        }
    for (int i = 0; i < M; i++) /* padding between rows of C is never written */
        for (int j = N; j < ldc; j++) assert_true(C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j]);
    free(A), free(B), free(C), free(C0);
    return off_fp32;
}

static const int shapes[][3] = {
    {1, 1, 1},   {1, 1, 2},    {2, 3, 1},    {3, 5, 7},     {1, 40, 9},  {17, 1, 33},   {14, 32, 2},
    {15, 33, 3}, {13, 31, 5},  {28, 64, 64}, {127, 65, 33}, {29, 47, 385}, {9, 70, 1001}, {350, 66, 40},
    {64, 216, 72}, {64, 72, 192}, {96, 250, 72}, {192, 72, 64}, /* MobileLLM-125M's shapes / 8 */
};

static void check_engine(ml_gemm_engine e) {
    if (!ml_gemm_engine_available(e)) ML_SKIP("GEMM engine %s is not available here", ml_gemm_engine_name(e));
    double off = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    double o = check_one(e, shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, (float)beta, (int)(s % 3) * 3,
                                         FORM_F32);
                    if (o > off) off = o;
                    /* operands handed over as bf16 bits: a shape of each kind, every layout */
                    for (int form = FORM_A16; form < FORMS && s % 4 == 1; form++)
                        check_one(e, shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, (float)beta, (int)(s % 3) * 3, form);
                }
    printf("%s: every layout within tolerance; largest |C - unrounded product| / sum|a b| = %.2e\n",
           ml_gemm_engine_name(e), off);
    if (e != ML_GEMM_OPENBLAS) {
        assert_true(off > 1e-5);    /* rounded to bf16 ... */
        assert_true(off <= 0x1p-7); /* ... and to nothing coarser: bf16 keeps 8 significant bits, so each input is
                                       within 2^-8 relative and each product within about 2^-7 */
    }
}

static void test_openblas(void **state) { check_engine(ML_GEMM_OPENBLAS); }
static void test_bf16(void **state) { check_engine(ML_GEMM_BF16); }
static void test_onednn(void **state) { check_engine(ML_GEMM_ONEDNN); }

/* The same product twice on one engine gives the same bits (what bit-exact resume needs). */
static void test_repeatable(void **state) {
    for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++) {
        if (!ml_gemm_engine_available((ml_gemm_engine)e)) continue;
        const int M = 200, N = 300, K = 250;
        float *A = ml_test_randn(&rng, (size_t)M * K, 1), *B = ml_test_randn(&rng, (size_t)K * N, 1), *C1 = malloc(sizeof(float) * M * N),
              *C2 = malloc(sizeof(float) * M * N);
        ml_gemm((ml_gemm_engine)e, 1, 0, M, N, K, A, M, B, N, 0.0f, C1, N);
        ml_gemm((ml_gemm_engine)e, 1, 0, M, N, K, A, M, B, N, 0.0f, C2, N);
        assert_memory_equal(C1, C2, sizeof(float) * M * N);
        free(A), free(B), free(C1), free(C2);
    }
}

static void test_degenerate(void **state) {
    for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++) {
        if (!ml_gemm_engine_available((ml_gemm_engine)e)) continue;
        float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {7}, B[1] = {8};
        ml_gemm((ml_gemm_engine)e, 0, 0, 2, 3, 0, A, 1, B, 3, 1.0f, C, 3); /* K = 0, beta 1: unchanged */
        ml_gemm((ml_gemm_engine)e, 0, 0, 0, 3, 1, A, 1, B, 3, 0.0f, C, 3); /* M = 0: nothing */
        for (int i = 0; i < 6; i++) assert_true(C[i] == (float)(i + 1));
        ml_gemm((ml_gemm_engine)e, 0, 0, 2, 3, 0, A, 1, B, 3, 0.0f, C, 3); /* K = 0, beta 0: zeros */
        for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
    }
}

/* Parsing, resolution (forced engines, ML_GEMM_ENGINE, errors) and the rule's fixed points. */
static void test_resolve(void **state) {
    ml_gemm_engine e;
    assert_int_equal(ml_gemm_engine_parse("onednn", &e), ML_OK);
    assert_int_equal(e, ML_GEMM_ONEDNN);
    assert_int_equal(ml_gemm_engine_parse("cuda", &e), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "unknown GEMM engine 'cuda'"));
    unsetenv("ML_GEMM_ENGINE");
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_AUTO, 1, &e), ML_OK);
    assert_int_equal(e, ML_GEMM_AUTO);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_OPENBLAS, 0, &e), ML_OK);
    assert_int_equal(e, ML_GEMM_OPENBLAS);
    for (int k = ML_GEMM_BF16; k <= ML_GEMM_ONEDNN; k++) {
        ml_status s = ml_gemm_engine_resolve((ml_gemm_engine)k, 0, &e); /* a bf16 engine with fp32 precision */
        assert_int_not_equal(s, ML_OK);
        if (ml_gemm_engine_available((ml_gemm_engine)k)) assert_non_null(strstr(ml_last_error(), "--precision bf16"));
        else assert_non_null(strstr(ml_last_error(), "not available"));
    }
    setenv("ML_GEMM_ENGINE", "openblas", 1);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_AUTO, 1, &e), ML_OK);
    assert_int_equal(e, ML_GEMM_OPENBLAS);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_AUTO, 0, &e), ML_OK); /* fp32: openblas keeps the fake-quant forward */
    assert_int_equal(e, ML_GEMM_OPENBLAS);
    setenv("ML_GEMM_ENGINE", "bf16", 1);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_AUTO, 0, &e), ML_OK); /* fp32: a bf16 engine does not apply */
    assert_int_equal(e, ML_GEMM_AUTO);
    if (ml_gemm_engine_available(ML_GEMM_BF16)) { /* an explicit engine wins over the environment */
        assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_BF16, 1, &e), ML_OK);
        assert_int_equal(e, ML_GEMM_BF16);
    }
    setenv("ML_GEMM_ENGINE", "fast", 1);
    assert_int_equal(ml_gemm_engine_resolve(ML_GEMM_AUTO, 1, &e), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "ML_GEMM_ENGINE"));
    unsetenv("ML_GEMM_ENGINE");
    /* the rule: fp32 is sgemm; one-row (decoding) products are sgemm; what it picks is available */
    assert_int_equal(ml_gemm_choose(0, 0, 1, 1024, 1536, 576), ML_GEMM_OPENBLAS);
    assert_int_equal(ml_gemm_choose(1, 0, 1, 1, 32000, 576), ML_GEMM_OPENBLAS);
    const ml_gemm_engine big = ml_gemm_choose(1, 0, 1, 1024, 1536, 576);
    assert_true(ml_gemm_engine_available(big));
    const ml_cpu_features *f = ml_cpu_features_get();
    const int onednn = (f->amx_bf16 || f->avx512_bf16) && ml_gemm_engine_available(ML_GEMM_ONEDNN);
    if (onednn) /* every product worth it, narrow ones (125M's q/o) too, in all three layouts */
        for (int layout = 0; layout < 4; layout++)
            assert_int_equal(layout == 3   ? big
                             : layout == 2 ? ml_gemm_choose(1, 1, 0, 576, 576, 1024)
                                           : ml_gemm_choose(1, 0, layout == 0, 1024, 576, 576),
                             ML_GEMM_ONEDNN);
    else if (!f->amx_bf16 && ml_gemm_engine_available(ML_GEMM_BF16)) { /* our kernel on wide weights only */
        assert_int_equal(big, ML_GEMM_BF16);
        for (int layout = 0; layout < 3; layout++)
            assert_int_equal(layout == 2 ? ml_gemm_choose(1, 1, 0, 576, 576, 1024)
                                         : ml_gemm_choose(1, 0, layout == 0, 1024, 576, 576), ML_GEMM_OPENBLAS);
    }
    printf("auto picks %s for 1024 x 1536 x 576 here\n", ml_gemm_engine_name(big));
}

/* The record of what ran: one row per (shape, layout, engine), calls counted. */
static void test_stats(void **state) {
    float *A = ml_test_randn(&rng, 64 * 64, 1), *B = ml_test_randn(&rng, 64 * 64, 1), *C = malloc(sizeof(float) * 64 * 64);
    ml_gemm_stats_reset();
    ml_gemm(ML_GEMM_OPENBLAS, 0, 1, 64, 64, 64, A, 64, B, 64, 0.0f, C, 64);
    ml_gemm(ML_GEMM_OPENBLAS, 0, 1, 64, 64, 64, A, 64, B, 64, 0.0f, C, 64);
    ml_gemm(ML_GEMM_OPENBLAS, 1, 0, 64, 64, 32, A, 64, B, 64, 0.0f, C, 64);
    ml_gemm_stat rows[8];
    assert_int_equal(ml_gemm_stats(rows, 8), 2);
    assert_int_equal(rows[0].calls, 2);
    assert_int_equal(rows[0].transB, 1);
    assert_int_equal(rows[0].engine, ML_GEMM_OPENBLAS);
    assert_true(rows[0].flops == 2 * 2.0 * 64 * 64 * 64);
    assert_int_equal(rows[1].K, 32);
    ml_gemm_stats_reset();
    assert_int_equal(ml_gemm_stats(rows, 8), 0);
    free(A), free(B), free(C);
}

/* A small model: loss and every gradient in bf16 on each engine against fp32. Bounds as in test_gemm_bf16
 * (loss within 1%, each gradient tensor at cosine > 0.999 and relative difference < 5%); openblas forced in bf16
 * precision must equal fp32 bit for bit, and each engine must repeat itself bit for bit. */
static void run_model(ml_precision prec, ml_gemm_engine e, double *loss, float **grads, size_t *n) {
    ml_config c;
    ml_test_small_llama(&c, 300, 128, 320, 32);
    enum { B = 2, T = 48 };
    int32_t tok[B * T], tgt[B * T];
    ml_rng r;
    ml_rng_seed(&r, 11);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)ml_rng_below(&r, 300), tgt[i] = (int32_t)ml_rng_below(&r, 300);
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    ml_model m;
    assert_int_equal(ml_model_create(&m, &c), ML_OK);
    ml_model_init_weights(&m, 3);
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    assert_int_equal(ml_model_set_precision(&m, prec), ML_OK);
    assert_int_equal(ml_model_set_gemm_engine(&m, e), ML_OK);
    ml_model_zero_grad(&m);
    int64_t cnt;
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (B * T), loss, &cnt), ML_OK);
    assert_int_equal(ml_model_backward(&m, &b), ML_OK);
    *loss /= (double)cnt;
    *n = m.grad_arena.capacity;
    *grads = malloc(*n * sizeof(float));
    memcpy(*grads, m.grad_arena.base, *n * sizeof(float));
    ml_model_free(&m);
}

static void test_model_engines(void **state) {
    unsetenv("ML_GEMM_ENGINE");
    double l32;
    float *g32;
    size_t n;
    run_model(ML_PRECISION_FP32, ML_GEMM_AUTO, &l32, &g32, &n);
    for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++) {
        if (e == ML_GEMM_INT8) continue; /* integer-grid products only: test_gemm_int8 */
        if (!ml_gemm_engine_available((ml_gemm_engine)e)) {
            ml_test_note_skip("model in bf16 on %s: engine not available", ml_gemm_engine_name((ml_gemm_engine)e));
            continue;
        }
        double l, l2;
        float *g, *g2;
        size_t n2;
        /* on openblas every product is fp32 when attention's tiles are too: the model equals the fp32 one */
        if (e == ML_GEMM_OPENBLAS) setenv("ML_ATTN_KERNEL", "fp32", 1);
        run_model(ML_PRECISION_BF16, (ml_gemm_engine)e, &l, &g, &n2);
        run_model(ML_PRECISION_BF16, (ml_gemm_engine)e, &l2, &g2, &n2);
        unsetenv("ML_ATTN_KERNEL");
        assert_true(l == l2);
        assert_memory_equal(g, g2, n * sizeof(float));
        double dot = 0, n0 = 0, n1 = 0, nd = 0;
        for (size_t i = 0; i < n; i++)
            dot += (double)g32[i] * g[i], n0 += (double)g32[i] * g32[i], n1 += (double)g[i] * g[i],
                nd += ((double)g[i] - g32[i]) * ((double)g[i] - g32[i]);
        const double cosv = dot / sqrt(n0 * n1), rel = sqrt(nd / n0);
        printf("bf16 on %-8s: loss %.6f (fp32 %.6f), gradient cosine %.6f, relative difference %.4f\n",
               ml_gemm_engine_name((ml_gemm_engine)e), l, l32, cosv, rel);
        if (e == ML_GEMM_OPENBLAS) {
            assert_true(l == l32);
            assert_memory_equal(g, g32, n * sizeof(float));
        } else {
            assert_true(l != l32);
            assert_true(fabs(l - l32) < 0.01 * l32);
            assert_true(cosv > 0.999 && rel < 0.05);
        }
        free(g), free(g2);
    }
    free(g32);
}

/* oneDNN reads bf16 copies of the weights, refreshed when the weights change (once per optimizer step): after a
 * change the model computes what a fresh model with the new weights computes. */
static void test_weight_copies(void **state) {
    if (!ml_gemm_engine_available(ML_GEMM_ONEDNN)) ML_SKIP("GEMM engine onednn is not available here");
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-v1.json", ML_SOURCE_DIR);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    enum { B = 2, T = 16 };
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 3) % cfg.vocab_size, tgt[i] = (i * 5 + 1) % cfg.vocab_size;
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    double loss[3];
    for (int k = 0; k < 2; k++) {
        ml_model m;
        assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
        ml_model_init_weights(&m, 5);
        assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
        if (k == 1) /* fresh model, already changed weights */
            for (size_t i = 0; i < m.param_arena.used; i++) m.param_arena.base[i] *= 0.75f;
        assert_int_equal(ml_model_set_precision(&m, ML_PRECISION_BF16), ML_OK);
        assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_ONEDNN), ML_OK);
        assert_non_null(m.w16);
        int64_t n;
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        assert_int_equal(ml_model_head_loss(&m, &b, 0.0f, &loss[k], &n), ML_OK);
        if (k == 0) { /* change the weights as an optimizer step would, and say so */
            for (size_t i = 0; i < m.param_arena.used; i++) m.param_arena.base[i] *= 0.75f;
            ml_model_weights_changed(&m);
            assert_int_equal(ml_model_forward(&m, &b), ML_OK);
            assert_int_equal(ml_model_head_loss(&m, &b, 0.0f, &loss[2], &n), ML_OK);
        }
        ml_model_free(&m);
    }
    printf("loss %.9g, after the change %.9g, fresh model %.9g\n", loss[0], loss[2], loss[1]);
    assert_true(loss[2] != loss[0]);
    assert_true(loss[2] == loss[1]);
}

/* Products written as bf16 (ml_gemm_ops_to_bf16) on every engine, each layout: within half a bf16 step of the
 * product of the rounded inputs (plus fp32 accumulation), and really rounded (not truncated). */
static void test_bf16_out(void **state) {
    static const int dims[][3] = {{1, 1, 1}, {17, 33, 65}, {64, 216, 72}, {130, 40, 300}};
    for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++) {
        if (e == ML_GEMM_INT8 || !ml_gemm_engine_available((ml_gemm_engine)e)) continue;
        for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const int M = dims[s][0], N = dims[s][1], K = dims[s][2], lda = ta ? M : K, ldb = tb ? K : N;
                    float *A = ml_test_randn(&rng, (size_t)M * K, 1), *B = ml_test_randn(&rng, (size_t)K * N, 1);
                    uint16_t *C16 = malloc((size_t)M * N * sizeof(uint16_t));
                    ml_gemm_ops_to_bf16((ml_gemm_engine)e, ta, tb, M, N, K, ml_gemm_f32(A, lda), ml_gemm_f32(B, ldb), C16);
                    const int rounds = e != ML_GEMM_OPENBLAS;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            double ref = 0, mag = 0;
                            for (int k = 0; k < K; k++) {
                                const float a = ml_test_op(A, lda, ta, i, k), b = ml_test_op(B, ldb, tb, k, j);
                                const double p = rounds ? (double)ml_bf16_round(a) * ml_bf16_round(b) : (double)a * b;
                                ref += p, mag += fabs(p);
                            }
                            const double got = ml_bf16_value(C16[(size_t)i * N + j]);
                            const double tol = fabs(ref) * 0x1p-8 + 2 * (K + 2) * ldexp(1.0, -24) * mag * 1.01 + 1e-30;
                            if (fabs(got - ref) > tol)
                                fail_msg("%s to bf16: M %d N %d K %d ta %d tb %d: C[%d][%d] = %.9g, reference %.9g",
                                         ml_gemm_engine_name((ml_gemm_engine)e), M, N, K, ta, tb, i, j, got, ref);
                        }
                    free(A), free(B), free(C16);
                }
    }
}

/* The optimizer's bf16 mirror: a step that writes the model's bf16 weight copies as it updates the weights leaves
 * exactly the copies a full conversion makes (every matrix, bit for bit; AdamW, and SGD with momentum), the refresh
 * before the next forward keeps them, and that forward gives the loss of a model whose copies were converted. */
static void test_optimizer_mirror(void **state) {
    if (!ml_gemm_engine_available(ML_GEMM_ONEDNN)) ML_SKIP("GEMM engine onednn is not available here");
    ml_config c;
    ml_test_small_llama(&c, 300, 128, 320, 32);
    enum { B = 2, T = 16, N = B * T };
    int32_t tok[N], tgt[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 7 + 3) % 300, tgt[i] = (i * 5 + 1) % 300;
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    for (int kind = 0; kind < 2; kind++) {
        ml_optim_config oc = ml_optim_defaults(kind ? ML_OPTIM_SGD : ML_OPTIM_ADAMW);
        oc.momentum = kind ? 0.9 : 0.0;
        double loss[2];
        uint16_t *copies[2];
        size_t n16 = 0;
        for (int mirrored = 0; mirrored < 2; mirrored++) {
            ml_model m;
            ml_optimizer o;
            assert_int_equal(ml_model_create(&m, &c), ML_OK);
            ml_model_init_weights(&m, 3);
            assert_int_equal(ml_model_set_precision(&m, ML_PRECISION_BF16), ML_OK);
            assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_ONEDNN), ML_OK);
            assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
            assert_int_equal(ml_optimizer_for_model(&o, &m, &oc), ML_OK);
            uint16_t *mirror = ml_model_bf16_mirror(&m);
            assert_non_null(mirror);
            for (int step = 0; step < 2; step++) {
                double l;
                int64_t cnt;
                ml_model_zero_grad(&m);
                assert_int_equal(ml_model_forward(&m, &b), ML_OK);
                assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / N, &l, &cnt), ML_OK);
                assert_int_equal(ml_model_backward(&m, &b), ML_OK);
                assert_int_equal(ml_optim_step_mirrored(&o, m.param_arena.base, m.grad_arena.base, 1e-2f,
                                                        mirrored ? mirror : NULL), ML_OK);
                ml_model_weights_stepped(&m, mirrored);
                assert_int_equal(m.w16_current, mirrored);
            }
            int64_t cnt;
            assert_int_equal(ml_model_forward(&m, &b), ML_OK); /* refreshes: converts only without the mirror */
            assert_int_equal(ml_model_head_loss(&m, &b, 0.0f, &loss[mirrored], &cnt), ML_OK);
            n16 = m.w16_numel;
            copies[mirrored] = malloc(n16 * sizeof(uint16_t));
            for (size_t i = 0; i < n16; i++) copies[mirrored][i] = 0;
            for (int i = 0; i < m.n_params; i++) { /* the copies products read: the matrices */
                const ml_param *p = &m.params[i];
                if (p->ndim == 2) memcpy(copies[mirrored] + p->offset, m.w16 + p->offset, p->numel * sizeof(uint16_t));
            }
            ml_optim_free(&o);
            ml_model_free(&m);
        }
        printf("%s: loss after two steps %.9g with the mirror, %.9g with converted copies\n", kind ? "sgd" : "adamw",
               loss[1], loss[0]);
        assert_memory_equal(copies[0], copies[1], n16 * sizeof(uint16_t));
        assert_true(loss[0] == loss[1]);
        free(copies[0]), free(copies[1]);
    }
}

/* bf16 activations (ml_model.act16): with oneDNN reading bf16 operands, the norms' outputs and gate/up are kept as
 * bf16 bits, which halves their share of the saved activations; SwiGLU's gradients and the head's logits and their
 * gradient are bf16 too. The loss and gradients stay those of fp32 activations up to the rounding of gate, up, dh and
 * the logits (the norm outputs and output gradients are rounded for their products either way):
 * compared with the same model whose activations stay fp32 (an identity activation transform turns act16 off, and
 * its setter re-plans the reserved activations). With recomputation (one shared set of block buffers, refilled in
 * backward) the bf16 activations give the same bits as without. */
static void copy_input(void *ctx, const ml_param *p, float *xq, const float *x, int N, int in) {
    (void)ctx, (void)p;
    memcpy(xq, x, (size_t)N * in * sizeof(float));
}

static void test_act16(void **state) {
    if (!ml_gemm_engine_available(ML_GEMM_ONEDNN)) ML_SKIP("GEMM engine onednn is not available here");
    ml_config c;
    ml_test_small_llama(&c, 300, 128, 320, 32);
    enum { B = 2, T = 48, N = B * T };
    int32_t tok[N], tgt[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 7 + 3) % 300, tgt[i] = (i * 5 + 1) % 300;
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    const ml_act_transform identity = {.name = "identity", .forward = copy_input};
    double loss[4];
    size_t saved[4], n = 0;
    float *grads[4];
    for (int k = 0; k < 4; k++) { /* 0: bf16 activations, 1: fp32 ones, 2: bf16 ones recomputed, 3: bf16, head in chunks */
        ml_model m;
        assert_int_equal(ml_model_create(&m, &c), ML_OK);
        ml_model_init_weights(&m, 3);
        m.recompute = k == 2;
        assert_int_equal(ml_model_set_precision(&m, ML_PRECISION_BF16), ML_OK);
        assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_ONEDNN), ML_OK);
        assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
        assert_int_equal(m.act16, 1);
        if (k == 3) m.head_chunk = 20; /* bf16 logits: chunks of 40 rows, so 40 + 40 + 16 */
        assert_true(m.acts[0].ln1_16 && m.acts[0].gate16 && !m.acts[0].ln1 && !m.acts[0].gate);
        for (int i = 0; k == 1 && i < m.n_params; i++)
            if (m.params[i].ndim == 2 && m.params[i].kind != ML_P_EMBED)
                assert_int_equal(ml_model_set_act_transform(&m, &m.params[i], &identity), ML_OK);
        assert_int_equal(m.act16, k != 1);
        assert_true(k != 1 ? m.acts[0].up16 && !m.acts[0].up : m.acts[0].up && !m.acts[0].up16);
        saved[k] = m.act_saved_floats;
        ml_model_zero_grad(&m);
        int64_t cnt;
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / N, &loss[k], &cnt), ML_OK);
        assert_int_equal(ml_model_backward(&m, &b), ML_OK);
        n = m.grad_arena.capacity;
        grads[k] = malloc(n * sizeof(float));
        memcpy(grads[k], m.grad_arena.base, n * sizeof(float));
        ml_model_free(&m);
    }
    double dot = 0, n0 = 0, n1 = 0, nd = 0;
    for (size_t i = 0; i < n; i++)
        dot += (double)grads[1][i] * grads[0][i], n0 += (double)grads[1][i] * grads[1][i],
            n1 += (double)grads[0][i] * grads[0][i], nd += ((double)grads[0][i] - grads[1][i]) * ((double)grads[0][i] - grads[1][i]);
    const double cosv = dot / sqrt(n0 * n1), rel = sqrt(nd / n0);
    /* per block: two norm outputs of N x hidden and gate, up of N x intermediate, each in half the floats */
    const size_t halved = (size_t)c.num_layers * ((size_t)N * c.hidden_size + (size_t)N * c.intermediate_size);
    printf("saved activations: %zu floats with bf16 activations, %zu with fp32 (%d blocks); loss %.9g against %.9g; "
           "gradient cosine %.7f, relative difference %.5f\n",
           saved[0], saved[1], c.num_layers, loss[0], loss[1], cosv, rel);
    assert_true(saved[1] - saved[0] >= halved);
    assert_true(loss[0] != loss[1] && fabs(loss[0] - loss[1]) < 1e-3 * fabs(loss[1]));
    assert_true(cosv > 0.9999 && rel < 0.02);
    assert_true(saved[2] < saved[0] && loss[2] == loss[0]);
    assert_memory_equal(grads[2], grads[0], n * sizeof(float));
    /* the head in chunks: the same rows' losses, the head's weight gradient summed in another order */
    double dmax = 0, gmax = 0;
    for (size_t i = 0; i < n; i++) {
        dmax = fmax(dmax, fabs((double)grads[3][i] - grads[0][i]));
        gmax = fmax(gmax, fabs((double)grads[0][i]));
    }
    printf("head in 3 chunks: loss %.9g against %.9g in one; largest gradient difference %.3g of %.3g\n", loss[3],
           loss[0], dmax, gmax);
    assert_true(fabs(loss[3] - loss[0]) < 1e-6 * fabs(loss[0]) && dmax < 1e-3 * gmax);
    free(grads[0]), free(grads[1]), free(grads[2]), free(grads[3]);
}

int main(void) {
    ml_rng_seed(&rng, 9);
    char cpu[160], engines[1024];
    ml_cpu_features_describe(cpu, sizeof cpu);
    ml_gemm_engines_describe(engines, sizeof engines);
    printf("CPU features: %s\n%s\n", cpu, engines);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openblas),   cmocka_unit_test(test_bf16),  cmocka_unit_test(test_onednn),
        cmocka_unit_test(test_repeatable), cmocka_unit_test(test_degenerate), cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_stats),      cmocka_unit_test(test_model_engines), cmocka_unit_test(test_weight_copies),
        cmocka_unit_test(test_bf16_out),   cmocka_unit_test(test_act16),
        cmocka_unit_test(test_optimizer_mirror),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
