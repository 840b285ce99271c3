/* The mixture loader: spec parsing, each source's rows are its own consecutive windows (with
 * wrap-around and documents numbered across sources), domain proportions within 3 sigma of the
 * weights, determinism for a seed, bit-exact state save/restore with the shuffle buffer on, and
 * bad sources (weight 0, missing shard, mixed tokenizers) failing with one-line errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "data/mixture_loader.h"
#include "data/shard.h"
#include "tests/support/test_util.h"

static const char *dir;
static char p_a[512], p_b1[512], p_b2[512], p_other[512];

#define NA 1000
#define NB1 301
#define NB2 412
#define BASE_B 100000
#define VOCAB 200000

/* Tokens base+0..base+n-1, documents every 37 tokens. */
static void write_shard(const char *path, uint32_t base, uint32_t n, const char *tok, const char *domain) {
    ml_shard_writer *w = NULL;
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_set_vocab(w, VOCAB), ML_OK);
    assert_int_equal(ml_shard_writer_set_tokenizer(w, tok), ML_OK);
    if (domain) assert_int_equal(ml_shard_writer_set_domain(w, domain), ML_OK);
    assert_int_equal(ml_shard_writer_set_frame_tokens(w, 64), ML_OK);
    uint32_t *ids = malloc(n * sizeof *ids);
    for (uint32_t i = 0; i < n; i++) ids[i] = base + i;
    for (uint32_t s = 0; s < n; s += 37)
        assert_int_equal(ml_shard_writer_append_doc(w, ids + s, n - s < 37 ? n - s : 37), ML_OK);
    assert_int_equal(ml_shard_writer_close(w), ML_OK);
    free(ids);
}

static ml_mixture *open_mix(double wa, double wb, int B, int T, int R, uint64_t seed) {
    char sa[600], sb[1100];
    snprintf(sa, sizeof sa, "%s:%g", p_a, wa); /* domain from the shard: "web" */
    snprintf(sb, sizeof sb, "%s,%s:%g:code", p_b1, p_b2, wb);
    const char *specs[2] = {sa, sb};
    ml_mixture_opts o = {.B = B, .T = T, .pos_mode = ML_POS_DOC, .shuffle_rows = R, .seed = seed};
    ml_mixture *m = NULL;
    assert_int_equal(ml_mixture_open_specs(&m, specs, 2, &o), ML_OK);
    return m;
}

static void test_parse(void **state) {
    (void)state;
    ml_mixture_source s;
    assert_int_equal(ml_mixture_parse_source("a.shard:0.7:web", &s), ML_OK);
    assert_int_equal(s.n_paths, 1);
    assert_string_equal(s.paths[0], "a.shard");
    assert_true(fabs(s.weight - 0.7) < 1e-12);
    assert_string_equal(s.domain, "web");
    ml_mixture_source_free(&s);
    assert_int_equal(ml_mixture_parse_source("d/x.shard,d/y.shard:3", &s), ML_OK);
    assert_int_equal(s.n_paths, 2);
    assert_string_equal(s.paths[1], "d/y.shard");
    assert_string_equal(s.domain, "");
    assert_true(s.weight == 3.0);
    ml_mixture_source_free(&s);
    const char *bad[] = {"a.shard", "a.shard:0", "a.shard:-1:web", "a.shard:abc", ":1", "a.shard,:1", "a.shard:1:",
                         "a.shard:nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ml_mixture_parse_source(bad[i], &s), ML_ERR_ARG);
        assert_non_null(strstr(ml_last_error(), bad[i]));
        assert_null(strchr(ml_last_error(), '\n'));
    }
}

/* R = 0: per source the row starts are 0, T+1, 2(T+1), ... wrapping when fewer than T+1 remain. */
static void test_consecutive_windows(void **state) {
    (void)state;
    const int B = 4, T = 7;
    ml_mixture *m = open_mix(1, 1, B, T, 0, 5);
    assert_string_equal(ml_mixture_domain(m, 0), "web");
    assert_string_equal(ml_mixture_domain(m, 1), "code");
    int32_t in[28], tg[28], doc[28], pos[28];
    uint64_t next[2] = {0, 0}, totals[2] = {NA, NB1 + NB2}, epochs[2] = {0, 0};
    for (int step = 0; step < 300; step++) {
        assert_int_equal(ml_mixture_next(m, in, tg, doc, pos), ML_OK);
        uint64_t per[2] = {0, 0};
        for (int b = 0; b < B; b++) {
            int s = in[b * T] >= BASE_B;
            assert_int_equal(ml_mixture_row_sources(m)[b], s);
            per[s]++;
            uint64_t p = (uint64_t)in[b * T] - (s ? BASE_B : 0);
            assert_int_equal(p, next[s]);
            for (int t = 0; t < T; t++) {
                assert_int_equal(in[b * T + t], in[b * T] + t);
                assert_int_equal(tg[b * T + t], in[b * T] + t + 1);
                /* documents of 37 tokens per shard; source 1's ids come after source 0's 28 */
                uint64_t q = p + t, d;
                if (!s) d = q / 37;
                else d = 28 + (q < NB1 ? q / 37 : 9 + (q - NB1) / 37);
                assert_int_equal(doc[b * T + t], (int32_t)d);
                if (t > 0) assert_int_equal(pos[b * T + t], doc[b * T + t] == doc[b * T + t - 1] ? pos[b * T + t - 1] + 1 : 0);
            }
            next[s] += T + 1;
            if (next[s] + T + 1 > totals[s]) {
                next[s] = 0;
                epochs[s]++;
            }
        }
        assert_int_equal(ml_mixture_batch_rows(m, 0), per[0]);
        assert_int_equal(ml_mixture_batch_rows(m, 1), per[1]);
    }
    assert_true(epochs[0] >= 2 && epochs[1] >= 2);
    assert_int_equal(ml_mixture_epoch(m, 0), epochs[0]);
    assert_int_equal(ml_mixture_epoch(m, 1), epochs[1]);
    ml_mixture_close(m);
}

