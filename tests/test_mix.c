/* mix/: per-sample gradient dot products and the mixture arithmetic.
 *
 * 1. Influence scores against PyTorch autograd (tests/reference/influence_ref.py: one backward per
 *    sample, gradients of the named tensors, dot products with each target set's mean gradient) on tiny
 *    models: v1 with layer sharing and a tied embedding, and an untied R1 (QK-norm) variant; selections
 *    "embed,last:1" (the default), "head,block:0" and "all". Tolerance per score:
 *    |c - t| <= 2e-3 * max_i |t_i| + 1e-9 (fp32 products summed in different orders; observed ~1e-5).
 * 2. The batched observer equals brute force in C: per-row B = 1 gradients dotted with the mean gradient
 *    (ml_influence_dot), same tolerance.
 * 3. Eqs. 5 and 6 against a direct computation, the floor and temperature, the collapse to uniform.
 * 4. mixture.json reading: specs, relative paths, and one-line errors (weights not summing to a positive
 *    number, a negative weight, no shards). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "common/rng.h"
#include "formats/safetensors.h"
#include "mix/influence.h"
#include "mix/mix.h"
#include "mix/mixture_file.h"
#include "model/model.h"
#include "tests/support/test_util.h"

enum { B = 3, T = 16, NT = 4 }; /* samples, tokens per row, target rows (two sets of two) */

static void write_batch(const char *path, const int32_t *tok, const int32_t *tgt, const int32_t *set, int rows) {
    ml_safetensors_writer *w;
    int64_t bt[2] = {rows, T}, n1[1] = {rows};
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    ml_safetensors_writer_add_raw(w, "tokens", ML_ST_I32, 2, bt, tok, sizeof(int32_t) * rows * T);
    ml_safetensors_writer_add_raw(w, "targets", ML_ST_I32, 2, bt, tgt, sizeof(int32_t) * rows * T);
    if (set) ml_safetensors_writer_add_raw(w, "set", ML_ST_I32, 1, n1, set, sizeof(int32_t) * rows);
    assert_int_equal(ml_safetensors_writer_write(w, path), ML_OK);
    ml_safetensors_writer_free(w);
}

/* names of the selected parameters, comma-separated */
static void sel_names(const ml_model *m, const unsigned char *sel, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < m->n_params; i++)
        if (sel[i]) k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "," : "", m->params[i].name);
}

