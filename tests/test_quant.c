/* quant/: every fake quantizer and its gradient against an independent PyTorch implementation
 * (tests/reference/quant_ref.py, python3-torch 1.13), then whole models with a recipe installed against
 * PyTorch autograd through the same quantizers (golden.py --fake-quant), recipes, bad input and checkpoints.
 *
 * Tolerances: fake-quantized values and the masked straight-through gradients are bit-identical (same fp32
 * operations, same rounding rules); a learned scale's gradient (a sum over a row) within 1e-5 relative of the
 * row's sum of |terms|. Models: logits and loss |c - t| <= 2e-5 (1 + |t|), every latent gradient and every
 * scale gradient max |c - t| <= 1e-4 max |t| (as test_golden_torch.c). With activation fake quantization the
 * two sides' layer inputs differ in the last bits, which can move a value across a rounding boundary; those
 * runs get 1e-3 max|t| for gradients and 1e-3 (1 + |t|) for logits. A quantized tied embedding puts the residual
 * stream on a coarse grid, and activation rounding then meets exact ties (e.g. x/d = 63.5) that one-ulp
 * differences break either way (seen: 1-2% of a logit); activation runs therefore use a q8_0 embedding or an
 * untied head (a linear layer with the scheme). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/rng.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/checkpoint.h"
#include "model/decoder.h"
#include "model/linear.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tests/support/test_util.h"

#include "tests/support/quant_inputs.h"

static ml_safetensors *reference(void) {
    const char *dir = ml_test_tmpdir("quant");
    const char *in = ml_test_path(dir, "in.safetensors"), *out = ml_test_path(dir, "out.safetensors");
    ml_safetensors_writer *wr;
    assert_int_equal(ml_safetensors_writer_new(&wr), ML_OK);
    int64_t ws[2] = {R, C}, xs[2] = {N, K}, ss[1] = {R};
    assert_int_equal(ml_safetensors_writer_add_f32(wr, "w", ML_ST_F32, 2, ws, w), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(wr, "gw", ML_ST_F32, 2, ws, gw), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(wr, "x", ML_ST_F32, 2, xs, x), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(wr, "gx", ML_ST_F32, 2, xs, gx), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(wr, "s", ML_ST_F32, 1, ss, sc), ML_OK);
    assert_int_equal(ml_safetensors_writer_write(wr, in), ML_OK);
    ml_safetensors_writer_free(wr);
    static char inb[4096], outb[4096];
    snprintf(inb, sizeof inb, "%s", in);
    snprintf(outb, sizeof outb, "%s", out);
    assert_int_equal(ml_test_run("%s %s/tests/reference/quant_ref.py %s %s", ML_PYTHON, ML_SOURCE_DIR, inb, outb), 0);
    ml_safetensors *st;
    assert_int_equal(ml_safetensors_open(&st, outb), ML_OK);
    return st;
}

static void expect_same(ml_safetensors *st, const char *name, const float *ours, size_t n) {
    float *ref = malloc(n * sizeof(float));
    assert_int_equal(ml_safetensors_read_f32(st, name, ref, n), ML_OK);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&ours[i], &ref[i], sizeof(float)) && !(ours[i] == 0 && ref[i] == 0)) {
            if (!bad) first = i;
            bad++;
        }
    if (bad) fail_msg("%s: %zu of %zu values differ, first at %zu: %.9g vs torch %.9g", name, bad, n, first,
                      ours[first], ref[first]);
    free(ref);
}

/* weights: y and the masked gradient of one grid */
static void check_weight_grid(ml_safetensors *st, const char *grid) {
    static float y[R * C], g[R * C];
    static uint8_t keep[R * C];
    for (int i = 0; i < R; i++) {
        const float *xi = w + i * C;
        if (!strcmp(grid, "q4_0")) ml_fq_q4_0(y + i * C, keep + i * C, xi, C);
        else if (!strcmp(grid, "q8_0")) ml_fq_q8_0(y + i * C, xi, C), memset(keep + i * C, 1, C);
        else if (!strcmp(grid, "int8")) ml_fq_sym(y + i * C, keep + i * C, xi, C, C, 8);
        else ml_fq_sym(y + i * C, keep + i * C, xi, C, atoi(grid + 6), 4);
    }
    for (int i = 0; i < R * C; i++) g[i] = keep[i] ? gw[i] : 0.0f;
    static float g2[R * C]; /* the transforms' mask-only path gives the same gradient */
    memcpy(g2, gw, sizeof g2);
    for (int i = 0; i < R; i++) {
        if (!strcmp(grid, "q4_0")) ml_fq_q4_0_mask(g2 + i * C, w + i * C, C);
        else if (!strcmp(grid, "int8")) ml_fq_sym_mask(g2 + i * C, w + i * C, C, C, 8);
        else if (strcmp(grid, "q8_0")) ml_fq_sym_mask(g2 + i * C, w + i * C, C, atoi(grid + 6), 4);
    }
    assert_memory_equal(g, g2, sizeof g2);
    char name[64];
    snprintf(name, sizeof name, "%s.y", grid);
    expect_same(st, name, y, R * C);
    snprintf(name, sizeof name, "%s.gw", grid);
    expect_same(st, name, g, R * C);
    int clipped = 0;
    for (int i = 0; i < R * C; i++) clipped += !keep[i];
    print_message("%-10s values and gradients bit-identical to PyTorch (%d of %d clipped)\n", grid, clipped, R * C);
}

