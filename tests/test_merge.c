/* Merge methods on small tensors (hand-computed expectations), sparsifiers, and recipe parsing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "merge/methods.h"
#include "merge/recipe.h"

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) < 1e-6)

static void test_linear(void **st) {
    (void)st;
    float a[3] = {1, 2, 3}, b[3] = {3, 2, 1}, out[3];
    const float *x[2] = {a, b};
    double w[2] = {1, 3};
    ml_merge_linear(out, x, w, 2, 3, 1);
    NEAR(out[0], 2.5);
    NEAR(out[1], 2.0);
    NEAR(out[2], 1.5);
    ml_merge_linear(out, x, w, 2, 3, 0);
    NEAR(out[0], 10);
    NEAR(out[2], 6);
}

static void test_task_arithmetic(void **st) {
    (void)st;
    float base[2] = {1, 1}, a[2] = {2, 0}, b[2] = {1, 3}, out[2];
    float *x[3] = {base, a, b};
    ml_merge_in_params in[3];
    ml_merge_shared_params sh;
    for (int i = 0; i < 3; i++) ml_merge_defaults(ML_MERGE_TASK_ARITHMETIC, &sh, &in[i]);
    in[1].weight = 0.5;
    in[2].weight = 1.0;
    sh.lambda = 2.0;
    assert_int_equal(sh.normalize, 0);
    assert_int_equal(ml_merge_task(ML_MERGE_TASK_ARITHMETIC, out, x, 3, 0, in, &sh, 2, 0), ML_OK);
    /* base + 2 * (0.5 * (a - base) + (b - base)) */
    NEAR(out[0], 1 + 2 * (0.5 * 1 + 0));
    NEAR(out[1], 1 + 2 * (0.5 * -1 + 2));
}

static void test_ties_consensus(void **st) {
    (void)st;
    float base[4] = {0, 0, 0, 0}, a[4] = {1, -2, 3, 0.1f}, b[4] = {-1, -1, 1, 0.2f}, out[4];
    float *x[3] = {a, base, b}; /* the base need not come first */
    ml_merge_in_params in[3];
    ml_merge_shared_params sh;
    for (int i = 0; i < 3; i++) ml_merge_defaults(ML_MERGE_TIES, &sh, &in[i]);
    assert_int_equal(sh.normalize, 1);
    in[0].weight = in[2].weight = 1.0;
    assert_int_equal(ml_merge_task(ML_MERGE_TIES, out, x, 3, 1, in, &sh, 4, 0), ML_OK);
    /* signs of the summed deltas: +, -, +, +; only agreeing deltas are averaged by their weights */
    NEAR(out[0], 1.0);
    NEAR(out[1], -1.5);
    NEAR(out[2], 2.0);
    NEAR(out[3], 0.15);
}

static void test_ties_density_weights(void **st) {
    (void)st;
    /* density 0.5 keeps the two largest |delta| of each model; weights enter the sign vote */
    float base[4] = {0, 0, 0, 0}, a[4] = {4, -3, 0.5f, 0.1f}, b[4] = {-1, 0.2f, 2, 3}, out[4];
    float *x[3] = {base, a, b};
    ml_merge_in_params in[3];
    ml_merge_shared_params sh;
    for (int i = 0; i < 3; i++) ml_merge_defaults(ML_MERGE_TIES, &sh, &in[i]);
    in[1].weight = 0.5;
    in[1].density = 0.5;
    in[2].weight = 2.0;
    in[2].density = 0.5;
    assert_int_equal(ml_merge_task(ML_MERGE_TIES, out, x, 3, 0, in, &sh, 4, 0), ML_OK);
    /* a -> [4, -3, 0, 0] * 0.5 = [2, -1.5, 0, 0]; b -> [0, 0, 2, 3] * 2 = [0, 0, 4, 6] */
    NEAR(out[0], 2.0 / 0.5);
    NEAR(out[1], -1.5 / 0.5);
    NEAR(out[2], 4.0 / 2.0);
    NEAR(out[3], 6.0 / 2.0);
}

static void test_magnitude(void **st) {
    (void)st;
    float x[4] = {0.1f, -0.5f, 0.3f, -0.2f};
    assert_int_equal(ml_sparsify_magnitude(x, 4, 0.5, 0), 2);
    NEAR(x[0], 0);
    NEAR(x[1], -0.5);
    NEAR(x[2], 0.3);
    NEAR(x[3], 0);
    float y[4] = {0.1f, -0.5f, 0.3f, -0.2f};
    ml_sparsify_magnitude(y, 4, 0.5, 1); /* L1 1.1 kept: 0.8 -> scale 1.375 */
    NEAR(y[1], -0.5 * 1.375);
    NEAR(y[2], 0.3 * 1.375);
    float z[4] = {0.1f, -0.5f, 0.3f, -0.2f};
    assert_int_equal(ml_sparsify_magnitude(z, 4, 0.01, 0), 1); /* at least one kept */
    NEAR(z[1], -0.5);
    /* ties at the threshold: exactly k kept */
    float t[6] = {1, 1, 1, 1, 2, 0};
    assert_int_equal(ml_sparsify_magnitude(t, 6, 0.5, 0), 3);
    int ones = 0;
    for (int i = 0; i < 6; i++) ones += t[i] == 1;
    assert_int_equal(ones, 2);
    NEAR(t[4], 2);
}

