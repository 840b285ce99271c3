/* Whole-network gradient check: for each variant (v1 with layer sharing, R1 with QK-norm and
 * adjacent RoPE, Pro with a sliding window shorter than T, document mask and custom positions),
 * the directional derivative of the loss along a random direction in each parameter tensor,
 * measured by central differences (eps 1e-3), matches <grad, direction>. Tolerance 2% + 5e-4:
 * the fp32 loss carries about 2e-7 of rounding, i.e. 1e-4 in the difference quotient. */
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
#include "tests/support/test_util.h"

static void base_config(ml_config *c) {
    memset(c, 0, sizeof *c);
    c->dialect = ML_DIALECT_LLAMA;
    c->vocab_size = 37;
    c->hidden_size = 32;
    c->intermediate_size = 48;
    c->num_layers = 2;
    c->num_heads = 4;
    c->num_kv_heads = 2;
    c->head_dim = 8;
    c->max_position_embeddings = 64;
    c->rms_norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->initializer_range = 0.2f; /* larger than real init so gradients dominate fp32 noise */
    c->tie_word_embeddings = 1;
    c->layer_repeat = 1;
    c->rope_pairing = ML_ROPE_HALF_SPLIT;
    c->bos_token_id = c->eos_token_id = c->pad_token_id = -1;
    for (int l = 0; l < ML_MAX_LAYERS; l++) c->layer_rope[l] = 1;
}

static double loss_of(ml_model *m, const ml_batch *b) {
    double sum;
    int64_t n;
    assert_int_equal(ml_model_forward(m, b), ML_OK);
    assert_int_equal(ml_model_head_loss(m, b, 0.0f, &sum, &n), ML_OK);
    return sum / (double)n;
}

/* grad_ready hook: every gradient that the hook's contract calls final holds a number by then (the arena started as
 * NaN, so a gradient left to its first product but not written, or added to unzeroed memory, shows). */
typedef struct {
    int calls, non_finite;
} hook_seen;

static void count_non_finite(void *user, int layer) {
    hook_seen *h = ((void **)user)[0];
    const ml_model *m = ((void **)user)[1];
    h->calls++;
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        const int final = layer == -1 || p->layer == layer ||
                          (layer == m->cfg.num_layers && (p->kind == ML_P_FINAL_NORM || p->kind == ML_P_LM_HEAD));
        const float *g = ml_param_grad(m, p);
        for (size_t j = 0; final && j < p->numel; j++) h->non_finite += !isfinite(g[j]);
    }
}

static void check_model(const ml_config *cfg, int use_pos, int use_doc) {
    enum { B = 2, T = 9 };
    ml_model m;
    assert_int_equal(ml_model_create(&m, cfg), ML_OK);
    ml_model_init_weights(&m, 7);
    assert_int_equal(ml_model_reserve(&m, B, T, 64), ML_OK);
    ml_rng r;
    ml_rng_seed(&r, 99);
    int32_t tok[B * T], tgt[B * T], pos[B * T], doc[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)ml_rng_below(&r, cfg->vocab_size);
        tgt[i] = i % 5 == 4 ? -1 : (int32_t)ml_rng_below(&r, cfg->vocab_size);
        doc[i] = (i % T) < 4 ? 0 : 1;
        pos[i] = use_doc ? ((i % T) < 4 ? i % T : i % T - 4) : 3 + i % T;
    }
    ml_batch b = {.tokens = tok, .targets = tgt, .pos = use_pos ? pos : NULL, .doc = use_doc ? doc : NULL, .B = B, .T = T};
    /* what a previous step left: zero_grad leaves the products' gradients to them, and backward must not read it */
    for (size_t i = 0; i < m.grad_arena.capacity; i++) m.grad_arena.base[i] = NAN;
    ml_model_zero_grad(&m);
    hook_seen seen = {0, 0};
    void *hook_user[2] = {&seen, &m};
    m.grad_ready = count_non_finite, m.grad_ready_user = hook_user;
    double sum;
    int64_t n;
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_head_loss(&m, &b, 1.0f, &sum, &n), ML_OK);
    /* grad_scale 1 gives the gradient of the summed loss; rescale to the mean */
    assert_int_equal(ml_model_backward(&m, &b), ML_OK);
    m.grad_ready = NULL;
    assert_int_equal(seen.calls, cfg->num_layers + 2);
    assert_int_equal(seen.non_finite, 0);
    for (size_t i = 0; i < m.grad_arena.capacity; i++) m.grad_arena.base[i] /= (float)n;
    for (int p = 0; p < m.n_params; p++) {
        const ml_param *pr = &m.params[p];
        float *w = ml_param_data(&m, pr), *g = ml_param_grad(&m, pr);
        float *dir = malloc(pr->numel * sizeof(float)), *orig = malloc(pr->numel * sizeof(float));
        memcpy(orig, w, pr->numel * sizeof(float));
        double ana = 0;
        for (size_t i = 0; i < pr->numel; i++) {
            dir[i] = (float)ml_rng_normal(&r);
            ana += (double)dir[i] * g[i];
        }
        const float eps = 1e-3f;
        for (size_t i = 0; i < pr->numel; i++) w[i] = orig[i] + eps * dir[i];
        double lp = loss_of(&m, &b);
        for (size_t i = 0; i < pr->numel; i++) w[i] = orig[i] - eps * dir[i];
        double lm = loss_of(&m, &b);
        memcpy(w, orig, pr->numel * sizeof(float));
        double num = (lp - lm) / (2 * eps);
        if (fabs(num - ana) > 2e-2 * fabs(ana) + 5e-4)
            fail_msg("%s: %s numeric %.7f analytic %.7f", cfg->name, pr->name, num, ana);
        free(dir), free(orig);
    }
    ml_model_free(&m);
}

