/* KV-cached decoding against the training forward: for tiny-v1 (layer sharing: two cache slots per
 * block), tiny-r1 (QK-norm after adjacent-pair RoPE) and tiny-pro (sliding window 8, sequences of 45
 * tokens so the ring buffer wraps several times), the decoder's logits at every position equal
 * ml_model_forward + ml_model_logits on the whole sequence, whether the tokens are fed one at a
 * time, as a prefill followed by single tokens, or in chunks smaller or larger than the window.
 * Tolerance: |decode - forward| <= 1e-5 * (|forward| + 1) (fp32, same kernels, GEMMs of different
 * shapes; observed ~1e-6). Also: rewinding, its refusal once a ring buffer wrapped, bad input, and
 * the cache's memory bound for sliding layers. */
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
#include "model/decoder.h"
#include "model/model.h"
#include "tests/support/test_util.h"

enum { T = 45 };
static const double TOL = 1e-5;

typedef struct {
    ml_model m;
    int32_t tok[T];
    float *ref; /* [T, V] training-forward logits */
} fixture;

static void setup(fixture *f, const char *preset) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    cfg.initializer_range = 0.1f; /* peakier than the real init: logits well above rounding */
    assert_int_equal(ml_model_create(&f->m, &cfg), ML_OK);
    ml_model_init_weights(&f->m, 3);
    ml_rng r;
    ml_rng_seed(&r, 11);
    for (int i = 0; i < T; i++) f->tok[i] = (int32_t)ml_rng_below(&r, cfg.vocab_size);
    assert_int_equal(ml_model_reserve(&f->m, 1, T, T), ML_OK);
    ml_batch b = {.tokens = f->tok, .B = 1, .T = T};
    f->ref = malloc(sizeof(float) * T * cfg.vocab_size);
    assert_int_equal(ml_model_forward(&f->m, &b), ML_OK);
    assert_int_equal(ml_model_logits(&f->m, &b, f->ref), ML_OK);
}

static void teardown(fixture *f) {
    free(f->ref);
    ml_model_free(&f->m);
}

static double check_row(const fixture *f, const float *logits, int t, const char *what) {
    const int V = f->m.cfg.vocab_size;
    double e = ml_test_max_rel_diff(logits, f->ref + (size_t)t * V, V, 1.0);
    if (e > TOL) fail_msg("%s: %s: position %d differs by %.3g", f->m.cfg.name, what, t, e);
    return e;
}

/* prefill `pre` tokens in one call (chunks of `chunk`), then one token at a time */
static double run(fixture *f, int max_len, int chunk, int pre, const char *what) {
    const int V = f->m.cfg.vocab_size;
    ml_decoder d;
    assert_int_equal(ml_decoder_create(&d, &f->m, max_len, chunk), ML_OK);
    float *all = malloc(sizeof(float) * T * V);
    double worst = 0;
    if (pre > 0) {
        assert_int_equal(ml_decoder_feed(&d, f->tok, pre, 0, all), ML_OK);
        for (int t = 0; t < pre; t++) worst = fmax(worst, check_row(f, all + (size_t)t * V, t, what));
        worst = fmax(worst, check_row(f, ml_decoder_logits(&d), pre - 1, what));
    }
    for (int t = pre; t < T; t++) {
        assert_int_equal(ml_decoder_feed(&d, f->tok + t, 1, 0, NULL), ML_OK);
        assert_int_equal(ml_decoder_len(&d), t + 1);
        worst = fmax(worst, check_row(f, ml_decoder_logits(&d), t, what));
    }
    free(all);
    ml_decoder_free(&d);
    return worst;
}

static void check_variant(const char *preset) {
    fixture f;
    setup(&f, preset);
    double w = 0;
    w = fmax(w, run(&f, T, 1, 0, "token by token"));
    w = fmax(w, run(&f, T, 64, 13, "prefill 13 then tokens"));
    w = fmax(w, run(&f, T + 20, 5, 30, "prefill 30 in chunks of 5"));
    w = fmax(w, run(&f, T, 64, T, "prefill everything"));
    print_message("%s: worst relative difference %.2e\n", preset, w);
    teardown(&f);
}