static void test_quantizers_vs_torch(void **state) {
    make_inputs();
    ml_safetensors *st = reference();
    const char *grids[] = {"q4_0", "q8_0", "int4-g32", "int4-g64", "int4-g128", "int4-g256", "int8"};
    for (int k = 0; k < 7; k++) check_weight_grid(st, grids[k]);

    /* learned per-row scale: values, weight gradient, scale gradient (LSQ), initial scale */
    static float y[R * C], g[R * C], gs[R], gs_ref[R], s0[R], s0_ref[R];
    for (int i = 0; i < R; i++) {
        ml_fq_scaled(y + i * C, NULL, w + i * C, C, sc[i], 4);
        gs[i] = (float)ml_fq_scaled_grad(g + i * C, gw + i * C, w + i * C, C, sc[i], 4);
    }
    expect_same(st, "lsq.y", y, R * C);
    /* autograd's weight gradient is (g s) (1/s), ours g: equal within an ulp or two */
    float *gref = malloc(sizeof g);
    assert_int_equal(ml_safetensors_read_f32(st, "lsq.gw", gref, R * C), ML_OK);
    for (int i = 0; i < R * C; i++)
        if (fabsf(g[i] - gref[i]) > 3e-7f * fabsf(gref[i])) fail_msg("lsq.gw %d: %.9g vs torch %.9g", i, g[i], gref[i]);
    free(gref);
    assert_int_equal(ml_safetensors_read_f32(st, "lsq.gs", gs_ref, R), ML_OK);
    for (int i = 0; i < R; i++) {
        double mag = 0;
        for (int j = 0; j < C; j++) mag += fabs(gw[i * C + j] * 8.0);
        if (fabs(gs[i] - gs_ref[i]) > 1e-5 * mag) fail_msg("lsq scale gradient row %d: %.8g vs torch %.8g", i, gs[i], gs_ref[i]);
    }
    /* the initial scale quant/ gives a new learned scale (through a model, as installed) */
    assert_int_equal(ml_safetensors_read_f32(st, "lsq.s0", s0_ref, R), ML_OK);
    ml_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-v1.json", ML_SOURCE_DIR);
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    cfg.hidden_size = C; /* q_proj [H*hd, C]: only its first R rows are compared */
    cfg.num_heads = 4, cfg.num_kv_heads = 2, cfg.head_dim = 64, cfg.intermediate_size = 256;
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    const ml_param *q = ml_model_find_param(&m, "model.layers.0.self_attn.q_proj.weight");
    memcpy(ml_param_data(&m, q), w, sizeof w);
    ml_quant_recipe r;
    assert_int_equal(ml_quant_recipe_parse(&r, "int4-channel-lsq", NULL, NULL), ML_OK);
    assert_int_equal(ml_quant_install(&m, &r), ML_OK);
    const ml_param *sp = ml_model_find_param(&m, "model.layers.0.self_attn.q_proj.weight_fake_quantizer.scale");
    assert_non_null(sp);
    memcpy(s0, ml_param_data(&m, sp), sizeof s0);
    expect_same(st, "lsq.s0", s0, R);
    ml_model_free(&m);
    print_message("lsq        values, weight gradients bit-identical; scale gradients within 1e-5; initial scales identical\n");

    /* activations */
    static float ya[N * K], ga[N * K];
    static uint8_t ka[N * K];
    for (int i = 0; i < N; i++) ml_fq_act_q8_0(ya + i * K, x + i * K, K);
    expect_same(st, "act-q8_0.y", ya, N * K);
    expect_same(st, "act-q8_0.gx", gx, N * K); /* never clips */
    for (int i = 0; i < N; i++) ml_fq_act_int8_token(ya + i * K, ka + i * K, x + i * K, K);
    for (int i = 0; i < N * K; i++) ga[i] = ka[i] ? gx[i] : 0.0f;
    expect_same(st, "act-int8-token.y", ya, N * K);
    expect_same(st, "act-int8-token.gx", ga, N * K);
    print_message("activations q8_0 and int8-token: values and gradients bit-identical\n");
    ml_safetensors_close(st);
}

