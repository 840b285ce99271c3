/* quant/'s int grids against torchao's own fake quantizers (IntxFakeQuantizer: group-wise int4 of 8da4w, per-channel
 * int8, per-channel int4 with a learned scale, per-token asymmetric int8 activations), run by
 * tests/reference/quant_torchao.py in a venv with torchao: $MOBILELLM_QUANT_VENV, default
 * $HOME/.cache/mobilellm/venv-quant (scripts/setup_quant_venv.sh makes it). Without it the test is skipped
 * (exit 77, with a message).
 *
 * Values and initial scales must be bit-identical. Gradients: torchao's autograd multiplies the straight-through
 * gradient by s and then by 1/s, ours passes it unchanged, so they agree within 3e-7 relative; a learned scale's
 * gradient (a row sum) within 1e-5 of the row's sum of |terms|.
 *
 * One deliberate difference: torch 2.x's clamp passes no gradient at its bounds (torch 1.13's did), so torchao,
 * which clamps after its straight-through round, also zeroes the gradient of every value that rounds exactly to
 * qmin or qmax without being clipped. quant/ zeroes only what the grid clipped (torch 1.13's clamp; the
 * independent reference in tests/reference/quant_ref.py). Where torchao's gradient is 0 and ours is not, the value
 * must sit exactly on qmin or qmax; the count is printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "formats/safetensors.h"
#include "quant/quant.h"
#include "tests/support/quant_inputs.h"
#include "tests/support/test_util.h"

static char python[4096];

static void read_ref(ml_safetensors *st, const char *name, float *out, size_t n) {
    assert_int_equal(ml_safetensors_read_f32(st, name, out, n), ML_OK);
}

static void same(ml_safetensors *st, const char *name, const float *ours, size_t n) {
    float *ref = malloc(n * sizeof(float));
    read_ref(st, name, ref, n);
    for (size_t i = 0; i < n; i++)
        if (ours[i] != ref[i]) fail_msg("%s[%zu]: %.9g vs torchao %.9g", name, i, ours[i], ref[i]);
    free(ref);
}

/* edge[i]: the value rounded exactly to qmin or qmax (torchao's gradient is 0 there, see above) */
static int close_rel(ml_safetensors *st, const char *name, const float *ours, size_t n, const uint8_t *edge,
                     const float *in) {
    float *ref = malloc(n * sizeof(float));
    read_ref(st, name, ref, n);
    int at_edge = 0;
    for (size_t i = 0; i < n; i++) {
        if (ref[i] == 0.0f && ours[i] != 0.0f && edge[i]) {
            at_edge++;
            continue;
        }
        /* a zero group's scale is FLT_MIN: g s is subnormal there and keeps fewer bits */
        if (fabsf(ours[i] - ref[i]) > (in[i] == 0.0f ? 1e-4f : 3e-7f) * fabsf(ref[i]))
            fail_msg("%s[%zu]: %.9g vs torchao %.9g", name, i, ours[i], ref[i]);
    }
    free(ref);
    return at_edge;
}

/* values y on a grid of scale s (per group or row) with bounds lo, hi: edge = y is lo*s or hi*s */
static void edges(uint8_t *edge, const float *y, const float *x, int64_t n, int group, int bits, const float *scale) {
    const float lo = (float)-(1 << (bits - 1)), hi = (float)((1 << (bits - 1)) - 1);
    for (int64_t g0 = 0; g0 < n; g0 += group) {
        float s;
        if (scale) s = scale[g0 / group];
        else {
            float amax = 0;
            for (int j = 0; j < group; j++) amax = fmaxf(amax, fabsf(x[g0 + j]));
            s = fmaxf(amax / ((hi - lo) / 2), 1.17549435e-38f);
        }
        for (int j = 0; j < group; j++) edge[g0 + j] = y[g0 + j] == lo * s || y[g0 + j] == hi * s;
    }
}

