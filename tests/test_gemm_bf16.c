/* The bf16 GEMM (model/ops/gemm_bf16.c) against a double-precision product of the same bf16-rounded
 * inputs, for many shapes (tiny, odd K, edges of every tile and block, scaled-down MobileLLM-125M
 * shapes), all four transposition combinations (the model uses three), beta 0 and 1, and leading
 * dimensions larger than the rows.
 *
 * Tolerance. Products of two bf16 numbers (8-bit significands) are exact in fp32; the only error left
 * is fp32 accumulation, at most about K fp32 roundings of partial sums bounded by sum_k |a_k b_k|:
 *   |C - ref| <= (K + 2) * 2^-24 * (sum_k |a_k b_k| + |C_in|)     (C_in: the prior C when beta = 1)
 * A packing mistake (wrong pair, row or column) or truncating instead of rounding to bf16 gives errors
 * near 2^-9 * sum |a_k b_k| or larger, hundreds of times this bound for the K used here.
 * The matmul wrappers' backward (dX, dW) is checked against the same reference, and the bf16 products
 * against fp32 OpenBLAS ones to bf16 accuracy (a few 2^-9 relative), which shows the rounding is bf16
 * and not something coarser. Whole network: a small model's loss and every parameter gradient in bf16
 * mode agree with fp32 mode to bf16 accuracy (loss within 1%, each gradient tensor at cosine > 0.999
 * and relative difference < 5%; measured about 1e-3 and 1-2%). */
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
#include "model/model.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"
#include "tests/support/test_util.h"

static ml_rng rng;


/* One product checked against the reference; returns the worst error / tolerance ratio. */
static double check_one(int M, int N, int K, int ta, int tb, float beta, int pad) {
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = ml_test_randn(&rng, na, 1), *B = ml_test_randn(&rng, nb, 1), *C = ml_test_randn(&rng, nc, 1), *C0 = malloc(nc * sizeof(float));
    memcpy(C0, C, nc * sizeof(float));
    ml_gemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = beta != 0 ? beta * (double)C0[(size_t)i * ldc + j] : 0, mag = fabs(ref);
            for (int k = 0; k < K; k++) {
                double p = (double)ml_bf16_round(ml_test_op(A, lda, ta, i, k)) * ml_bf16_round(ml_test_op(B, ldb, tb, k, j));
                ref += p;
                mag += fabs(p);
            }
            double tol = (K + 2) * ldexp(1.0, -24) * mag + 1e-30, err = fabs(C[(size_t)i * ldc + j] - ref);
            if (err / tol > worst) worst = err / tol;
            if (err > tol)
                fail_msg("M %d N %d K %d ta %d tb %d beta %g: C[%d][%d] = %.9g, reference %.9g (tolerance %.3g)", M, N,
                         K, ta, tb, beta, i, j, C[(size_t)i * ldc + j], ref, tol);
        }
    /* padding between rows of C is never written */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) assert_true(C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j]);
    free(A), free(B), free(C), free(C0);
    return worst;
}

static const int shapes[][3] = {
    {1, 1, 1},     {1, 1, 2},     {2, 3, 1},      {3, 5, 7},      {1, 40, 9},     {17, 1, 33},  {14, 32, 2},
    {15, 33, 3},   {13, 31, 5},   {28, 64, 64},   {127, 65, 33},  {29, 47, 385},  {9, 70, 1001}, {400, 20, 20},
    {350, 66, 40}, /* more rows than one L2 block of panels */
    {64, 216, 72}, {64, 192, 72}, {64, 72, 192},  {96, 250, 72}, /* 125M shapes / 8: qkv, gate/up, down, head */
    {72, 72, 64},  {192, 72, 64},                                /* dW of those: M = out, N = in, K = tokens */
};

static void test_shapes(void **state) {
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    double w = check_one(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, (float)beta, (int)(s % 3) * 3);
                    if (w > worst) worst = w;
                }
    printf("worst error / tolerance over all shapes: %.3f\n", worst);
}