/* A whole model with a recipe against golden.py --fake-quant: logits, loss, every latent gradient and every
 * learned-scale gradient. */
static void run_model_ex(const char *preset, const char *scheme, const char *emb, const char *act, int untie) {
    enum { B = 2, T = 24 };
    const char *dir = ml_test_tmpdir("quant_model");
    char cfg_path[4096], w_path[4096], b_path[4096], o_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    snprintf(w_path, sizeof w_path, "%s/w.safetensors", dir);
    snprintf(b_path, sizeof b_path, "%s/b.safetensors", dir);
    snprintf(o_path, sizeof o_path, "%s/o.safetensors", dir);
    if (untie) { /* the preset with an untied head */
        char src[4096], text[16384];
        snprintf(src, sizeof src, "%s", cfg_path);
        FILE *f = fopen(src, "r");
        assert_non_null(f);
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = 0;
        char *t = strstr(text, "\"tie_word_embeddings\": true");
        assert_non_null(t);
        memcpy(t, "\"tie_word_embeddings\":false", strlen("\"tie_word_embeddings\":false"));
        snprintf(cfg_path, sizeof cfg_path, "%s/untied.json", dir);
        f = fopen(cfg_path, "w");
        fputs(text, f);
        fclose(f);
    }
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, cfg_path), ML_OK);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    ml_model_init_weights(&m, 42);
    ml_safetensors_writer *wr;
    assert_int_equal(ml_safetensors_writer_new(&wr), ML_OK);
    for (int i = 0; i < m.n_params; i++)
        assert_int_equal(ml_safetensors_writer_add_f32(wr, m.params[i].name, ML_ST_F32, m.params[i].ndim,
                                                       m.params[i].shape, ml_param_data(&m, &m.params[i])),
                         ML_OK);
    assert_int_equal(ml_safetensors_writer_write(wr, w_path), ML_OK);
    ml_safetensors_writer_free(wr);
    int32_t tok[B * T], tgt[B * T];
    ml_rng rr;
    ml_rng_seed(&rr, 5);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)ml_rng_below(&rr, cfg.vocab_size), tgt[i] = i % 7 == 3 ? -1 : (int32_t)ml_rng_below(&rr, cfg.vocab_size);
    int64_t bt[2] = {B, T};
    assert_int_equal(ml_safetensors_writer_new(&wr), ML_OK);
    ml_safetensors_writer_add_raw(wr, "tokens", ML_ST_I32, 2, bt, tok, sizeof tok);
    ml_safetensors_writer_add_raw(wr, "targets", ML_ST_I32, 2, bt, tgt, sizeof tgt);
    assert_int_equal(ml_safetensors_writer_write(wr, b_path), ML_OK);
    ml_safetensors_writer_free(wr);

    ml_quant_recipe r;
    assert_int_equal(ml_quant_recipe_parse(&r, scheme, emb, act), ML_OK);
    assert_int_equal(ml_quant_install(&m, &r), ML_OK);
    /* the fake-quant fp32 forward is what PyTorch computes; the int8 engine is held against it in test_gemm_int8 */
    assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_OPENBLAS), ML_OK);
    assert_int_equal(ml_test_run("%s %s/tests/reference/golden.py --config %s --weights %s --batch %s --out %s --steps 0 "
                                 "--fake-quant '%s'",
                                 ML_PYTHON, ML_SOURCE_DIR, cfg_path, w_path, b_path, o_path, m.quant),
                     0);
    const int with_act = r.act != ML_QA_NONE;
    const double tl = with_act ? 1e-3 : 2e-5, tg = with_act ? 1e-3 : 1e-4;
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    const size_t NV = (size_t)B * T * cfg.vocab_size;
    float *lg = malloc(NV * sizeof(float)), *ref = malloc(NV * sizeof(float));
    ml_safetensors *gold;
    assert_int_equal(ml_safetensors_open(&gold, o_path), ML_OK);
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_logits(&m, &b, lg), ML_OK);
    assert_int_equal(ml_safetensors_read_f32(gold, "logits", ref, NV), ML_OK);
    double worst_l = 0;
    size_t nbad = 0, first = 0;
    for (size_t i = 0; i < NV; i++) {
        worst_l = fmax(worst_l, fabs(lg[i] - ref[i]) / (1 + fabs(ref[i])));
        if (fabs(lg[i] - ref[i]) > tl * (1 + fabs(ref[i])) && !nbad++) first = i;
    }
    if (nbad) fail_msg("%s %s: %zu logits off, first %zu (row %zu): %.7f vs torch %.7f", preset, m.quant, nbad, first,
                       first / cfg.vocab_size, lg[first], ref[first]);
    double ls;
    int64_t cnt;
    float ref_loss;
    ml_model_zero_grad(&m);
    assert_int_equal(ml_model_head_loss(&m, &b, 0.0f, &ls, &cnt), ML_OK);
    assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (float)cnt, &ls, &cnt), ML_OK);
    assert_int_equal(ml_model_backward(&m, &b), ML_OK);
    ml_model_grads_to_latent(&m);
    assert_int_equal(ml_safetensors_read_f32(gold, "loss", &ref_loss, 1), ML_OK);
    assert_true(fabs(ls / (double)cnt - ref_loss) <= tl * (1 + fabs(ref_loss)));
    double worst = 0;
    for (int i = 0; i < m.n_params; i++) {
        const ml_param *p = &m.params[i];
        float *g = malloc(p->numel * sizeof(float));
        char name[160];
        snprintf(name, sizeof name, "grad.%s", p->name);
        assert_int_equal(ml_safetensors_read_f32(gold, name, g, p->numel), ML_OK);
        double scale = 0, err = 0;
        const float *cg = ml_param_grad(&m, p);
        for (size_t j = 0; j < p->numel; j++) scale = fmax(scale, fabs(g[j])), err = fmax(err, fabs(cg[j] - g[j]));
        worst = fmax(worst, err / (scale + 1e-30));
        if (err > tg * scale + 1e-8) fail_msg("%s %s: %s off by %.3g (scale %.3g)", preset, m.quant, name, err, scale);
        free(g);
    }
    print_message("%s %s: loss %.6f (torch %.6f), worst logit diff %.1e, worst gradient %.1e over %d tensors (%d scales)\n",
                  preset, m.quant, ls / (double)cnt, ref_loss, worst_l, worst, m.n_params, ml_quant_num_scales(&m));
    ml_safetensors_close(gold);
    free(lg), free(ref);
    ml_model_free(&m);
}