static void test_outliers(void **st) {
    (void)st;
    float x[10];
    for (int i = 0; i < 10; i++) x[i] = (float)((i % 2 ? -1 : 1) * (10 - i));
    /* |x| = 10..1; density 0.5, gamma 0.2: drop the 2 largest, keep the next 5 (|x| 8..4) */
    assert_int_equal(ml_sparsify_outliers(x, 10, 0.5, 0.2, 0), 5);
    for (int i = 0; i < 10; i++) {
        float a = 10 - i;
        if (a > 8 || a < 4) NEAR(x[i], 0);
        else NEAR(fabsf(x[i]), a);
    }
}

/* Radix selection against a sort: many elements, repeated magnitudes, both signs, zeros. */
static int by_abs_then_index(const void *a, const void *b) {
    const float *const *x = a, *const *y = b;
    float u = fabsf(**x), v = fabsf(**y);
    if (u != v) return u < v ? -1 : 1;
    return *x < *y ? -1 : *x > *y;
}

static void test_selection_against_sort(void **st) {
    (void)st;
    const size_t n = 100003;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), **order = malloc(n * sizeof *order);
    uint64_t r = 7;
    for (size_t i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((r >> 33) % 2001) - 1000; /* 2001 distinct magnitudes: many ties */
        x[i] = (float)k * 1e-3f * ((r >> 20) & 1 ? 1 : -1);
    }
    const double dens[] = {0.37, 0.9, 1e-4};
    for (int t = 0; t < 3; t++) {
        memcpy(y, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) order[i] = &y[i];
        qsort(order, n, sizeof *order, by_abs_then_index);
        size_t k = (size_t)(dens[t] * n);
        float *want = malloc(n * sizeof *want);
        memset(want, 0, n * sizeof *want);
        for (size_t j = n - k; j < n; j++) want[order[j] - y] = *order[j];
        assert_int_equal(ml_sparsify_magnitude(y, n, dens[t], 0), k);
        assert_memory_equal(y, want, n * sizeof *y);
        /* outliers: drop the top 3%, keep the next density */
        memcpy(y, x, n * sizeof *x);
        memset(want, 0, n * sizeof *want);
        size_t top = (size_t)(0.03 * n), bot = n > k + top ? n - k - top : 0;
        for (size_t j = bot; j < bot + k; j++) want[order[j] - y] = *order[j];
        assert_int_equal(ml_sparsify_outliers(y, n, dens[t], 0.03, 0), k);
        assert_memory_equal(y, want, n * sizeof *y);
        free(want);
    }
    free(x);
    free(y);
    free(order);
}

static void test_random(void **st) {
    (void)st;
    const size_t n = 200000;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    double l1 = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = y[i] = z[i] = (float)sin((double)i) + 0.01f;
        l1 += fabs(x[i]);
    }
    size_t kept = ml_sparsify_random(x, n, 0.3, 1, 42);
    assert_true(fabs((double)kept / n - 0.3) < 0.005);
    double after = 0;
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) {
        after += fabs(x[i]);
        nz += x[i] != 0;
    }
    assert_int_equal(nz, kept);
    assert_true(fabs(after / l1 - 1) < 1e-4); /* rescaled to the same L1 norm */
    ml_sparsify_random(y, n, 0.3, 1, 42);
    assert_memory_equal(x, y, n * sizeof *x); /* reproducible */
    ml_sparsify_random(z, n, 0.3, 1, 43);
    assert_true(memcmp(x, z, n * sizeof *x) != 0);
    free(x);
    free(y);
    free(z);
}

static void test_slerp(void **st) {
    (void)st;
    float a[2] = {1, 0}, b[2] = {0, 1}, out[2];
    ml_merge_slerp(out, a, b, 2, 0.5);
    NEAR(out[0], sqrt(0.5));
    NEAR(out[1], sqrt(0.5));
    ml_merge_slerp(out, a, b, 2, 0.0);
    NEAR(out[0], 1);
    NEAR(out[1], 0);
    /* colinear: linear interpolation */
    float c[2] = {1, 2}, d[2] = {2, 4};
    ml_merge_slerp(out, c, d, 2, 0.25);
    NEAR(out[0], 1.25);
    NEAR(out[1], 2.5);
}

