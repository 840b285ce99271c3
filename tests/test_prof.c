/* common/prof.h and the profile and memory accounting of `bench` (train/bench.h).
 *
 * No timing thresholds: the tests check structure (every kernel timer is hit the expected number
 * of times per step, names, the JSON layout), that the timers are positive and their sum does not
 * exceed the step's wall time, that nothing is counted while profiling is off or inside a parallel
 * region, and the memory figures against an independent count of the activations from the config. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "common/prof.h"
#include "model/config.h"
#include "tests/support/test_util.h"
#include "train/bench.h"

static volatile double sink;

static void busy(int n) {
    double x = 0;
    for (int i = 0; i < n; i++) x += sqrt((double)i);
    sink = x;
}

static void test_off_counts_nothing(void **state) {
    (void)state;
    ml_prof_reset();
    ml_prof_enable(0);
    int ran = 0;
    ML_PROFILE(ML_PROF_ATTN_FWD) {
        busy(1000);
        ran++;
    }
    assert_int_equal(ran, 1); /* the body runs exactly once either way */
    assert_int_equal(ml_prof_calls(ML_PROF_ATTN_FWD), 0);
    assert_true(ml_prof_seconds(ML_PROF_ATTN_FWD) == 0.0);
    assert_true(ml_prof_total_seconds() == 0.0);
}

static void test_on_counts_regions(void **state) {
    (void)state;
    ml_prof_reset();
    ml_prof_enable(1);
    int ran = 0;
    for (int i = 0; i < 3; i++) ML_PROFILE(ML_PROF_QKV_FWD) {
            busy(20000);
            ran++;
        }
    /* a region inside a parallel region is not counted (its timer would race) */
#pragma omp parallel num_threads(2)
    {
        ML_PROFILE(ML_PROF_O_FWD) busy(100);
    }
    ml_prof_enable(0);
    assert_int_equal(ran, 3);
    assert_int_equal(ml_prof_calls(ML_PROF_QKV_FWD), 3);
    assert_true(ml_prof_seconds(ML_PROF_QKV_FWD) > 0.0);
    assert_int_equal(ml_prof_calls(ML_PROF_O_FWD), 0);
    assert_true(ml_prof_total_seconds() == ml_prof_seconds(ML_PROF_QKV_FWD));
    /* names: unique, non-empty, NULL outside the range */
    for (int i = 0; i < ML_PROF_COUNT; i++) {
        assert_non_null(ml_prof_name((ml_prof_id)i));
        assert_true(strlen(ml_prof_name((ml_prof_id)i)) > 0);
        for (int j = 0; j < i; j++) assert_string_not_equal(ml_prof_name((ml_prof_id)i), ml_prof_name((ml_prof_id)j));
    }
    assert_null(ml_prof_name(ML_PROF_COUNT));
    ml_prof_reset();
    assert_int_equal(ml_prof_calls(ML_PROF_QKV_FWD), 0);
}

static size_t round16(size_t n) { return (n + 15) / 16 * 16; } /* arena reservations: 64-byte lines */

/* The activations forward keeps for backward, counted from the config (model.h's ml_block_acts). */
static size_t expected_saved_floats(const ml_config *c, size_t N) {
    const size_t C = c->hidden_size, F = c->intermediate_size, qd = (size_t)c->num_heads * c->head_dim,
                 kvd = (size_t)c->num_kv_heads * c->head_dim;
    size_t per = round16(N * C) * 4 /* resid_in, ln1, resid_mid, ln2 */ + round16(N) * 2 /* rstd1, rstd2 */ +
                 round16(N * qd) * 2 /* q, att */ + round16(N * kvd) * 2 /* k, v */ +
                 round16(N * c->num_heads) /* lse */ + round16(N * F) * 2 /* gate, up */;
    if (c->use_qk_norm) per += round16(N * c->num_heads) + round16(N * c->num_kv_heads);
    return per * (size_t)ml_config_applied_layers(c) + round16(N * C) * 2 + round16(N); /* final resid, ln_f, rstd */
}

