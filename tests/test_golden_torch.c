/* Golden-state test against PyTorch (python3-torch 1.13) for a tiny model of each variant:
 *   v1 with layer sharing (tiny-v1), R1 (tiny-r1: QK-norm, adjacent RoPE), Pro (tiny-pro: sliding
 *   window 8 < T = 24, plus a run with restarting positions and a document mask).
 * The C model writes its initial weights and a batch as safetensors; tests/reference/golden.py runs
 * an independent PyTorch implementation (tests/reference/mobilellm_torch.py) on them and writes
 * logits, loss, every parameter gradient, and the losses and parameters of ten AdamW steps.
 *
 * Tolerances (fp32 on both sides, different summation orders):
 *   logits, loss          |c - t| <= 2e-5 * (1 + |t|)
 *   gradients             per tensor, max |c - t| <= 1e-4 * max|t| + 1e-8
 *   10 AdamW losses       |c - t| <= 2e-6 * |t|            (lr 1e-3; observed <= 3e-7)
 *   10 AdamW parameters   per tensor, max |c - t| <= 0.1 * lr (observed <= 0.04 lr: Adam's update
 *                         m / sqrt(v) of an element whose gradient is ~0 is dominated by rounding
 *                         noise, so such elements may step differently; every loss still agrees).
 *
 * The weight-transform seam (model/linear.h), with the same tolerances: a soft clamp
 * W_used = C tanh(W / C) on every matrix (the tied embedding once) against PyTorch autograd through
 * the same function (golden.py --soft-clamp), and an identity transform that must change nothing,
 * bit for bit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "formats/safetensors.h"
#include "model/linear.h"
#include "model/model.h"
#include "optim/optimizer.h"
#include "tests/support/test_util.h"
#include "train/trainer.h"

enum { B = 2, T = 24, STEPS = 10 };
static const float LR = 1e-3f;

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- weight transforms for the seam tests */
static const float CLAMP = 0.03f; /* init std 0.02: tanh bends the larger weights clearly */

static ml_status soft_clamp_forward(void *ctx, const ml_param *p, float *used, const float *w) {
    for (size_t i = 0; i < p->numel; i++) used[i] = CLAMP * tanhf(w[i] / CLAMP);
    return ML_OK;
}
static void soft_clamp_backward(void *ctx, const ml_param *p, float *g, const float *w) {
    for (size_t i = 0; i < p->numel; i++) {
        const float t = tanhf(w[i] / CLAMP);
        g[i] *= 1.0f - t * t;
    }
}
static ml_status identity_forward(void *ctx, const ml_param *p, float *used, const float *w) {
    memcpy(used, w, p->numel * sizeof(float));
    return ML_OK;
}
static const ml_weight_transform soft_clamp = {"soft-clamp", soft_clamp_forward, soft_clamp_backward, NULL, NULL, NULL};
static const ml_weight_transform identity = {"identity", identity_forward, NULL, NULL, NULL, NULL};

static void set_all_transforms(ml_model *m, const ml_weight_transform *t) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].ndim == 2) assert_int_equal(ml_model_set_transform(m, &m->params[i], t), ML_OK);
}

static void run_variant_ex(const char *preset, int use_pos_doc, int soft);
static void run_variant(const char *preset, int use_pos_doc) { run_variant_ex(preset, use_pos_doc, 0); }