static void run_case(const char *preset, int untie, const char *spec) {
    const char *dir = ml_test_tmpdir("mix_influence");
    char cfg_path[4096], w_path[4096], s_path[4096], t_path[4096], o_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    if (untie) { /* the same preset with an LM head of its own */
        char *text;
        size_t size;
        assert_int_equal(ml_read_file(cfg_path, &text, &size), ML_OK);
        char *p = strstr(text, "\"tie_word_embeddings\": true");
        assert_non_null(p);
        memcpy(p, "\"tie_word_embeddings\":false", 27);
        snprintf(cfg_path, sizeof cfg_path, "%s/%s-untied.json", dir, preset);
        FILE *f = fopen(cfg_path, "w");
        fputs(text, f);
        fclose(f);
        free(text);
    }
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, cfg_path), ML_OK);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    ml_model_init_weights(&m, 11);
    /* larger weights than the init's 0.02 so that every tensor's gradient matters */
    for (size_t i = 0; i < m.num_floats; i++)
        if (m.param_arena.base[i] != 1.0f) m.param_arena.base[i] *= 5.0f;
    assert_int_equal(ml_model_reserve(&m, NT > B ? NT : B, T, T), ML_OK);
    snprintf(w_path, sizeof w_path, "%s/%s_w.safetensors", dir, preset);
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    for (int i = 0; i < m.n_params; i++)
        assert_int_equal(ml_safetensors_writer_add_f32(w, m.params[i].name, ML_ST_F32, m.params[i].ndim, m.params[i].shape,
                                                       ml_param_data(&m, &m.params[i])),
                         ML_OK);
    assert_int_equal(ml_safetensors_writer_write(w, w_path), ML_OK);
    ml_safetensors_writer_free(w);

    int32_t st[B * T], sg[B * T], tt[NT * T], tg[NT * T], set[NT] = {0, 0, 1, 1};
    ml_rng r;
    ml_rng_seed(&r, 3);
    for (int i = 0; i < B * T; i++) st[i] = (int32_t)ml_rng_below(&r, 200), sg[i] = i % 9 == 4 ? -1 : (int32_t)ml_rng_below(&r, 200);
    for (int i = 0; i < NT * T; i++) tt[i] = (int32_t)ml_rng_below(&r, 100), tg[i] = (int32_t)ml_rng_below(&r, 100);
    snprintf(s_path, sizeof s_path, "%s/samples.safetensors", dir);
    snprintf(t_path, sizeof t_path, "%s/targets.safetensors", dir);
    write_batch(s_path, st, sg, NULL, B);
    write_batch(t_path, tt, tg, set, NT);

    unsigned char *sel = calloc((size_t)m.n_params, 1);
    char names[8192], desc[256];
    assert_int_equal(ml_influence_select(&m, spec, sel, desc, sizeof desc), ML_OK);
    sel_names(&m, sel, names, sizeof names);
    snprintf(o_path, sizeof o_path, "%s/out.safetensors", dir);
    assert_int_equal(ml_test_run("%s %s/tests/reference/influence_ref.py --config %s --weights %s --samples %s --targets %s "
                                 "--tensors %s --out %s",
                                 ML_PYTHON, ML_SOURCE_DIR, cfg_path, w_path, s_path, t_path, names, o_path),
                     0);

    /* mean gradients of the two target sets: two rows each */
    float *gbar[2];
    for (int c = 0; c < 2; c++) {
        gbar[c] = malloc(m.num_floats * sizeof(float));
        ml_batch tb = {.tokens = tt + c * 2 * T, .targets = tg + c * 2 * T, .B = 2, .T = T};
        double ls;
        int64_t n;
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_forward(&m, &tb), ML_OK);
        assert_int_equal(ml_model_head_loss(&m, &tb, 1.0f / (2 * T), &ls, &n), ML_OK);
        assert_int_equal(ml_model_backward(&m, &tb), ML_OK);
        memcpy(gbar[c], m.grad_arena.base, m.num_floats * sizeof(float));
    }
    ml_batch sb = {.tokens = st, .targets = sg, .B = B, .T = T};
    double scores[B * 2], row_loss[B];
    assert_int_equal(ml_influence_score(&m, &sb, sel, (const float *const *)gbar, 2, scores, row_loss), ML_OK);

    ml_safetensors *gold;
    float ref[B * 2], ref_loss[B];
    assert_int_equal(ml_safetensors_open(&gold, o_path), ML_OK);
    assert_int_equal(ml_safetensors_read_f32(gold, "scores", ref, B * 2), ML_OK);
    assert_int_equal(ml_safetensors_read_f32(gold, "row_loss", ref_loss, B), ML_OK);
    ml_safetensors_close(gold);
    double scale = 0, worst = 0;
    for (int i = 0; i < B * 2; i++) scale = fmax(scale, fabs(ref[i]));
    assert_true(scale > 0);
    for (int i = 0; i < B * 2; i++) {
        double err = fabs(scores[i] - ref[i]);
        worst = fmax(worst, err / scale);
        if (err > 2e-3 * scale + 1e-9)
            fail_msg("%s%s [%s] score %d: %.8g vs torch %.8g", preset, untie ? " untied" : "", spec, i, scores[i], ref[i]);
    }
    for (int i = 0; i < B; i++) assert_true(fabs(row_loss[i] - ref_loss[i]) <= 2e-5 * (1 + fabs(ref_loss[i])));
    print_message("%s%s [%s: %s]: %d scores, worst error %.2e of the largest (%.3g)\n", preset, untie ? " untied" : "",
                  spec, desc, B * 2, worst, scale);

    /* brute force in C: each row alone, its full gradient dotted with the mean gradients */
    for (int i = 0; i < B; i++) {
        ml_batch one = {.tokens = st + i * T, .targets = sg + i * T, .B = 1, .T = T};
        double ls;
        int64_t n;
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_forward(&m, &one), ML_OK);
        assert_int_equal(ml_model_head_loss(&m, &one, 1.0f, &ls, &n), ML_OK);
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_head_loss(&m, &one, 1.0f / (float)n, &ls, &n), ML_OK);
        assert_int_equal(ml_model_backward(&m, &one), ML_OK);
        for (int c = 0; c < 2; c++) {
            double d = ml_influence_dot(&m, sel, m.grad_arena.base, gbar[c]);
            if (fabs(d - scores[i * 2 + c]) > 2e-3 * scale + 1e-9)
                fail_msg("%s [%s] row %d target %d: batched %.8g vs alone %.8g", preset, spec, i, c, scores[i * 2 + c], d);
        }
    }
    for (int c = 0; c < 2; c++) free(gbar[c]);
    free(sel);
    ml_model_free(&m);
}