/* Domain proportions within 3 binomial sigma of the weights, with and without the shuffle buffer. */
static void test_proportions(void **state) {
    (void)state;
    const int B = 8, T = 4, steps = 500, R[2] = {0, 64};
    for (int k = 0; k < 2; k++) {
        ml_mixture *m = open_mix(7, 3, B, T, R[k], 11 + (uint64_t)k);
        assert_true(fabs(ml_mixture_weight(m, 0) - 0.7) < 1e-12);
        int32_t in[32], tg[32];
        uint64_t n0 = 0;
        for (int s = 0; s < steps; s++) {
            assert_int_equal(ml_mixture_next(m, in, tg, NULL, NULL), ML_OK);
            n0 += ml_mixture_batch_rows(m, 0);
        }
        double n = (double)B * steps, sigma = sqrt(n * 0.7 * 0.3);
        print_message("R=%d: %llu of %.0f rows from the 0.7 source (expected %.0f, sigma %.1f)\n", R[k],
                      (unsigned long long)n0, n, 0.7 * n, sigma);
        assert_true(fabs((double)n0 - 0.7 * n) <= 3 * sigma);
        assert_int_equal(ml_mixture_total_rows(m, 0) + ml_mixture_total_rows(m, 1), (uint64_t)n);
        ml_mixture_close(m);
    }
}

static void test_determinism(void **state) {
    (void)state;
    const int B = 3, T = 5;
    ml_mixture *a = open_mix(1, 2, B, T, 10, 42), *b = open_mix(1, 2, B, T, 10, 42), *c = open_mix(1, 2, B, T, 10, 43);
    int32_t ia[15], ta[15], ib[15], tb[15];
    int differ = 0;
    for (int s = 0; s < 100; s++) {
        assert_int_equal(ml_mixture_next(a, ia, ta, NULL, NULL), ML_OK);
        assert_int_equal(ml_mixture_next(b, ib, tb, NULL, NULL), ML_OK);
        assert_memory_equal(ia, ib, sizeof ia);
        assert_memory_equal(ta, tb, sizeof ta);
        assert_int_equal(ml_mixture_next(c, ib, tb, NULL, NULL), ML_OK);
        differ |= memcmp(ia, ib, sizeof ia) != 0;
    }
    assert_true(differ);
    ml_mixture_close(a);
    ml_mixture_close(b);
    ml_mixture_close(c);
}