static void run_variant_ex(const char *preset, int use_pos_doc, int soft) {
    const char *dir = ml_test_tmpdir("golden");
    char cfg_path[4096], w_path[4096], b_path[4096], o_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    snprintf(w_path, sizeof w_path, "%s/%s_w.safetensors", dir, preset);
    snprintf(b_path, sizeof b_path, "%s/%s_batch%d.safetensors", dir, preset, use_pos_doc);
    snprintf(o_path, sizeof o_path, "%s/%s_out%d%s.safetensors", dir, preset, use_pos_doc, soft ? "_soft" : "");

    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, cfg_path), ML_OK);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    ml_model_init_weights(&m, 42);
    assert_int_equal(ml_model_reserve(&m, B, T, 64), ML_OK);

    /* weights and batch for PyTorch */
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    for (int i = 0; i < m.n_params; i++) {
        const ml_param *p = &m.params[i];
        assert_int_equal(ml_safetensors_writer_add_f32(w, p->name, ML_ST_F32, p->ndim, p->shape, ml_param_data(&m, p)),
                         ML_OK);
    }
    assert_int_equal(ml_safetensors_writer_write(w, w_path), ML_OK);
    ml_safetensors_writer_free(w);
    int32_t tok[B * T], tgt[B * T], pos[B * T], doc[B * T];
    ml_rng r;
    ml_rng_seed(&r, 5);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)ml_rng_below(&r, cfg.vocab_size);
        tgt[i] = i % 7 == 3 ? -1 : (int32_t)ml_rng_below(&r, cfg.vocab_size);
        int t = i % T, split = (i / T) == 0 ? 10 : 15; /* two packed documents per row */
        doc[i] = t < split ? 0 : 1;
        pos[i] = t < split ? t : t - split;
    }
    int64_t bt[2] = {B, T};
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    ml_safetensors_writer_add_raw(w, "tokens", ML_ST_I32, 2, bt, tok, sizeof tok);
    ml_safetensors_writer_add_raw(w, "targets", ML_ST_I32, 2, bt, tgt, sizeof tgt);
    if (use_pos_doc) {
        ml_safetensors_writer_add_raw(w, "pos", ML_ST_I32, 2, bt, pos, sizeof pos);
        ml_safetensors_writer_add_raw(w, "doc", ML_ST_I32, 2, bt, doc, sizeof doc);
    }
    assert_int_equal(ml_safetensors_writer_write(w, b_path), ML_OK);
    ml_safetensors_writer_free(w);
    char extra[64] = "";
    if (soft) snprintf(extra, sizeof extra, "--soft-clamp %.9g", CLAMP);
    int rc = ml_test_run("%s %s/tests/reference/golden.py --config %s --weights %s --batch %s --out %s --steps %d "
                         "--lr %g --weight-decay 0.1 %s",
                         ML_PYTHON, ML_SOURCE_DIR, cfg_path, w_path, b_path, o_path, soft ? 0 : STEPS, LR, extra);
    if (soft) set_all_transforms(&m, &soft_clamp);
    assert_int_equal(rc, 0);
    ml_safetensors *gold;
    assert_int_equal(ml_safetensors_open(&gold, o_path), ML_OK);

    /* logits and loss */
    ml_batch b = {.tokens = tok, .targets = tgt, .pos = use_pos_doc ? pos : NULL, .doc = use_pos_doc ? doc : NULL,
                  .B = B, .T = T};
    const size_t NV = (size_t)B * T * cfg.vocab_size;
    float *logits = malloc(NV * sizeof(float)), *ref = malloc(NV * sizeof(float));
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_logits(&m, &b, logits), ML_OK);
    assert_int_equal(ml_safetensors_read_f32(gold, "logits", ref, NV), ML_OK);
    for (size_t i = 0; i < NV; i++)
        if (fabs(logits[i] - ref[i]) > 2e-5 * (1 + fabs(ref[i])))
            fail_msg("%s: logit %zu: %.7f vs torch %.7f", preset, i, logits[i], ref[i]);
    double loss_sum;
    int64_t count;
    float ref_loss;
    ml_model_zero_grad(&m);
    assert_int_equal(ml_model_head_loss(&m, &b, 0.0f, &loss_sum, &count), ML_OK);
    assert_int_equal(ml_safetensors_read_f32(gold, "loss", &ref_loss, 1), ML_OK);
    double loss = loss_sum / (double)count;
    print_message("%s%s: loss %.7f torch %.7f\n", preset, use_pos_doc ? " (pos+doc)" : "", loss, ref_loss);
    assert_true(fabs(loss - ref_loss) <= 2e-5 * (1 + fabs(ref_loss)));

    /* every parameter gradient */
    assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (float)count, &loss_sum, &count), ML_OK);
    assert_int_equal(ml_model_backward(&m, &b), ML_OK);
    ml_model_grads_to_latent(&m); /* no-op without transforms */
    double worst = 0;
    for (int i = 0; i < m.n_params; i++) {
        const ml_param *p = &m.params[i];
        float *g = malloc(p->numel * sizeof(float));
        char name[128];
        snprintf(name, sizeof name, "grad.%s", p->name);
        assert_int_equal(ml_safetensors_read_f32(gold, name, g, p->numel), ML_OK);
        double scale = max_abs(g, p->numel), err = 0;
        const float *cg = ml_param_grad(&m, p);
        for (size_t j = 0; j < p->numel; j++) err = fmax(err, fabs(cg[j] - g[j]));
        worst = fmax(worst, err / (scale + 1e-30));
        if (err > 1e-4 * scale + 1e-8) fail_msg("%s: %s gradient off by %.3g (scale %.3g)", preset, name, err, scale);
        free(g);
    }
    print_message("  gradients: worst relative error %.2e over %d tensors\n", worst, m.n_params);
    if (soft) { /* the transform's part ends here: no optimizer steps */
        ml_safetensors_close(gold);
        free(logits), free(ref);
        ml_model_free(&m);
        return;
    }

    /* ten AdamW steps on the same batch */
    ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAMW);
    oc.weight_decay = 0.1;
    ml_optimizer opt;
    assert_int_equal(ml_optimizer_for_model(&opt, &m, &oc), ML_OK);
    float ref_losses[STEPS];
    double worst_l = 0;
    assert_int_equal(ml_safetensors_read_f32(gold, "losses", ref_losses, STEPS), ML_OK);
    for (int s = 0; s < STEPS; s++) {
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (float)count, &loss_sum, &count), ML_OK);
        assert_int_equal(ml_model_backward(&m, &b), ML_OK);
        double l = loss_sum / (double)count;
        worst_l = fmax(worst_l, fabs(l - ref_losses[s]) / fabs(ref_losses[s]));
        if (fabs(l - ref_losses[s]) > 2e-6 * fabs(ref_losses[s]))
            fail_msg("%s: step %d loss %.7f vs torch %.7f", preset, s, l, ref_losses[s]);
        assert_int_equal(ml_optim_step(&opt, m.param_arena.base, m.grad_arena.base, LR), ML_OK);
    }
    double worst_p = 0;
    for (int i = 0; i < m.n_params; i++) {
        const ml_param *p = &m.params[i];
        float *x = malloc(p->numel * sizeof(float));
        char name[128];
        snprintf(name, sizeof name, "final.%s", p->name);
        assert_int_equal(ml_safetensors_read_f32(gold, name, x, p->numel), ML_OK);
        const float *c = ml_param_data(&m, p);
        double err = 0;
        for (size_t j = 0; j < p->numel; j++) err = fmax(err, fabs(c[j] - x[j]));
        worst_p = fmax(worst_p, err);
        if (err > 0.1 * LR) fail_msg("%s: %s after %d steps off by %.3g", preset, p->name, STEPS, err);

        free(x);
    }
    print_message("  %d AdamW steps: losses %.5f -> %.5f, worst loss rel diff %.2e, worst parameter difference %.2e (lr %g)\n", STEPS,
                  ref_losses[0], ref_losses[STEPS - 1], worst_l, worst_p, LR);
    ml_optim_free(&opt);
    ml_safetensors_close(gold);
    free(logits), free(ref);
    ml_model_free(&m);
}