static void test_v1_layer_sharing(void **s) { check_variant("tiny-v1"); }
static void test_r1_qknorm_adjacent_rope(void **s) { check_variant("tiny-r1"); }
static void test_pro_sliding_window_ring(void **s) { check_variant("tiny-pro"); }

static void test_cache_layout(void **s) {
    fixture f;
    setup(&f, "tiny-v1");
    ml_decoder d;
    assert_int_equal(ml_decoder_create(&d, &f.m, 100, 8), ML_OK);
    assert_int_equal(d.kv.n_slots, 4); /* 2 blocks applied twice */
    ml_decoder_free(&d);
    teardown(&f);
    setup(&f, "tiny-pro"); /* sliding, full, sliding; window 8 */
    assert_int_equal(ml_decoder_create(&d, &f.m, 1000, 8), ML_OK);
    /* sliding slots: 2 * window + chunk rows, whatever max_len; full slots: max_len */
    assert_int_equal(d.kv.rows[0], 2 * 8 + 8);
    assert_int_equal(d.kv.rows[1], 1000);
    assert_int_equal(d.kv.rows[2], 2 * 8 + 8);
    assert_int_equal(ml_kv_cache_bytes(&d.kv), (size_t)(24 + 1000 + 24) * 2 * 2 * 16 * sizeof(float));
    ml_decoder_free(&d);
    teardown(&f);
}

static void test_rewind(void **s) {
    fixture f;
    setup(&f, "tiny-r1");
    int V = f.m.cfg.vocab_size;
    ml_decoder d;
    assert_int_equal(ml_decoder_create(&d, &f.m, T, 16), ML_OK);
    int32_t junk[7] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(ml_decoder_feed(&d, f.tok, 20, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_feed(&d, junk, 7, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_rewind(&d, 20), ML_OK);
    float *all = malloc(sizeof(float) * T * V);
    assert_int_equal(ml_decoder_feed(&d, f.tok + 20, T - 20, 0, all), ML_OK);
    for (int t = 20; t < T; t++) check_row(&f, all + (size_t)(t - 20) * V, t, "after rewind");
    /* bad input: nothing consumed */
    assert_int_equal(ml_decoder_rewind(&d, T + 1), ML_ERR_ARG);
    assert_int_equal(ml_decoder_feed(&d, junk, 1, 0, NULL), ML_ERR_RANGE); /* full */
    assert_int_equal(ml_decoder_rewind(&d, 3), ML_OK);
    int32_t bad[2] = {5, 259};
    assert_int_equal(ml_decoder_feed(&d, bad, 2, 0, NULL), ML_ERR_RANGE);
    assert_int_equal(ml_decoder_len(&d), 3);
    free(all);
    ml_decoder_free(&d);
    teardown(&f);

    setup(&f, "tiny-pro"); /* window 8, chunks of 4: sliding slots hold 2 * 8 + 4 = 20 rows */
    assert_int_equal(ml_decoder_create(&d, &f.m, T, 4), ML_OK);
    assert_int_equal(ml_decoder_feed(&d, f.tok, 5, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_feed(&d, junk, 2, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_rewind(&d, 5), ML_OK);
    assert_int_equal(ml_decoder_feed(&d, f.tok + 5, 10, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_rewind(&d, 12), ML_OK); /* 15 positions: nothing moved out yet */
    assert_int_equal(ml_decoder_feed(&d, f.tok + 12, 18, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_rewind(&d, 12), ML_ERR_UNSUPPORTED); /* keys 5.. were moved out */
    assert_int_equal(ml_decoder_len(&d), 30);
    assert_int_equal(ml_decoder_rewind(&d, 26), ML_OK); /* within the window: still held */
    all = malloc(sizeof(float) * T * V);
    assert_int_equal(ml_decoder_feed(&d, f.tok + 26, T - 26, 0, all), ML_OK);
    for (int t = 26; t < T; t++) check_row(&f, all + (size_t)(t - 26) * V, t, "sliding window after rewind");
    free(all);
    ml_decoder_free(&d);
    teardown(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_layer_sharing),
        cmocka_unit_test(test_r1_qknorm_adjacent_rope),
        cmocka_unit_test(test_pro_sliding_window_ring),
        cmocka_unit_test(test_cache_layout),
        cmocka_unit_test(test_rewind),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