static void test_degenerate(void **state) {
    /* K = 0: C = beta * C; M or N = 0: nothing touched */
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {7}, B[1] = {8};
    ml_gemm_bf16(0, 0, 2, 3, 0, A, 1, B, 3, 1.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == (float)(i + 1));
    ml_gemm_bf16(0, 0, 0, 3, 1, A, 1, B, 3, 0.0f, C, 3);
    ml_gemm_bf16(0, 0, 2, 0, 1, A, 1, B, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == (float)(i + 1));
    ml_gemm_bf16(0, 0, 2, 3, 0, A, 1, B, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
}

static void test_rounding(void **state) {
    assert_true(ml_bf16_round(1.0f) == 1.0f);
    assert_true(ml_bf16_round(1.0f + 0x1p-8f) == 1.0f);                 /* tie: to even (down) */
    assert_true(ml_bf16_round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);  /* tie: to even (up) */
    assert_true(ml_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);
    assert_true(ml_bf16_round(-3.0f) == -3.0f);
    assert_true(ml_bf16_round(0x1p-130f) == 0.0f); /* denormal: zero, as vcvtne2ps2bf16 */
    assert_true(isinf(ml_bf16_round(INFINITY)));
    assert_true(isnan(ml_bf16_round(NAN)));
    assert_true(isinf(ml_bf16_round(3.4e38f))); /* rounds past the largest bf16 */
    /* the packing converts exactly as ml_bf16_round: 1 x 1 x 1 products against 1.0 */
    for (int t = 0; t < 1000; t++) {
        float a = (float)ml_rng_normal(&rng) * 100.0f, one = 1.0f, c;
        ml_gemm_bf16(t & 1, (t >> 1) & 1, 1, 1, 1, &a, 1, &one, 1, 0.0f, &c, 1);
        assert_true(c == ml_bf16_round(a));
    }
}

/* ml_bf16_round_row (VCVTNEPS2BF16 where the CPU has it) gives ml_bf16_bits' bits for every sign and exponent (zeros,
 * denormals, infinities, NaNs with their payloads), with the low half of the mantissa at and around every rounding
 * boundary and at random, and for rows whose length leaves a partial vector. */
static void test_round_row_matches_bits(void **state) {
    (void)state;
    enum { LOWS = 24, N = (1 << 16) * LOWS };
    static const uint32_t fixed[] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x7FFE, 0x8002};
    static float src[N];
    static uint16_t got[N];
    uint32_t k = 0;
    for (uint32_t hi = 0; hi < (1u << 16); hi++)
        for (int j = 0; j < LOWS; j++) {
            const uint32_t lo = j < 8 ? fixed[j] : (uint32_t)ml_rng_below(&rng, 1u << 16);
            const uint32_t u = hi << 16 | lo;
            memcpy(&src[k++], &u, 4);
        }
    ml_bf16_round_row(got, src, N);
    for (size_t i = 0; i < N; i++)
        if (got[i] != ml_bf16_bits(src[i])) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            fail_msg("input %08x: %04x, ml_bf16_bits %04x", u, got[i], ml_bf16_bits(src[i]));
        }
    for (size_t n = 0; n < 40; n++) { /* partial vectors, and nothing written past n */
        uint16_t row[48];
        memset(row, 0xAB, sizeof row);
        ml_bf16_round_row(row, src + 1000 * n, n);
        for (size_t i = 0; i < 48; i++) assert_int_equal(row[i], i < n ? ml_bf16_bits(src[1000 * n + i]) : 0xABAB);
    }
}

/* The model's three layouts through the matmul wrappers, against the reference and against fp32. */
static void test_matmul_wrappers(void **state) {
    const int N = 70, in = 45, out = 37;
    float *x = ml_test_randn(&rng, (size_t)N * in, 1), *w = ml_test_randn(&rng, (size_t)out * in, 1), *dy = ml_test_randn(&rng, (size_t)N * out, 1);
    float *y = malloc(sizeof(float) * N * out), *y32 = malloc(sizeof(float) * N * out);
    float *dx = ml_test_randn(&rng, (size_t)N * in, 1), *dx0 = malloc(sizeof(float) * N * in), *dx32 = malloc(sizeof(float) * N * in);
    float *dw = ml_test_randn(&rng, (size_t)out * in, 1), *dw0 = malloc(sizeof(float) * out * in), *dw32 = malloc(sizeof(float) * out * in);
    memcpy(dx0, dx, sizeof(float) * N * in);
    memcpy(dw0, dw, sizeof(float) * out * in);
    memcpy(dw32, dw, sizeof(float) * out * in);
    ml_matmul_forward_bf16(y, x, w, N, in, out);
    ml_matmul_forward(y32, x, w, N, in, out);
    ml_matmul_backward_bf16(dx, dw, dy, x, w, N, in, out, 1);
    ml_matmul_backward(dx32, dw32, dy, x, w, N, in, out, 0);
    double worst_rel = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < in; i++) {
                double p = (double)ml_bf16_round(x[n * in + i]) * ml_bf16_round(w[o * in + i]);
                ref += p, mag += fabs(p);
            }
            assert_true(fabs(y[n * out + o] - ref) <= (in + 2) * 0x1p-24 * mag);
            double rel = fabs(y[n * out + o] - y32[n * out + o]) / mag;
            if (rel > worst_rel) worst_rel = rel;
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double ref = dx0[n * in + i], mag = fabs(ref);
            for (int o = 0; o < out; o++) {
                double p = (double)ml_bf16_round(dy[n * out + o]) * ml_bf16_round(w[o * in + i]);
                ref += p, mag += fabs(p);
            }
            assert_true(fabs(dx[n * in + i] - ref) <= (out + 2) * 0x1p-24 * mag);
            double rel = fabs(dx[n * in + i] - dx0[n * in + i] - dx32[n * in + i]) / mag;
            if (rel > worst_rel) worst_rel = rel;
        }
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double ref = dw0[o * in + i], mag = fabs(ref);
            for (int n = 0; n < N; n++) {
                double p = (double)ml_bf16_round(dy[n * out + o]) * ml_bf16_round(x[n * in + i]);
                ref += p, mag += fabs(p);
            }
            assert_true(fabs(dw[o * in + i] - ref) <= (N + 2) * 0x1p-24 * mag);
            double rel = fabs(dw[o * in + i] - dw32[o * in + i]) / mag;
            if (rel > worst_rel) worst_rel = rel;
        }
    /* each input rounded by at most 2^-9 relative: a product by at most about 2^-8 of sum |a b| */
    printf("largest |bf16 - fp32| / sum|a b|: %.2e (bound 2^-8 = %.2e)\n", worst_rel, 0x1p-8);
    assert_true(worst_rel <= 0x1p-8);
    assert_true(worst_rel > 1e-6); /* and the inputs really were rounded */
    free(x), free(w), free(dy), free(y), free(y32), free(dx), free(dx0), free(dx32), free(dw), free(dw0), free(dw32);
}

