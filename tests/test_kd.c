/* Distillation losses (forward KL, reverse KL, JSD(beta)) at several temperatures, alone and mixed
 * with cross-entropy: per-row loss and the gradient with respect to the student's logits against
 * PyTorch autograd (python3-torch), tolerance 1e-5 relative to the largest value. Then through the
 * fused head: a student distilled from an identical teacher has zero divergence and gradient. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "distill/kd_head.h"
#include "distill/kd_loss.h"
#include "formats/npy.h"
#include "tests/support/test_util.h"

enum { N = 6, V = 37 };

static const char *PY =
    "import sys, numpy as np, torch\n"
    "d = sys.argv[1]; kind = sys.argv[2]; tau = float(sys.argv[3]); beta = float(sys.argv[4]); w = float(sys.argv[5])\n"
    "zs = torch.tensor(np.load(d + '/zs.npy'), dtype=torch.float64, requires_grad=True)\n"
    "zt = torch.tensor(np.load(d + '/zt.npy'), dtype=torch.float64)\n"
    "y = torch.tensor(np.load(d + '/y.npy')).long()\n"
    "ls, lt = torch.log_softmax(zs / tau, -1), torch.log_softmax(zt / tau, -1)\n"
    "ps, pt = ls.exp(), lt.exp()\n"
    "if kind == 'fkl': div = (pt * (lt - ls)).sum(-1)\n"
    "elif kind == 'rkl': div = (ps * (ls - lt)).sum(-1)\n"
    "else:\n"
    "    lm = torch.log(beta * pt + (1 - beta) * ps)\n"
    "    div = beta * (pt * (lt - lm)).sum(-1) + (1 - beta) * (ps * (ls - lm)).sum(-1)\n"
    "ce = torch.nn.functional.cross_entropy(zs, y.clamp(min=0), reduction='none')\n"
    "mask = (y >= 0).double()\n"
    "row = ((1 - w) * tau * tau * div + w * ce) * mask\n"
    "row.sum().backward()\n"
    "np.save(d + '/row.npy', row.detach().numpy().astype(np.float32))\n"
    "np.save(d + '/grad.npy', zs.grad.numpy().astype(np.float32))\n";

static void check(const char *dir, ml_kd_kind kind, float tau, float beta, float w) {
    ml_rng r;
    ml_rng_seed(&r, 11);
    float zs[N * V], zt[N * V], zs0[N * V], zt0[N * V], kd[N], ce[N];
    int32_t y[N] = {3, -1, 0, 36, 7, 12};
    for (int i = 0; i < N * V; i++) {
        zs0[i] = (float)(2.0 * ml_rng_normal(&r));
        zt0[i] = (float)(3.0 * ml_rng_normal(&r));
    }
    int64_t shape[2] = {N, V}, yshape[1] = {N};
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "zs.npy"), zs0, 2, shape), ML_OK);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "zt.npy"), zt0, 2, shape), ML_OK);
    assert_int_equal(ml_npy_write_i32(ml_test_path(dir, "y.npy"), y, 1, yshape), ML_OK);
    FILE *f = fopen(ml_test_path(dir, "kd_ref.py"), "w");
    fputs(PY, f);
    fclose(f);
    assert_int_equal(ml_test_run("%s %s/kd_ref.py %s %s %g %g %g", ML_PYTHON, dir, dir, ml_kd_kind_name(kind), tau, beta, w),
                     0);
    ml_kd_config c = {kind, tau, beta, w};
    assert_int_equal(ml_kd_config_check(&c), ML_OK);
    memcpy(zs, zs0, sizeof zs);
    memcpy(zt, zt0, sizeof zt);
    ml_kd_rows(zs, zt, kd, ce, y, N, V, &c, 1.0f);
    ml_npy_array row, grad;
    assert_int_equal(ml_npy_read(ml_test_path(dir, "row.npy"), &row), ML_OK);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "grad.npy"), &grad), ML_OK);
    const float *rr = row.data, *gg = grad.data;
    double scale_g = 0, err_g = 0;
    for (int i = 0; i < N; i++) {
        double mine = y[i] < 0 ? 0 : (1 - w) * kd[i] + w * ce[i];
        if (fabs(mine - rr[i]) > 1e-5 * (1 + fabs(rr[i])))
            fail_msg("%s tau %g w %g: row %d loss %.7f vs torch %.7f", ml_kd_kind_name(kind), tau, w, i, mine, rr[i]);
    }
    for (int i = 0; i < N * V; i++) {
        scale_g = fmax(scale_g, fabs(gg[i]));
        err_g = fmax(err_g, fabs(zs[i] - gg[i]));
    }
    if (err_g > 1e-5 * scale_g)
        fail_msg("%s tau %g w %g: gradient off by %.3g (scale %.3g)", ml_kd_kind_name(kind), tau, w, err_g, scale_g);
    /* loss only (grad_scale 0) gives the same losses and leaves the logits alone */
    float kd2[N], ce2[N];
    memcpy(zs, zs0, sizeof zs);
    memcpy(zt, zt0, sizeof zt);
    ml_kd_rows(zs, zt, kd2, ce2, y, N, V, &c, 0.0f);
    assert_memory_equal(zs, zs0, sizeof zs);
    for (int i = 0; i < N; i++) assert_float_equal(kd2[i], kd[i], 0);
    ml_npy_free(&row);
    ml_npy_free(&grad);
}