static void test_v1_shared_tied_default(void **s) { run_case("tiny-v1", 0, "embed,last:1"); }
static void test_v1_shared_tied_all(void **s) { run_case("tiny-v1", 0, "all"); }
static void test_r1_untied_default(void **s) { run_case("tiny-r1", 1, "embed,last:1"); }
static void test_r1_untied_head_block0(void **s) { run_case("tiny-r1", 1, "head,block:0"); }
static void test_r1_untied_all(void **s) { run_case("tiny-r1", 1, "all"); }

static void test_selection_errors(void **s) {
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/configs/tiny-r1.json", ML_SOURCE_DIR);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, cfg_path), ML_OK);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    unsigned char sel[256];
    assert_int_equal(ml_influence_select(&m, "last:3", sel, NULL, 0), ML_ERR_ARG);
    assert_int_equal(ml_influence_select(&m, "model.norm.weight", sel, NULL, 0), ML_ERR_ARG);
    assert_int_equal(ml_influence_select(&m, "nonsense", sel, NULL, 0), ML_ERR_ARG);
    assert_int_equal(ml_influence_select(&m, "embed,last:1", sel, NULL, 0), ML_OK);
    int n = 0;
    for (int i = 0; i < m.n_params; i++) n += sel[i];
    assert_int_equal(n, 1 + 7); /* the tied embedding and the 7 matrices of the last block */
    ml_model_free(&m);
}

