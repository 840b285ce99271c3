/* No allocation inside a training step, nor per decoded token. This test is linked with
 * -Wl,--wrap for malloc, calloc, realloc, aligned_alloc and posix_memalign (CMakeLists.txt), so every
 * allocation made by the library's code (and this file) passes through the counters below. After one
 * warm-up step, a whole step (forward, loss head, backward, weight-transform gradients, clipping,
 * optimizer update) of every variant (v1 with layer sharing, R1, Pro with a document mask), with
 * recomputation, with a weight transform, with distillation from an online teacher and in bf16 on each
 * GEMM engine the machine has (oneDNN's own allocations inside libdnnl are not seen), must allocate nothing; so must a decoder fed token by token. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "distill/kd_head.h"
#include "model/decoder.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/ops/gemm.h"
#include "optim/clip.h"
#include "optim/optimizer.h"
#include "quant/quant.h"
#include "tests/support/test_util.h"
#include "train/trainer.h"

static int armed;
static long allocations;

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__wrap_malloc(size_t n) {
    if (armed) allocations++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b) {
    if (armed) allocations++;
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n) {
    if (armed) allocations++;
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t al, size_t n) {
    if (armed) allocations++;
    return __real_aligned_alloc(al, n);
}
int __wrap_posix_memalign(void **p, size_t al, size_t n) {
    if (armed) allocations++;
    return __real_posix_memalign(p, al, n);
}

enum { B = 2, T = 40 };

static ml_status half_forward(void *ctx, const ml_param *p, float *used, const float *w) {
    for (size_t i = 0; i < p->numel; i++) used[i] = 0.5f * w[i];
    return ML_OK;
}
static void half_backward(void *ctx, const ml_param *p, float *g, const float *w) {
    for (size_t i = 0; i < p->numel; i++) g[i] *= 0.5f;
}
static const ml_weight_transform half = {"half", half_forward, half_backward, NULL, NULL, NULL};

typedef struct {
    const char *preset;
    int docs, recompute, transform, teacher;
    ml_gemm_engine bf16; /* 0: fp32; else bf16 precision on this engine */
    const char *qat;     /* a QAT recipe "scheme act" on the int8 engine (its codes repacked every step), or NULL */
} step_case;

static void load(ml_model *m, const char *preset, uint64_t seed) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    assert_int_equal(ml_model_create(m, &cfg), ML_OK);
    ml_model_init_weights(m, seed);
}

static void run_step_case(const step_case *c) {
    ml_model m, teacher;
    m.recompute = 0;
    load(&m, c->preset, 1);
    m.recompute = c->recompute;
    if (c->bf16) {
        assert_int_equal(ml_model_set_precision(&m, ML_PRECISION_BF16), ML_OK);
        assert_int_equal(ml_model_set_gemm_engine(&m, c->bf16), ML_OK);
    }
    if (c->qat) {
        char scheme[32], act[32];
        ml_quant_recipe r;
        assert_int_equal(sscanf(c->qat, "%31s %31s", scheme, act), 2);
        assert_int_equal(ml_quant_recipe_parse(&r, scheme, "int4-g32", act), ML_OK);
        assert_int_equal(ml_quant_install(&m, &r), ML_OK);
        assert_int_equal(ml_model_set_gemm_engine(&m, ML_GEMM_INT8), ML_OK);
    }
    if (c->transform)
        for (int i = 0; i < m.n_params; i++)
            if (m.params[i].ndim == 2) assert_int_equal(ml_model_set_transform(&m, &m.params[i], &half), ML_OK);
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    if (c->qat) assert_non_null(m.w8); /* the integer forward is planned */
    if (c->teacher) {
        load(&teacher, c->preset, 2);
        assert_int_equal(ml_model_reserve(&teacher, B, T, T), ML_OK);
    }
    ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAMW);
    ml_optimizer opt;
    assert_int_equal(ml_optimizer_for_model(&opt, &m, &oc), ML_OK);
    int32_t tok[B * T], tgt[B * T], doc[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (i * 31 + 7) % m.cfg.vocab_size;
        tgt[i] = i % 9 == 4 ? -1 : (i * 17 + 5) % m.cfg.vocab_size;
        doc[i] = (i % T) < 15 ? 0 : 1;
    }
    ml_batch b = {.tokens = tok, .targets = tgt, .doc = c->docs ? doc : NULL, .B = B, .T = T};
    ml_kd_config kd = {ML_KD_FKL, 2.0f, 0.5f, 0.1f};
    for (int step = 0; step < 2; step++) {
        armed = step == 1; /* the first step may warm up lazily created state (none is expected) */
        allocations = 0;
        double loss;
        int64_t n;
        ml_model_zero_grad(&m);
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        if (c->teacher) {
            assert_int_equal(ml_model_forward(&teacher, &b), ML_OK);
            assert_int_equal(ml_kd_head_loss(&m, &teacher, &b, &kd, 1.0f / (B * T), &loss, &n, NULL), ML_OK);
        } else {
            assert_int_equal(ml_model_head_loss(&m, &b, 1.0f / (B * T), &loss, &n), ML_OK);
        }
        assert_int_equal(ml_model_backward(&m, &b), ML_OK);
        ml_model_grads_to_latent(&m);
        ml_clip_grad_norm(m.grad_arena.base, m.grad_arena.capacity, 1.0);
        assert_int_equal(ml_optim_step(&opt, m.param_arena.base, m.grad_arena.base, 1e-3f), ML_OK);
        ml_model_weights_changed(&m);
        armed = 0;
        assert_true(isfinite(loss));
    }
    if (allocations)
        fail_msg("%s (docs %d, recompute %d, transform %d, teacher %d, bf16 %d): %ld allocations in one step",
                 c->preset, c->docs, c->recompute, c->transform, c->teacher, c->bf16, allocations);
    ml_optim_free(&opt);
    if (c->teacher) ml_model_free(&teacher);
    ml_model_free(&m);
}