static void run_model(const char *preset, const char *scheme, const char *emb, const char *act) {
    run_model_ex(preset, scheme, emb, act, 0);
}

static void test_model_q4_0(void **state) { run_model("tiny-v1", "q4_0", "none", "none"); }
static void test_model_q8_0_embed_q4_0(void **state) { run_model("tiny-v1", "q8_0", "q4_0", "none"); }
static void test_model_int4_g32_embed_int8(void **state) { run_model("tiny-r1", "int4-g32", "int8", "none"); }
static void test_model_lsq(void **state) { run_model("tiny-r1", "int4-channel-lsq", "int4-g32", "none"); }
static void test_model_act_int8_token(void **state) { run_model_ex("tiny-v1", "int4-g32", "none", "int8-token", 1); }
static void test_model_lsq_untied_act(void **state) { run_model_ex("tiny-r1", "int4-channel-lsq", "q8_0", "int8-token", 1); }
static void test_model_act_q8_0(void **state) { run_model("tiny-pro", "q4_0", "q8_0", "q8_0"); }
static void test_model_act_q8_0_shared(void **state) { run_model("tiny-v1", "q8_0", "none", "q8_0"); }
static void test_model_act_int8_token_r1(void **state) { run_model("tiny-r1", "q8_0", "none", "int8-token"); }