static void test_recipe_params(void **st) {
    (void)st;
    const char *y = "merge_method: ties\n"
                    "base_model: base.h5\n"
                    "models:\n"
                    "  - model: a.h5\n"
                    "    parameters:\n"
                    "      weight: [0, 1, 0]\n"
                    "      density: [{filter: mlp, value: 0.2}, {filter: self_attn, value: [0.4, 0.8]}, {value: 0.9}]\n"
                    "parameters: {normalize: false, lambda: 1.5}\n"
                    "dtype: bfloat16\n";
    ml_merge_recipe r;
    assert_int_equal(ml_merge_recipe_parse(&r, y, "r.yaml"), ML_OK);
    assert_int_equal(r.method, ML_MERGE_TIES);
    assert_string_equal(r.base_model, "base.h5");
    assert_string_equal(r.out_dtype, "bfloat16");
    const ml_mparams *ps = &r.slices[0].sources[0].params;
    double v;
    assert_true(ml_mparams_eval(ps, "weight", "x", 0.25, &v));
    NEAR(v, 0.5);
    assert_true(ml_mparams_eval(ps, "weight", "x", 1.0, &v));
    NEAR(v, 0.0);
    assert_true(ml_mparams_eval(ps, "density", "model.layers.0.mlp.up_proj.weight", 0.5, &v));
    NEAR(v, 0.2);
    assert_true(ml_mparams_eval(ps, "density", "model.layers.3.self_attn.q_proj.weight", 0.5, &v));
    NEAR(v, 0.6);
    assert_true(ml_mparams_eval(ps, "density", "model.norm.weight", 0, &v));
    NEAR(v, 0.9);
    assert_false(ml_mparams_eval(ps, "lambda", "x", 0, &v));
    assert_true(ml_mparams_eval(&r.params, "normalize", "x", 0, &v));
    NEAR(v, 0);
    /* written back and parsed again: the same values */
    char *out = NULL;
    assert_int_equal(ml_merge_recipe_to_yaml(&r, &out), ML_OK);
    ml_merge_recipe r2;
    assert_int_equal(ml_merge_recipe_parse(&r2, out, "again.yaml"), ML_OK);
    assert_true(ml_mparams_eval(&r2.slices[0].sources[0].params, "density", "model.layers.3.self_attn.q_proj.weight", 0.5, &v));
    NEAR(v, 0.6);
    assert_string_equal(r2.out_dtype, "bfloat16");
    free(out);
    ml_merge_recipe_free(&r2);
    ml_merge_recipe_free(&r);
}

static void expect_error(const char *yaml, const char *msg) {
    ml_merge_recipe r;
    assert_int_not_equal(ml_merge_recipe_parse(&r, yaml, "bad.yaml"), ML_OK);
    if (!strstr(ml_last_error(), msg)) fail_msg("expected '%s' in '%s'", msg, ml_last_error());
}

static void test_recipe_errors(void **st) {
    (void)st;
    expect_error("merge_method: nope\nmodels: [{model: a}]\n", "bad.yaml:1: unknown merge_method 'nope'");
    expect_error("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: [1, 2}\n", "bad.yaml:4: malformed YAML");
    expect_error("merge_method: linear\n", "exactly one of models: or slices:");
    expect_error("models: [{model: a}]\n", "bad.yaml:1: no merge_method");
    expect_error("merge_method: linear\nmodels: [{model: a}]\nslices: []\n", "exactly one of models: or slices:");
    expect_error("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: abc}\n",
                 "bad.yaml:4: parameter weight: expected a number or a boolean, got 'abc'");
    expect_error("merge_method: slerp\nmodels: [{model: a}]\nparameters: {weight: 1}\n",
                 "bad.yaml:3: unknown parameter 'weight' for merge_method slerp");
    expect_error("merge_method: linear\nslices:\n  - sources:\n      - model: a\n        layer_range: [2, 1]\n",
                 "bad.yaml:5: layer_range must be");
    expect_error("merge_method: linear\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 2]}\n      - {model: b, layer_range: [0, 3]}\n",
                 "same number of layers");
    expect_error("merge_method: linear\nmodels: [{model: a}]\ndtype: float64\n", "bad.yaml:3: dtype must be");
    expect_error("merge_method: linear\nmodel: [{model: a}]\n", "bad.yaml:2: unknown key 'model'");
    expect_error("- a\n- b\n", "bad.yaml:1: a recipe is a mapping");
    expect_error("", "bad.yaml:1: empty recipe");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),         cmocka_unit_test(test_task_arithmetic),
        cmocka_unit_test(test_ties_consensus), cmocka_unit_test(test_ties_density_weights),
        cmocka_unit_test(test_magnitude),      cmocka_unit_test(test_outliers),
        cmocka_unit_test(test_selection_against_sort),
        cmocka_unit_test(test_random),         cmocka_unit_test(test_slerp),
        cmocka_unit_test(test_recipe_params),  cmocka_unit_test(test_recipe_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