static void run_bench(const char *preset, int B, int T, int steps) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    ml_bench_args a = {.B = B, .T = T, .steps = steps, .warmup = 1, .seed = 3, .profile = 1};
    ml_bench_result r;
    ml_prof_enable(0);
    assert_int_equal(ml_bench_run(&cfg, &a, &r), ML_OK);
    assert_int_equal(ml_prof_enabled(), 0); /* bench restores the switch */
    assert_true(r.profiled);
    assert_true(r.wall_seconds > 0);

    /* every kernel of the step was timed, the expected number of times per step */
    const int A = ml_config_applied_layers(&cfg);
    int rope_layers = 0;
    for (int l = 0; l < cfg.num_layers; l++) rope_layers += cfg.layer_rope[l] * cfg.layer_repeat;
    const struct {
        ml_prof_id id;
        int per_step;
    } expect[] = {
        {ML_PROF_EMBED_FWD, 1},        {ML_PROF_EMBED_BWD, 1},        {ML_PROF_RMSNORM_FWD, 2 * A + 1},
        {ML_PROF_RMSNORM_BWD, 2 * A + 1}, {ML_PROF_QKV_FWD, A},       {ML_PROF_QKV_BWD, A},
        {ML_PROF_ROPE_FWD, rope_layers}, {ML_PROF_ROPE_BWD, rope_layers},
        {ML_PROF_QKNORM_FWD, cfg.use_qk_norm ? rope_layers : 0}, {ML_PROF_QKNORM_BWD, cfg.use_qk_norm ? rope_layers : 0},
        {ML_PROF_ATTN_FWD, A},         {ML_PROF_ATTN_BWD, A},         {ML_PROF_O_FWD, A},
        {ML_PROF_O_BWD, A},            {ML_PROF_RESIDUAL, 2 * A},     {ML_PROF_GATE_UP_FWD, A},
        {ML_PROF_GATE_UP_BWD, A},      {ML_PROF_SWIGLU_FWD, A},       {ML_PROF_SWIGLU_BWD, 2 * A},
        {ML_PROF_DOWN_FWD, A},         {ML_PROF_DOWN_BWD, A},         {ML_PROF_HEAD_FWD, 1},
        {ML_PROF_HEAD_LOSS, 1},        {ML_PROF_HEAD_BWD, 1},         {ML_PROF_ZERO_GRAD, 1},
        {ML_PROF_CLIP, 0},             {ML_PROF_OPTIMIZER, 1},
    };
    assert_int_equal(sizeof expect / sizeof expect[0], ML_PROF_COUNT);
    double sum = 0;
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const char *name = ml_prof_name(expect[i].id);
        int64_t calls = ml_prof_calls(expect[i].id);
        if (calls != (int64_t)expect[i].per_step * steps)
            fail_msg("%s: %lld calls, expected %d per step x %d steps", name, (long long)calls, expect[i].per_step,
                     steps);
        double s = ml_prof_seconds(expect[i].id);
        if (calls) assert_true(s > 0.0);
        sum += s;
    }
    assert_true(sum > 0.0);
    assert_true(sum <= r.wall_seconds * (1 + 1e-9));
    assert_true(fabs(sum - ml_prof_total_seconds()) <= 1e-9 * sum);

    /* memory accounting */
    assert_true(r.param_bytes >= (size_t)r.params * sizeof(float));
    assert_int_equal(r.grad_bytes, r.param_bytes);
    assert_int_equal(r.moment_bytes, 2 * r.param_bytes);
    assert_int_equal(r.act_saved_bytes, expected_saved_floats(&cfg, (size_t)B * T) * sizeof(float));
    assert_true(r.act_scratch_bytes > 0);
    assert_int_equal(r.min_bytes, r.param_bytes + r.grad_bytes + r.moment_bytes + r.act_saved_bytes);
    assert_true(r.peak_rss > r.min_bytes); /* the process holds at least the arenas */
    assert_true(fabs(r.mem_ratio - (double)r.peak_rss / (double)r.min_bytes) < 1e-9 * r.mem_ratio);

    /* the JSON: every figure, and the profile in table order with "other" last; shares sum to 1 */
    size_t need = ml_bench_json(NULL, 0, &cfg, &a, &r);
    char *buf = malloc(need + 1);
    assert_int_equal(ml_bench_json(buf, need + 1, &cfg, &a, &r), need);
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    const char *keys[] = {"ms_per_step", "tokens_per_s", "gflops", "mfu", "peak_rss_mib", "min_mib", "mem_ratio",
                          "act_saved_mib", "moment_mib"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[i])));
    cJSON *p = cJSON_GetObjectItem(j, "profile");
    assert_true(cJSON_IsArray(p));
    assert_int_equal(cJSON_GetArraySize(p), ML_PROF_COUNT + 1);
    double share = 0, ms = 0;
    for (int i = 0; i <= ML_PROF_COUNT; i++) {
        cJSON *e = cJSON_GetArrayItem(p, i);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(e, "name"));
        assert_non_null(name);
        assert_string_equal(name, i < ML_PROF_COUNT ? ml_prof_name((ml_prof_id)i) : "other");
        share += cJSON_GetObjectItem(e, "share")->valuedouble;
        ms += cJSON_GetObjectItem(e, "ms_per_step")->valuedouble;
    }
    assert_true(fabs(share - 1.0) < 1e-3);
    assert_true(fabs(ms - cJSON_GetObjectItem(j, "ms_per_step")->valuedouble) <= 0.01 + 1e-3 * ms);
    cJSON_Delete(j);

    /* the file writer: the same object and a newline */
    const char *dir = ml_test_tmpdir("test_prof");
    const char *out = ml_test_path(dir, "bench.json");
    assert_int_equal(ml_bench_write_json(out, &cfg, &a, &r), ML_OK);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char *line = malloc(need + 2);
    assert_non_null(fgets(line, (int)need + 2, f));
    fclose(f);
    assert_int_equal(strlen(line), need + 1);
    assert_memory_equal(line, buf, need);
    assert_int_equal(ml_bench_write_json("/nonexistent-dir/x.json", &cfg, &a, &r), ML_ERR_IO);
    free(line);
    free(buf);
}

static void test_bench_profile_r1(void **state) {
    (void)state;
    run_bench("tiny-r1", 2, 24, 2); /* QK-norm, NoPE layers if the preset has any */
}

static void test_bench_profile_shared_layers(void **state) {
    (void)state;
    run_bench("tiny-v1", 1, 17, 1); /* layer sharing, odd token count (arena rounding) */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_counts_nothing),
        cmocka_unit_test(test_on_counts_regions),
        cmocka_unit_test(test_bench_profile_r1),
        cmocka_unit_test(test_bench_profile_shared_layers),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