/* The model in bf16 mode against fp32 mode: same weights, same batch. */
static void test_model_bf16_vs_fp32(void **state) {
    if (!ml_bf16_available()) ML_SKIP("this CPU has no AVX512-BF16, so the model refuses bf16 mode");
    ml_config c;
    ml_test_small_llama(&c, 67, 64, 96, 16);
    enum { B = 2, T = 24 };
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)ml_rng_below(&rng, 67), tgt[i] = (int32_t)ml_rng_below(&rng, 67);
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    ml_model m[2];
    double loss[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ml_model_create(&m[k], &c), ML_OK);
        ml_model_init_weights(&m[k], 3);
        assert_int_equal(ml_model_reserve(&m[k], B, T, T), ML_OK);
        if (k == 1) { /* the kernel forced: the dispatcher would leave this small model's products on sgemm */
            assert_int_equal(ml_model_set_precision(&m[k], ML_PRECISION_BF16), ML_OK);
            assert_int_equal(ml_model_set_gemm_engine(&m[k], ML_GEMM_BF16), ML_OK);
        }
        ml_model_zero_grad(&m[k]);
        int64_t n;
        assert_int_equal(ml_model_forward(&m[k], &b), ML_OK);
        assert_int_equal(ml_model_head_loss(&m[k], &b, 1.0f / (B * T), &loss[k], &n), ML_OK);
        assert_int_equal(ml_model_backward(&m[k], &b), ML_OK);
        loss[k] /= (double)n;
    }
    printf("loss fp32 %.6f bf16 %.6f\n", loss[0], loss[1]);
    assert_true(loss[0] != loss[1]);
    assert_true(fabs(loss[1] - loss[0]) < 0.01 * loss[0]);
    double worst_cos = 1, worst_rel = 0;
    for (int p = 0; p < m[0].n_params; p++) {
        const float *g0 = ml_param_grad(&m[0], &m[0].params[p]), *g1 = ml_param_grad(&m[1], &m[1].params[p]);
        double dot = 0, n0 = 0, n1 = 0, nd = 0;
        for (size_t i = 0; i < m[0].params[p].numel; i++) {
            dot += (double)g0[i] * g1[i], n0 += (double)g0[i] * g0[i], n1 += (double)g1[i] * g1[i];
            nd += ((double)g1[i] - g0[i]) * ((double)g1[i] - g0[i]);
        }
        double cosv = dot / sqrt(n0 * n1 + 1e-300), rel = sqrt(nd / (n0 + 1e-300));
        if (cosv < worst_cos) worst_cos = cosv;
        if (rel > worst_rel) worst_rel = rel;
        if (cosv < 0.999 || rel > 0.05)
            fail_msg("%s: gradient cosine %.6f, relative difference %.4f", m[0].params[p].name, cosv, rel);
    }
    printf("gradients: worst cosine %.6f, worst relative difference %.4f\n", worst_cos, worst_rel);
    ml_model_free(&m[0]);
    ml_model_free(&m[1]);
}

int main(void) {
    ml_rng_seed(&rng, 5);
    printf("AVX512-BF16 %s\n", ml_bf16_available() ? "available: testing the vdpbf16ps kernel"
                                                   : "not available: testing the portable path");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_round_row_matches_bits),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_matmul_wrappers),
        cmocka_unit_test(test_model_bf16_vs_fp32),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