static void test_grad_v1_layer_sharing(void **state) {
    ml_config c;
    base_config(&c);
    snprintf(c.name, sizeof c.name, "v1-ls");
    c.layer_repeat = 2;
    check_model(&c, 0, 0);
}

static void test_grad_v1_untied(void **state) {
    ml_config c;
    base_config(&c);
    snprintf(c.name, sizeof c.name, "v1-untied");
    c.tie_word_embeddings = 0;
    check_model(&c, 1, 0);
}

static void test_grad_r1(void **state) {
    ml_config c;
    base_config(&c);
    snprintf(c.name, sizeof c.name, "r1");
    c.dialect = ML_DIALECT_LLAMA4_TEXT;
    c.use_qk_norm = 1;
    c.rope_pairing = ML_ROPE_ADJACENT;
    c.layer_rope[1] = 0; /* a NoPE layer: no RoPE and no QK-norm there */
    check_model(&c, 0, 0);
}

static void test_grad_pro(void **state) {
    ml_config c;
    base_config(&c);
    snprintf(c.name, sizeof c.name, "pro");
    c.dialect = ML_DIALECT_MINISTRAL;
    c.num_layers = 3;
    c.sliding_window = 3;
    c.layer_sliding[0] = c.layer_sliding[2] = 1;
    check_model(&c, 1, 1);
}

/* Activation recomputation re-runs each block's forward in backward with the same kernels on the same
 * inputs, so the gradients must be identical bit for bit, for every variant, while the activations kept
 * from forward to backward shrink. */
static float *gradients(const ml_config *cfg, int recompute, int use_pos_doc, double *loss, size_t *saved) {
    enum { B = 2, T = 9 };
    ml_model m;
    assert_int_equal(ml_model_create(&m, cfg), ML_OK);
    ml_model_init_weights(&m, 7);
    m.recompute = recompute;
    assert_int_equal(ml_model_reserve(&m, B, T, 64), ML_OK);
    int32_t tok[B * T], tgt[B * T], pos[B * T], doc[B * T];
    ml_rng r;
    ml_rng_seed(&r, 5);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)ml_rng_below(&r, cfg->vocab_size);
        tgt[i] = (int32_t)ml_rng_below(&r, cfg->vocab_size);
        doc[i] = (i % T) < 4 ? 0 : 1;
        pos[i] = (i % T) < 4 ? i % T : i % T - 4;
    }
    ml_batch b = {.tokens = tok, .targets = tgt, .pos = use_pos_doc ? pos : NULL, .doc = use_pos_doc ? doc : NULL,
                  .B = B, .T = T};
    ml_model_zero_grad(&m);
    int64_t n;
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_head_loss(&m, &b, 1.0f, loss, &n), ML_OK);
    assert_int_equal(ml_model_backward(&m, &b), ML_OK);
    float *g = malloc(m.grad_arena.capacity * sizeof(float));
    memcpy(g, m.grad_arena.base, m.grad_arena.capacity * sizeof(float));
    *saved = m.act_saved_floats;
    ml_model_free(&m);
    return g;
}

static void test_recompute_identical(void **state) {
    ml_config cs[3];
    for (int i = 0; i < 3; i++) base_config(&cs[i]);
    cs[0].layer_repeat = 2;                        /* layer sharing: one block applied twice */
    cs[1].dialect = ML_DIALECT_LLAMA4_TEXT, cs[1].use_qk_norm = 1, cs[1].layer_rope[1] = 0; /* R1 */
    cs[1].rope_pairing = ML_ROPE_ADJACENT;
    cs[2].dialect = ML_DIALECT_MINISTRAL, cs[2].num_layers = 3, cs[2].sliding_window = 3; /* Pro, doc mask */
    cs[2].layer_sliding[0] = 1;
    for (int i = 0; i < 3; i++) {
        ml_model probe;
        assert_int_equal(ml_model_create(&probe, &cs[i]), ML_OK);
        const size_t nf = probe.grad_arena.capacity;
        ml_model_free(&probe);
        double l0, l1;
        size_t s0, s1;
        float *g0 = gradients(&cs[i], 0, i == 2, &l0, &s0), *g1 = gradients(&cs[i], 1, i == 2, &l1, &s1);
        assert_true(l0 == l1);
        assert_memory_equal(g0, g1, nf * sizeof(float));
        assert_true(s1 < s0 / 3); /* only block inputs (and the final norm) are kept */
        free(g0), free(g1);
    }
}

/* Out-of-range input is an error, not a crash or a silent clamp. */
static void test_bad_tokens(void **state) {
    ml_config c;
    base_config(&c);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &c), ML_OK);
    assert_int_equal(ml_model_reserve(&m, 1, 4, 8), ML_OK);
    int32_t tok[4] = {1, 2, 37, 0}, tgt[4] = {1, 1, 1, 1}, pos[4] = {0, 1, 2, 8};
    ml_batch b = {.tokens = tok, .targets = tgt, .B = 1, .T = 4};
    assert_int_equal(ml_model_forward(&m, &b), ML_ERR_RANGE);
    tok[2] = 3;
    b.pos = pos;
    assert_int_equal(ml_model_forward(&m, &b), ML_ERR_RANGE);
    pos[3] = 3;
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    ml_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_v1_layer_sharing),
        cmocka_unit_test(test_grad_v1_untied),
        cmocka_unit_test(test_grad_r1),
        cmocka_unit_test(test_grad_pro),
        cmocka_unit_test(test_recompute_identical),
        cmocka_unit_test(test_bad_tokens),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