static void test_training_step(void **state) {
    const step_case cases[] = {
        {"tiny-v1", 0, 0, 0, 0, 0, NULL}, {"tiny-r1", 0, 0, 0, 0, 0, NULL}, {"tiny-pro", 1, 0, 0, 0, 0, NULL},
        {"tiny-pro", 1, 1, 0, 0, 0, NULL}, {"tiny-v1", 0, 0, 1, 0, 0, NULL}, {"tiny-r1", 1, 0, 0, 1, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_step_case(&cases[i]);
    const step_case qat[] = {{"tiny-v1", 0, 0, 0, 0, 0, "int4-g32 int8-token"}, {"tiny-r1", 0, 1, 0, 0, 0, "q4_0 q8_0"}};
    for (size_t i = 0; i < sizeof qat / sizeof qat[0]; i++) run_step_case(&qat[i]);
    for (int e = ML_GEMM_BF16; e <= ML_GEMM_ONEDNN; e++) {
        if (ml_gemm_engine_available((ml_gemm_engine)e)) {
            const step_case bf = {"tiny-pro", 1, 0, 1, 0, (ml_gemm_engine)e, NULL};
            run_step_case(&bf);
        } else {
            print_message("bf16 case on engine %s not run: not available here\n", ml_gemm_engine_name((ml_gemm_engine)e));
        }
    }
}

static void test_decoding(void **state) {
    ml_model m;
    load(&m, "tiny-pro", 3);
    for (int i = 0; i < m.n_params; i++)
        if (m.params[i].ndim == 2) assert_int_equal(ml_model_set_transform(&m, &m.params[i], &half), ML_OK);
    ml_decoder d;
    assert_int_equal(ml_decoder_create(&d, &m, 64, 4), ML_OK);
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (i * 13 + 1) % m.cfg.vocab_size;
    assert_int_equal(ml_decoder_feed(&d, tok, 9, 0, NULL), ML_OK);
    armed = 1;
    allocations = 0;
    for (int i = 9; i < 64; i++) assert_int_equal(ml_decoder_feed(&d, tok + i, 1, 0, NULL), ML_OK);
    assert_int_equal(ml_decoder_rewind(&d, 60), ML_OK);
    assert_int_equal(ml_decoder_feed(&d, tok, 3, 0, NULL), ML_OK);
    armed = 0;
    assert_int_equal(allocations, 0);
    ml_decoder_free(&d);
    ml_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_step),
        cmocka_unit_test(test_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