/* The fake quantizers' Q4_0 / Q8_0 values are the dequantized blocks formats/gguf.c writes, bit for bit. */
static void test_same_as_gguf_blocks(void **state) {
    enum { n = 4096 };
    static float x[n], y[n], z[n];
    uint8_t blk[n / 32 * 34];
    ml_rng r;
    ml_rng_seed(&r, 3);
    for (int i = 0; i < n; i++) x[i] = (float)(ml_rng_normal(&r) * (i % 97 == 0 ? 0.5 : 0.02));
    for (int i = 0; i < 64; i++) x[i] = (float)(i % 5) * 0.25f - 0.5f; /* ties and repeated extremes */
    ml_fq_q4_0(y, NULL, x, n);
    ml_quantize_row_q4_0(blk, x, n);
    ml_dequantize_row_q4_0(z, blk, n);
    assert_memory_equal(y, z, sizeof y);
    ml_fq_q8_0(y, x, n);
    ml_quantize_row_q8_0(blk, x, n);
    ml_dequantize_row_q8_0(z, blk, n);
    assert_memory_equal(y, z, sizeof y);
}

static void test_recipes_and_bad_input(void **state) {
    ml_quant_recipe r, r2;
    char buf[128];
    assert_int_equal(ml_quant_recipe_parse(&r, "int4-g64", "int8", "int8-token"), ML_OK);
    ml_quant_recipe_format(&r, buf, sizeof buf);
    assert_string_equal(buf, "scheme=int4-g64 embedding=int8 act=int8-token");
    assert_int_equal(ml_quant_recipe_from_string(&r2, buf), ML_OK);
    assert_true(ml_quant_recipe_equal(&r, &r2));
    assert_int_not_equal(ml_quant_recipe_parse(&r, "q4_1", NULL, NULL), ML_OK);
    assert_int_not_equal(ml_quant_recipe_parse(&r, "int4-g48", NULL, NULL), ML_OK);
    assert_int_not_equal(ml_quant_recipe_parse(&r, "q4_0", "int4-g64", NULL), ML_OK);
    assert_int_not_equal(ml_quant_recipe_parse(&r, "q4_0", "int4-channel-lsq", NULL), ML_OK);
    assert_int_not_equal(ml_quant_recipe_parse(&r, "int8", NULL, NULL), ML_OK);
    assert_int_not_equal(ml_quant_recipe_parse(&r, "q4_0", NULL, "int4"), ML_OK);
    assert_int_not_equal(ml_quant_recipe_from_string(&r, "scheme=q4_0 colour=red"), ML_OK);
    /* a group that does not divide a row: nothing installed */
    ml_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-v1.json", ML_SOURCE_DIR);
    assert_int_equal(ml_config_load(&cfg, path), ML_OK); /* hidden 64 */
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    assert_int_equal(ml_quant_recipe_parse(&r, "int4-g128", NULL, NULL), ML_OK);
    assert_int_not_equal(ml_quant_install(&m, &r), ML_OK);
    assert_null(m.transforms);
    assert_string_equal(m.quant, "");
    /* already quantized with another recipe */
    assert_int_equal(ml_quant_prepare(&m, "q8_0", NULL, NULL, "m"), ML_OK);
    assert_int_not_equal(ml_quant_prepare(&m, "q4_0", NULL, NULL, "m"), ML_OK);
    ml_model_free(&m);
}