static void test_against_torchao(void **state) {
    make_inputs();
    const char *dir = ml_test_tmpdir("quant_torchao");
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s", ml_test_path(dir, "in.safetensors"));
    snprintf(out, sizeof out, "%s", ml_test_path(dir, "out.safetensors"));
    ml_safetensors_writer *wr;
    assert_int_equal(ml_safetensors_writer_new(&wr), ML_OK);
    int64_t ws[2] = {R, C}, xs[2] = {N, K}, ss[1] = {R};
    ml_safetensors_writer_add_f32(wr, "w", ML_ST_F32, 2, ws, w);
    ml_safetensors_writer_add_f32(wr, "gw", ML_ST_F32, 2, ws, gw);
    ml_safetensors_writer_add_f32(wr, "x", ML_ST_F32, 2, xs, x);
    ml_safetensors_writer_add_f32(wr, "gx", ML_ST_F32, 2, xs, gx);
    ml_safetensors_writer_add_f32(wr, "s", ML_ST_F32, 1, ss, sc);
    assert_int_equal(ml_safetensors_writer_write(wr, in), ML_OK);
    ml_safetensors_writer_free(wr);
    assert_int_equal(ml_test_run("%s %s/tests/reference/quant_torchao.py %s %s 2>&1 | grep -v _pytree", python,
                                 ML_SOURCE_DIR, in, out),
                     0);
    ml_safetensors *st;
    assert_int_equal(ml_safetensors_open(&st, out), ML_OK);
    static float y[R * C], g[R * C];
    static uint8_t keep[R * C];
    const int groups[] = {32, 64, 128, 256, 0};
    for (int k = 0; k < 5; k++) {
        const int grp = groups[k] ? groups[k] : C, bits = groups[k] ? 4 : 8;
        static uint8_t edge[R * C];
        for (int i = 0; i < R; i++) ml_fq_sym(y + i * C, keep + i * C, w + i * C, C, grp, bits);
        for (int i = 0; i < R; i++) edges(edge + i * C, y + i * C, w + i * C, C, grp, bits, NULL);
        for (int i = 0; i < R * C; i++) g[i] = keep[i] ? gw[i] : 0.0f;
        char name[32];
        snprintf(name, sizeof name, groups[k] ? "int4-g%d.y" : "int8.y", grp);
        same(st, name, y, R * C);
        snprintf(name, sizeof name, groups[k] ? "int4-g%d.gw" : "int8.gw", grp);
        int e = close_rel(st, name, g, R * C, edge, w);
        print_message("%-9s torchao: values bit-identical, gradients within 3e-7 (%d values exactly on qmin/qmax: torchao 0)\n",
                      groups[k] ? name : "int8", e);
    }
    /* learned scale: the initial scale, values and both gradients */
    float s0[R], s0_ref[R], gs[R], gs_ref[R];
    for (int i = 0; i < R; i++) {
        float amax = 0;
        for (int j = 0; j < C; j++) amax = fmaxf(amax, fabsf(w[i * C + j]));
        s0[i] = fmaxf(fmaxf(amax / 7.5f, 1.17549435e-38f), 1e-9f); /* as ml_quant_install initialises it */
        ml_fq_scaled(y + i * C, NULL, w + i * C, C, sc[i], 4);
        gs[i] = (float)ml_fq_scaled_grad(g + i * C, gw + i * C, w + i * C, C, sc[i], 4);
    }
    read_ref(st, "lsq.s0", s0_ref, R);
    for (int i = 0; i < R; i++)
        if (s0[i] != s0_ref[i]) fail_msg("initial scale %d: %.9g vs torchao %.9g", i, s0[i], s0_ref[i]);
    same(st, "lsq.y", y, R * C);
    static uint8_t edge[R * C];
    for (int i = 0; i < R; i++) edges(edge + i * C, y + i * C, w + i * C, C, C, 4, sc + i);
    int e = close_rel(st, "lsq.gw", g, R * C, edge, w);
    read_ref(st, "lsq.gs", gs_ref, R);
    for (int i = 0; i < R; i++) {
        double mag = 0;
        for (int j = 0; j < C; j++) mag += fabs(gw[i * C + j] * 8.0);
        /* torchao's scale gradient at the bounds: clamp passes nothing, so d/ds is q = qmin / qmax there too, the
         * same as ours inside the grid only when x/s rounds exactly there; recompute ours that way to compare */
        double alt = 0;
        const float inv = 1.0f / sc[i];
        for (int j = 0; j < C; j++) {
            const float v = w[i * C + j] * inv, q = fminf(fmaxf(rintf(v), -8.0f), 7.0f);
            alt += (double)gw[i * C + j] * ((q > -8.0f && q < 7.0f) ? (double)q - (double)v : (double)q);
        }
        if (fabs(gs[i] - gs_ref[i]) > 1e-5 * mag && fabs(alt - gs_ref[i]) > 1e-5 * mag)
            fail_msg("scale gradient %d: %.8g (bounds excluded: %.8g) vs torchao %.8g", i, gs[i], alt, gs_ref[i]);
    }
    print_message("lsq       torchao range learning: initial scales and values bit-identical, gradients within tolerance (%d on the bounds)\n", e);
    static float ya[N * K], ga[N * K];
    static uint8_t ka[N * K];
    for (int i = 0; i < N; i++) ml_fq_act_int8_token(ya + i * K, ka + i * K, x + i * K, K);
    for (int i = 0; i < N * K; i++) ga[i] = ka[i] ? gx[i] : 0.0f;
    same(st, "act.y", ya, N * K);
    static uint8_t ea[N * K];
    for (int i = 0; i < N; i++) { /* on the bounds: q + zp = -128 or 127 */
        float mn = 0, mx = 0;
        for (int j = 0; j < K; j++) mn = fminf(mn, x[i * K + j]), mx = fmaxf(mx, x[i * K + j]);
        float s = fmaxf((mx - mn) / 255.0f, 1.17549435e-38f), zp = fminf(fmaxf(-128.0f - rintf(mn / s), -128.0f), 127.0f);
        for (int j = 0; j < K; j++) {
            const float v = rintf(x[i * K + j] * (1.0f / s)) + zp;
            ea[i * K + j] = v == -128.0f || v == 127.0f;
        }
    }
    e = close_rel(st, "act.gx", ga, N * K, ea, x);
    print_message("int8-token torchao per-token asymmetric: values bit-identical, gradients within 3e-7 (%d on the bounds)\n", e);
    ml_safetensors_close(st);
}

int main(void) {
    const char *venv = getenv("MOBILELLM_QUANT_VENV"), *home = getenv("HOME");
    if (venv) snprintf(python, sizeof python, "%s/bin/python", venv);
    else snprintf(python, sizeof python, "%s/.cache/mobilellm/venv-quant/bin/python", home ? home : "");
    if (access(python, X_OK) != 0 || ml_test_run("%s -c 'import torchao, safetensors' 2>/dev/null", python) != 0) {
        printf("SKIP: no Python with torchao at %s (scripts/setup_quant_venv.sh makes one; or set MOBILELLM_QUANT_VENV)\n",
               python);
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_torchao)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
