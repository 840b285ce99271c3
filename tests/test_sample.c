/* Sampling and generation: greedy generation equals the argmax of the training forward's logits at
 * every step (tiny-r1 and tiny-pro, whose window is shorter than the sequence); a seed fixes the
 * tokens and different seeds give different ones; top-k 1 is greedy; sampled frequencies follow
 * the temperature-scaled, top-k / top-p truncated distribution (20,000 draws, within 0.015); the
 * UTF-8 hold-back and the text streamer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/tokenizer.h"
#include "infer/sample.h"
#include "model/model.h"
#include "tests/support/test_util.h"

enum { NEW = 30, MAXT = 64 };

static void make_model(ml_model *m, const char *preset) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    cfg.initializer_range = 0.1f;
    assert_int_equal(ml_model_create(m, &cfg), ML_OK);
    ml_model_init_weights(m, 5);
}

typedef struct {
    int32_t tok[MAXT];
    int n;
} collect;

static ml_status sink(void *u, int32_t t) {
    collect *c = u;
    c->tok[c->n++] = t;
    return ML_OK;
}

static void gen(ml_model *m, const ml_sampling *so, uint64_t seed, const int32_t *prompt, int np, collect *out) {
    ml_decoder d;
    ml_sampler s;
    ml_gen_stats st;
    assert_int_equal(ml_decoder_create(&d, m, np + NEW, 16), ML_OK);
    assert_int_equal(ml_sampler_create(&s, m->cfg.vocab_size, so, seed), ML_OK);
    memset(out, 0, sizeof *out);
    assert_int_equal(ml_generate(&d, &s, prompt, np, NEW, -1, sink, out, &st), ML_OK);
    assert_int_equal(st.new_tokens, NEW);
    assert_int_equal(out->n, NEW);
    ml_sampler_free(&s);
    ml_decoder_free(&d);
}

static void greedy_matches_forward(const char *preset) {
    ml_model m;
    make_model(&m, preset);
    const int32_t prompt[5] = {72, 101, 108, 108, 111};
    collect c;
    ml_sampling greedy = {.temperature = 0, .top_k = 0, .top_p = 1};
    gen(&m, &greedy, 1, prompt, 5, &c);
    const int T = 5 + NEW - 1, V = m.cfg.vocab_size;
    int32_t seq[MAXT];
    memcpy(seq, prompt, sizeof prompt);
    memcpy(seq + 5, c.tok, sizeof(int32_t) * (NEW - 1));
    assert_int_equal(ml_model_reserve(&m, 1, T, T), ML_OK);
    ml_batch b = {.tokens = seq, .B = 1, .T = T};
    float *lg = malloc(sizeof(float) * T * V);
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_logits(&m, &b, lg), ML_OK);
    int distinct = 0;
    for (int i = 0; i < NEW; i++) {
        const float *row = lg + (size_t)(4 + i) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        if (best != c.tok[i]) fail_msg("%s: step %d: greedy %d, forward argmax %d", preset, i, c.tok[i], best);
        distinct += i > 0 && c.tok[i] != c.tok[i - 1];
    }
    assert_true(distinct > 0); /* not a degenerate constant sequence */
    /* top-k 1 at any temperature is greedy too */
    collect k1;
    ml_sampling topk1 = {.temperature = 1.5f, .top_k = 1, .top_p = 1};
    gen(&m, &topk1, 9, prompt, 5, &k1);
    assert_memory_equal(k1.tok, c.tok, sizeof(int32_t) * NEW);
    free(lg);
    ml_model_free(&m);
}

static void test_greedy_r1(void **s) { greedy_matches_forward("tiny-r1"); }
static void test_greedy_pro(void **s) { greedy_matches_forward("tiny-pro"); }

static void test_seeds(void **s) {
    ml_model m;
    make_model(&m, "tiny-v1");
    const int32_t prompt[3] = {256, 65, 66};
    ml_sampling so = {.temperature = 1.0f, .top_k = 50, .top_p = 0.95f};
    collect a, b, c;
    gen(&m, &so, 42, prompt, 3, &a);
    gen(&m, &so, 42, prompt, 3, &b);
    gen(&m, &so, 43, prompt, 3, &c);
    assert_memory_equal(a.tok, b.tok, sizeof(int32_t) * NEW);
    assert_memory_not_equal(a.tok, c.tok, sizeof(int32_t) * NEW);
    ml_model_free(&m);
}