/* Eqs. 5-6 against a direct computation on random scores. */
static void test_aggregation(void **s) {
    enum { TT = 4, N = 30, C = 2, G = 3 };
    double scores[TT * N * C], joint[N], len[N], rho[G], w[G];
    int dom[N], collapsed;
    ml_rng r;
    ml_rng_seed(&r, 9);
    for (int i = 0; i < TT * N * C; i++) scores[i] = ml_rng_normal(&r) + 0.3;
    for (int i = 0; i < N; i++) dom[i] = i % G, len[i] = 10 + i % 7;
    const double tw[C] = {1.0, 0.5};
    ml_mix_joint_influence(scores, TT, N, C, tw, joint);
    for (int i = 0; i < N; i++) { /* α_t = t / (1+2+3+4), λ = (2/3, 1/3) */
        double d = 0;
        for (int t = 0; t < TT; t++)
            d += (t + 1) / 10.0 * (2.0 / 3 * scores[(t * N + i) * C] + 1.0 / 3 * scores[(t * N + i) * C + 1]);
        assert_true(fabs(d - joint[i]) < 1e-12);
    }
    assert_int_equal(ml_mix_domain_weights(joint, dom, len, N, G, 0.0, 1.0, rho, w, &collapsed), ML_OK);
    double num[G] = {0}, den[G] = {0}, pos = 0;
    for (int i = 0; i < N; i++) num[dom[i]] += joint[i] * len[i], den[dom[i]] += len[i];
    for (int g = 0; g < G; g++) pos += fmax(num[g] / den[g], 0);
    for (int g = 0; g < G; g++) {
        assert_true(fabs(rho[g] - num[g] / den[g]) < 1e-12);
        assert_true(fabs(w[g] - fmax(rho[g], 0) / pos) < 1e-12); /* Eq. 6 exactly, without floor */
    }
    /* floor and temperature */
    assert_int_equal(ml_mix_domain_weights(joint, dom, len, N, G, 0.05, 2.0, rho, w, &collapsed), ML_OK);
    double ps = 0, sum = 0;
    for (int g = 0; g < G; g++) ps += rho[g] > 0 ? sqrt(rho[g]) : 0;
    for (int g = 0; g < G; g++) {
        assert_true(fabs(w[g] - (0.05 + 0.85 * (rho[g] > 0 ? sqrt(rho[g]) : 0) / ps)) < 1e-12);
        sum += w[g];
    }
    assert_true(fabs(sum - 1) < 1e-12);
    /* every utility negative: uniform, flagged */
    for (int i = 0; i < N; i++) joint[i] = -1 - i;
    assert_int_equal(ml_mix_domain_weights(joint, dom, len, N, G, 0.01, 1.0, rho, w, &collapsed), ML_OK);
    assert_int_equal(collapsed, 1);
    for (int g = 0; g < G; g++) assert_true(fabs(w[g] - 1.0 / G) < 1e-12);
    assert_int_equal(ml_mix_domain_weights(joint, dom, len, N, G, 0.5, 1.0, rho, w, &collapsed), ML_ERR_ARG);
    assert_int_equal(ml_mix_domain_weights(joint, dom, len, N, G, 0.01, 0.0, rho, w, &collapsed), ML_ERR_ARG);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_mixture_file(void **s) {
    const char *dir = ml_test_tmpdir("mix_file");
    char p[4096];
    char **specs;
    int n;
    /* shard paths are resolved when the file is read: relative to its folder, absolute as given; they must exist */
    char real_dir[4096], abs_shard[4200], text[12000];
    assert_non_null(realpath(dir, real_dir));
    snprintf(p, sizeof p, "%s/x", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    const char *names[] = {"x/a.shard", "elsewhere.shard", "b.shard", "c.shard"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        write_text(p, "");
    }
    snprintf(abs_shard, sizeof abs_shard, "%s/elsewhere.shard", real_dir);
    snprintf(text, sizeof text,
             "{\"domains\":[{\"name\":\"a\",\"weight\":0.25,\"shards\":[\"x/a.shard\",\"%s\"]},"
             "{\"name\":\"b\",\"weight\":0,\"shards\":[\"b.shard\"]},{\"name\":\"c\",\"weight\":0.75,\"shards\":[\"c.shard\"]}]}",
             abs_shard);
    snprintf(p, sizeof p, "%s/m.json", dir);
    write_text(p, text);
    assert_int_equal(ml_mixture_file_specs(p, &specs, &n), ML_OK);
    assert_int_equal(n, 2); /* weight 0: left out */
    char want[8192];
    snprintf(want, sizeof want, "%s/x/a.shard,%s:0.25:a", real_dir, abs_shard);
    assert_string_equal(specs[0], want);
    ml_mixture_specs_free(specs, n);
    /* a shard that does not exist is an error naming the file */
    write_text(p, "{\"domains\":[{\"name\":\"a\",\"weight\":1,\"shards\":[\"missing.shard\"]}]}");
    assert_int_equal(ml_mixture_file_specs(p, &specs, &n), ML_ERR_IO);
    assert_non_null(strstr(ml_last_error(), "missing.shard"));
    const char *bad[] = {
        "{\"domains\":[{\"name\":\"a\",\"weight\":0,\"shards\":[\"a\"]},{\"name\":\"b\",\"weight\":0,\"shards\":[\"b\"]}]}",
        "{\"domains\":[{\"name\":\"a\",\"weight\":-1,\"shards\":[\"a\"]},{\"name\":\"b\",\"weight\":2,\"shards\":[\"b\"]}]}",
        "{\"domains\":[{\"name\":\"a\",\"weight\":1,\"shards\":[]}]}",
        "{\"domains\":[]}",
        "not json",
    };
    const char *why[] = {"sum to 0", "finite weight >= 0", "lists no shards", "no \"domains\"", "not valid JSON"};
    for (int i = 0; i < 5; i++) {
        write_text(p, bad[i]);
        assert_int_not_equal(ml_mixture_file_specs(p, &specs, &n), ML_OK);
        if (!strstr(ml_last_error(), why[i]) || strchr(ml_last_error(), '\n'))
            fail_msg("case %d: '%s' lacks '%s'", i, ml_last_error(), why[i]);
    }
    char rel[4096];
    snprintf(p, sizeof p, "%s/sub", dir);
    ml_test_run("mkdir -p %s/sub/deep %s/other && touch %s/other/f.shard", dir, dir, dir);
    snprintf(want, sizeof want, "%s/other/f.shard", dir);
    snprintf(p, sizeof p, "%s/sub/deep", dir);
    assert_int_equal(ml_mix_relpath(want, p, rel, sizeof rel), ML_OK);
    assert_string_equal(rel, "../../other/f.shard");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_shared_tied_default), cmocka_unit_test(test_v1_shared_tied_all),
        cmocka_unit_test(test_r1_untied_default),      cmocka_unit_test(test_r1_untied_head_block0),
        cmocka_unit_test(test_r1_untied_all),          cmocka_unit_test(test_selection_errors),
        cmocka_unit_test(test_aggregation),            cmocka_unit_test(test_mixture_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