/* Save the state mid-run (buffer on), restore it into a fresh loader: identical continuation. */
static void test_state_restore(void **state) {
    (void)state;
    const int B = 4, T = 6, R = 16, K = 40;
    ml_mixture *a = open_mix(2, 1, B, T, R, 9);
    int32_t in[24], tg[24], doc[24], pos[24], in2[24], tg2[24], doc2[24], pos2[24];
    for (int s = 0; s < 7; s++) assert_int_equal(ml_mixture_next(a, in, tg, doc, pos), ML_OK);
    size_t n = ml_mixture_state_size(a);
    assert_int_equal(n, 10 + 2 * 4 + 2 * R);
    int64_t *w = malloc(n * sizeof *w);
    ml_mixture_get_state(a, w);
    int32_t (*want)[24] = malloc(sizeof(int32_t[24]) * K * 4);
    for (int s = 0; s < K; s++) {
        assert_int_equal(ml_mixture_next(a, want[4 * s], want[4 * s + 1], want[4 * s + 2], want[4 * s + 3]), ML_OK);
    }
    ml_mixture *b = open_mix(2, 1, B, T, R, 12345); /* the seed does not matter after set_state */
    assert_int_equal(ml_mixture_set_state(b, w, n), ML_OK);
    assert_int_equal(ml_mixture_set_state(a, w, n), ML_OK); /* also rewinds the same loader */
    for (int s = 0; s < K; s++) {
        assert_int_equal(ml_mixture_next(b, in, tg, doc, pos), ML_OK);
        assert_int_equal(ml_mixture_next(a, in2, tg2, doc2, pos2), ML_OK);
        assert_memory_equal(in, want[4 * s], sizeof in);
        assert_memory_equal(tg, want[4 * s + 1], sizeof tg);
        assert_memory_equal(doc, want[4 * s + 2], sizeof doc);
        assert_memory_equal(pos, want[4 * s + 3], sizeof pos);
        assert_memory_equal(in2, in, sizeof in);
    }
    int64_t *w2 = malloc(n * sizeof *w2), *w3 = malloc(n * sizeof *w3);
    ml_mixture_get_state(a, w2);
    ml_mixture_get_state(b, w3);
    assert_memory_equal(w2, w3, n * sizeof *w2);
    /* states that do not fit are refused and leave the loader unchanged */
    ml_mixture *c = open_mix(2, 1, B, T, R + 1, 9);
    assert_int_equal(ml_mixture_set_state(c, w, n), ML_ERR_RANGE);
    ml_mixture_close(c);
    w[0] = 7;
    assert_int_equal(ml_mixture_set_state(b, w, n), ML_ERR_FORMAT);
    ml_mixture_get_state(a, w);
    w[10 + 2] = 100000; /* source 0 offset beyond its tokens */
    assert_int_equal(ml_mixture_set_state(b, w, n), ML_ERR_RANGE);
    ml_mixture_get_state(b, w2);
    assert_memory_equal(w2, w3, n * sizeof *w2);
    free(w);
    free(w2);
    free(w3);
    free(want);
    ml_mixture_close(a);
    ml_mixture_close(b);
}

static void expect_open_fail(const char *sa, const char *sb, ml_status code, const char *needle1, const char *needle2) {
    const char *specs[2] = {sa, sb};
    ml_mixture_opts o = {.B = 2, .T = 4};
    ml_mixture *m = (ml_mixture *)1;
    assert_int_equal(ml_mixture_open_specs(&m, specs, 2, &o), code);
    assert_null(m);
    const char *e = ml_last_error();
    print_message("error: %s\n", e);
    assert_null(strchr(e, '\n'));
    if (needle1) assert_non_null(strstr(e, needle1));
    if (needle2) assert_non_null(strstr(e, needle2));
}

static void test_bad_sources(void **state) {
    (void)state;
    char good[600], s[1200];
    snprintf(good, sizeof good, "%s:1", p_a);
    snprintf(s, sizeof s, "%s:0:code", p_b1);
    expect_open_fail(good, s, ML_ERR_ARG, p_b1, "weight");
    const char *missing = ml_test_path(dir, "missing.shard");
    snprintf(s, sizeof s, "%s,%s:1", p_b1, missing);
    expect_open_fail(good, s, ML_ERR_IO, "missing.shard", NULL);
    snprintf(s, sizeof s, "%s:1:other", p_other);
    expect_open_fail(good, s, ML_ERR_ARG, "a.shard", "other.shard");
    /* T+1 larger than a source */
    snprintf(s, sizeof s, "%s:1", p_b1);
    const char *specs[2] = {good, s};
    ml_mixture_opts o = {.B = 1, .T = NB1};
    ml_mixture *m = NULL;
    assert_int_equal(ml_mixture_open_specs(&m, specs, 2, &o), ML_ERR_RANGE);
    assert_null(m);
}

int main(void) {
    dir = ml_test_tmpdir("test_mixture");
    snprintf(p_a, sizeof p_a, "%s", ml_test_path(dir, "a.shard"));
    snprintf(p_b1, sizeof p_b1, "%s", ml_test_path(dir, "b1.shard"));
    snprintf(p_b2, sizeof p_b2, "%s", ml_test_path(dir, "b2.shard"));
    snprintf(p_other, sizeof p_other, "%s", ml_test_path(dir, "other.shard"));
    const struct CMUnitTest setup[] = {cmocka_unit_test(test_parse)};
    int rc = cmocka_run_group_tests(setup, NULL, NULL);
    write_shard(p_a, 0, NA, "test-v1", "web");
    write_shard(p_b1, BASE_B, NB1, "test-v1", NULL);
    write_shard(p_b2, BASE_B + NB1, NB2, "test-v1", NULL);
    write_shard(p_other, 0, 100, "other-v2", NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive_windows), cmocka_unit_test(test_proportions),
        cmocka_unit_test(test_determinism),         cmocka_unit_test(test_state_restore),
        cmocka_unit_test(test_bad_sources),
    };
    return ml_test_exit(rc | cmocka_run_group_tests(tests, NULL, NULL));
}