static void test_v1_layer_sharing(void **state) { run_variant("tiny-v1", 0); }
static void test_r1(void **state) { run_variant("tiny-r1", 0); }
static void test_pro_sliding_window(void **state) { run_variant("tiny-pro", 0); }
static void test_pro_positions_and_document_mask(void **state) { run_variant("tiny-pro", 1); }
static void test_r1_positions_and_document_mask(void **state) { run_variant("tiny-r1", 1); }
static void test_soft_clamp_transform_v1(void **state) { run_variant_ex("tiny-v1", 0, 1); }
static void test_soft_clamp_transform_pro_docs(void **state) { run_variant_ex("tiny-pro", 1, 1); }

/* An identity transform goes through the used-weight copies and the gradient pass, and must leave
 * logits, loss and every gradient bit-identical to the model without transforms. */
static void test_identity_transform_changes_nothing(void **state) {
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/configs/tiny-r1.json", ML_SOURCE_DIR);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, cfg_path), ML_OK);
    ml_model a, b2;
    assert_int_equal(ml_model_create(&a, &cfg), ML_OK);
    assert_int_equal(ml_model_create(&b2, &cfg), ML_OK);
    ml_model_init_weights(&a, 7);
    ml_model_init_weights(&b2, 7);
    set_all_transforms(&b2, &identity);
    assert_ptr_not_equal(b2.u.embed, b2.w.embed); /* really computing from the copies */
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37) % cfg.vocab_size, tgt[i] = (i * 11 + 3) % cfg.vocab_size;
    ml_batch bt = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    ml_model *ms[2] = {&a, &b2};
    for (int k = 0; k < 2; k++) {
        double ls;
        int64_t n;
        assert_int_equal(ml_model_reserve(ms[k], B, T, T), ML_OK);
        ml_model_zero_grad(ms[k]);
        assert_int_equal(ml_model_forward(ms[k], &bt), ML_OK);
        assert_int_equal(ml_model_head_loss(ms[k], &bt, 1.0f / (B * T), &ls, &n), ML_OK);
        assert_int_equal(ml_model_backward(ms[k], &bt), ML_OK);
        ml_model_grads_to_latent(ms[k]);
    }
    assert_memory_equal(a.ln_f, b2.ln_f, sizeof(float) * B * T * cfg.hidden_size);
    assert_memory_equal(a.grad_arena.base, b2.grad_arena.base, sizeof(float) * a.num_floats);
    /* a changed latent weight reaches the forward only through ml_model_weights_changed */
    b2.w.embed[0] += 1.0f;
    assert_int_equal(ml_model_refresh_weights(&b2), ML_OK);
    assert_float_equal(b2.u.embed[0], a.w.embed[0], 0.0f);
    ml_model_weights_changed(&b2);
    assert_int_equal(ml_model_refresh_weights(&b2), ML_OK);
    assert_float_equal(b2.u.embed[0], a.w.embed[0] + 1.0f, 0.0f);
    ml_model_free(&a);
    ml_model_free(&b2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_layer_sharing),
        cmocka_unit_test(test_r1),
        cmocka_unit_test(test_pro_sliding_window),
        cmocka_unit_test(test_pro_positions_and_document_mask),
        cmocka_unit_test(test_r1_positions_and_document_mask),
        cmocka_unit_test(test_soft_clamp_transform_v1),
        cmocka_unit_test(test_soft_clamp_transform_pro_docs),
        cmocka_unit_test(test_identity_transform_changes_nothing),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