static void frequencies(const ml_sampling *so, const float *logits, int V, const double *expect) {
    ml_sampler s;
    assert_int_equal(ml_sampler_create(&s, V, so, 7), ML_OK);
    enum { DRAWS = 20000 };
    int count[8] = {0};
    for (int i = 0; i < DRAWS; i++) count[ml_sampler_pick(&s, logits)]++;
    for (int v = 0; v < V; v++) {
        double f = (double)count[v] / DRAWS;
        if (fabs(f - expect[v]) > 0.015)
            fail_msg("T %g k %d p %g: token %d frequency %.4f, expected %.4f", so->temperature, so->top_k, so->top_p,
                     v, f, expect[v]);
        if (expect[v] == 0 && count[v]) fail_msg("token %d sampled though truncated away", v);
    }
    ml_sampler_free(&s);
}

static void test_distributions(void **st) {
    /* probabilities .05 .5 .15 .3 (unsorted on purpose) */
    const double p[4] = {0.05, 0.5, 0.15, 0.3};
    float lg[4];
    for (int i = 0; i < 4; i++) lg[i] = (float)log(p[i]) + 3.0f;
    ml_sampling plain = {1, 0, 1};
    frequencies(&plain, lg, 4, p);
    ml_sampling hot = {2, 0, 1}; /* p^(1/2), normalised */
    double z = 0, e2[4];
    for (int i = 0; i < 4; i++) z += sqrt(p[i]);
    for (int i = 0; i < 4; i++) e2[i] = sqrt(p[i]) / z;
    frequencies(&hot, lg, 4, e2);
    ml_sampling k2 = {1, 2, 1};
    const double ek2[4] = {0, 0.5 / 0.8, 0, 0.3 / 0.8};
    frequencies(&k2, lg, 4, ek2);
    ml_sampling p75 = {1, 0, 0.75f}; /* .5 + .3 reaches .75 */
    frequencies(&p75, lg, 4, ek2);
    ml_sampling p5 = {1, 0, 0.5f}; /* .5 alone reaches .5 */
    const double e1[4] = {0, 1, 0, 0};
    frequencies(&p5, lg, 4, e1);
    ml_sampling k3p = {1, 3, 0.9f}; /* top 3 = .5 .3 .15 (sum .95); .9 of that needs all three */
    const double ek3[4] = {0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95};
    frequencies(&k3p, lg, 4, ek3);
    ml_sampler s;
    ml_sampling bad[] = {{-1, 0, 1}, {NAN, 0, 1}, {1, -2, 1}, {1, 0, 0}, {1, 0, 1.5f}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_int_equal(ml_sampler_create(&s, 4, &bad[i], 1), ML_ERR_ARG);
}

static void test_utf8(void **st) {
    const char *e = "a\xc3\xa9"; /* aé */
    assert_int_equal(ml_utf8_complete_prefix(e, 3), 3);
    assert_int_equal(ml_utf8_complete_prefix(e, 2), 1);
    const char *euro = "\xe2\x82\xac";
    assert_int_equal(ml_utf8_complete_prefix(euro, 1), 0);
    assert_int_equal(ml_utf8_complete_prefix(euro, 2), 0);
    assert_int_equal(ml_utf8_complete_prefix(euro, 3), 3);
    const char *smile = "x\xf0\x9f\x98\x80";
    for (int n = 2; n <= 4; n++) assert_int_equal(ml_utf8_complete_prefix(smile, n), 1);
    assert_int_equal(ml_utf8_complete_prefix(smile, 5), 5);
    assert_int_equal(ml_utf8_complete_prefix("\x80\x80", 2), 2); /* stray continuation bytes pass */
    assert_int_equal(ml_utf8_complete_prefix("\xff", 1), 1);

    /* the streamer writes only whole characters, each as soon as it is complete */
    ml_tokenizer *tok;
    assert_int_equal(ml_tokenizer_open(&tok, "bytes"), ML_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const int32_t prompt[2] = {256, 'H'};
    ml_text_stream ts;
    assert_int_equal(ml_text_stream_init(&ts, tok, f, prompt, 2, 16), ML_OK);
    const unsigned char gen[] = {'i', 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xc3};
    const size_t expect_len[] = {1, 1, 1, 4, 4, 4, 4, 8, 8};
    for (int i = 0; i < 9; i++) {
        assert_int_equal(ml_text_stream_push(&ts, gen[i]), ML_OK);
        assert_int_equal(len, expect_len[i]);
    }
    assert_int_equal(ml_text_stream_finish(&ts), ML_OK);
    assert_int_equal(len, 9);
    assert_memory_equal(buf, gen, 9);
    ml_text_stream_free(&ts);
    fclose(f);
    free(buf);
    ml_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_r1),   cmocka_unit_test(test_greedy_pro), cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_distributions), cmocka_unit_test(test_utf8),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