/* A learned-scale checkpoint round trip: scales, recipe and transforms come back; the logits are identical. */
static void test_checkpoint_round_trip(void **state) {
    ml_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-r1.json", ML_SOURCE_DIR);
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    ml_model a, b;
    assert_int_equal(ml_model_create(&a, &cfg), ML_OK);
    ml_model_init_weights(&a, 3);
    assert_int_equal(ml_quant_prepare(&a, "int4-channel-lsq", "q8_0", "int8-token", "a"), ML_OK);
    const ml_param *sp = ml_model_find_param(&a, "model.layers.1.self_attn.o_proj.weight_fake_quantizer.scale");
    assert_non_null(sp);
    ml_param_data(&a, sp)[3] *= 0.5f; /* as if trained */
    const char *dir = ml_test_tmpdir("quant_ckpt");
    const char *ck = ml_test_path(dir, "q.h5");
    assert_int_equal(ml_checkpoint_save(ck, &a, NULL), ML_OK);
    assert_int_equal(ml_checkpoint_load(ck, &b, NULL), ML_OK);
    assert_string_equal(b.quant, a.quant);
    assert_int_equal(b.n_params, a.n_params);
    assert_int_equal(ml_quant_install_stored(&b), ML_OK);
    assert_int_equal(ml_quant_num_scales(&b), ml_quant_num_scales(&a));
    for (int i = 0; i < a.n_params; i++) { /* same tensors at the same places (scales in name order) */
        assert_string_equal(a.params[i].name, b.params[i].name);
        assert_int_equal(a.params[i].offset, b.params[i].offset);
        assert_memory_equal(ml_param_data(&a, &a.params[i]), ml_param_data(&b, &b.params[i]), a.params[i].numel * 4);
    }
    enum { B = 2, T = 16 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 31 + 7) % cfg.vocab_size;
    ml_batch bt = {.tokens = tok, .B = B, .T = T};
    const size_t NV = (size_t)B * T * cfg.vocab_size;
    float *la = malloc(NV * sizeof(float)), *lb = malloc(NV * sizeof(float));
    assert_int_equal(ml_model_reserve(&a, B, T, T), ML_OK);
    assert_int_equal(ml_model_reserve(&b, B, T, T), ML_OK);
    assert_int_equal(ml_model_forward(&a, &bt), ML_OK);
    assert_int_equal(ml_model_logits(&a, &bt, la), ML_OK);
    assert_int_equal(ml_model_forward(&b, &bt), ML_OK);
    assert_int_equal(ml_model_logits(&b, &bt, lb), ML_OK);
    assert_memory_equal(la, lb, NV * sizeof(float));
    free(la), free(lb);
    ml_model_free(&a);
    ml_model_free(&b);
}

/* The KV-cached decoder (sample, passkey) computes with the same transforms: its logits, fed in chunks of 5,
 * equal the training forward's (activation rounding is per token, so the chunking cannot change it). */
static void test_decoder_with_transforms(void **state) {
    enum { T = 20 };
    ml_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/tiny-v1.json", ML_SOURCE_DIR);
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    ml_model m;
    assert_int_equal(ml_model_create(&m, &cfg), ML_OK);
    ml_model_init_weights(&m, 9);
    assert_int_equal(ml_quant_prepare(&m, "int4-g32", "q8_0", "int8-token", "m"), ML_OK);
    assert_int_equal(ml_model_reserve(&m, 1, T, T), ML_OK);
    int32_t tok[T];
    for (int i = 0; i < T; i++) tok[i] = (i * 53 + 11) % cfg.vocab_size;
    ml_batch b = {.tokens = tok, .B = 1, .T = T};
    const size_t NV = (size_t)T * cfg.vocab_size;
    float *full = malloc(NV * sizeof(float)), *dec = malloc(NV * sizeof(float));
    assert_int_equal(ml_model_forward(&m, &b), ML_OK);
    assert_int_equal(ml_model_logits(&m, &b, full), ML_OK);
    ml_decoder d;
    assert_int_equal(ml_decoder_create(&d, &m, T, 5), ML_OK);
    for (int i = 0; i < T; i += 5) assert_int_equal(ml_decoder_feed(&d, tok + i, 5, 0, dec + (size_t)i * cfg.vocab_size), ML_OK);
    double worst = 0;
    for (size_t i = 0; i < NV; i++) worst = fmax(worst, fabs(full[i] - dec[i]));
    print_message("decoder vs training forward with int4-g32 / q8_0 embedding / int8-token: max |diff| %.2e\n", worst);
    assert_true(worst < 1e-4);
    ml_decoder_free(&d);
    free(full), free(dec);
    ml_model_free(&m);
}

int main(void) {
    if (getenv("QRECIPE")) { /* debugging: one model run, "PRESET SCHEME EMBEDDING ACT" */
        char pr[64], sc[64], em[64], ac[64];
        if (sscanf(getenv("QRECIPE"), "%63s %63s %63s %63s", pr, sc, em, ac) == 4) run_model(pr, sc, em, ac);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantizers_vs_torch),
        cmocka_unit_test(test_model_q4_0),
        cmocka_unit_test(test_model_q8_0_embed_q4_0),
        cmocka_unit_test(test_model_int4_g32_embed_int8),
        cmocka_unit_test(test_model_lsq),
        cmocka_unit_test(test_model_act_int8_token),
        cmocka_unit_test(test_model_lsq_untied_act),
        cmocka_unit_test(test_model_act_q8_0),
        cmocka_unit_test(test_model_act_q8_0_shared),
        cmocka_unit_test(test_model_act_int8_token_r1),
        cmocka_unit_test(test_same_as_gguf_blocks),
        cmocka_unit_test(test_recipes_and_bad_input),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_decoder_with_transforms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