static void test_losses_against_torch(void **state) {
    const char *dir = ml_test_tmpdir("kd");
    const float taus[] = {1.0f, 2.5f};
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < 2; t++) {
            check(dir, (ml_kd_kind)k, taus[t], 0.3f, 0.0f);
            check(dir, (ml_kd_kind)k, taus[t], 0.7f, 0.25f);
        }
}

static void test_config_checks(void **state) {
    ml_kd_kind k;
    assert_int_equal(ml_kd_kind_parse("jsd", &k), ML_OK);
    assert_int_equal(k, ML_KD_JSD);
    assert_int_equal(ml_kd_kind_parse("kl", &k), ML_ERR_ARG);
    ml_kd_config bad_tau = {ML_KD_FKL, 0.0f, 0.5f, 0.0f}, bad_w = {ML_KD_FKL, 1.0f, 0.5f, 1.5f},
                 bad_beta = {ML_KD_JSD, 1.0f, 1.0f, 0.0f};
    assert_int_equal(ml_kd_config_check(&bad_tau), ML_ERR_ARG);
    assert_int_equal(ml_kd_config_check(&bad_w), ML_ERR_ARG);
    assert_int_equal(ml_kd_config_check(&bad_beta), ML_ERR_ARG);
}

/* Through the fused head: student == teacher gives zero divergence and zero gradient; a
 * different teacher gives a positive divergence; vocabularies must match. */
static void test_fused_head_self_distillation(void **state) {
    ml_config c;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-r1.json", ML_SOURCE_DIR);
    assert_int_equal(ml_config_load(&c, path), ML_OK);
    ml_model s, t, other;
    assert_int_equal(ml_model_create(&s, &c), ML_OK);
    assert_int_equal(ml_model_create(&t, &c), ML_OK);
    assert_int_equal(ml_model_create(&other, &c), ML_OK);
    ml_model_init_weights(&s, 3);
    ml_model_init_weights(&t, 3);
    ml_model_init_weights(&other, 4);
    for (ml_model *m = &s; m; m = m == &s ? &t : m == &t ? &other : NULL)
        assert_int_equal(ml_model_reserve(m, 2, 16, 16), ML_OK);
    int32_t tok[32], tgt[32];
    for (int i = 0; i < 32; i++) tok[i] = (i * 37) % 259, tgt[i] = (i * 53 + 1) % 259;
    ml_batch b = {.tokens = tok, .targets = tgt, .B = 2, .T = 16};
    ml_kd_config kc = {ML_KD_FKL, 2.0f, 0.5f, 0.0f};
    double sum;
    int64_t n;
    ml_kd_stats st = {0};
    assert_int_equal(ml_model_forward(&s, &b), ML_OK);
    assert_int_equal(ml_model_forward(&t, &b), ML_OK);
    ml_model_zero_grad(&s);
    assert_int_equal(ml_kd_head_loss(&s, &t, &b, &kc, 1.0f / 32, &sum, &n, &st), ML_OK);
    assert_int_equal(n, 32);
    assert_true(fabs(sum) < 1e-5);
    double gmax = 0;
    for (size_t i = 0; i < (size_t)32 * c.hidden_size; i++) gmax = fmax(gmax, fabs(s.d_ln_f[i]));
    assert_true(gmax < 1e-6);
    assert_int_equal(ml_model_forward(&other, &b), ML_OK);
    assert_int_equal(ml_kd_head_loss(&s, &other, &b, &kc, 0.0f, &sum, &n, NULL), ML_OK);
    assert_true(sum / n > 1e-3);
    ml_model_free(&s), ml_model_free(&t), ml_model_free(&other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses_against_torch),
        cmocka_unit_test(test_config_checks),
        cmocka_unit_test(test_fused_head_self_distillation),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
