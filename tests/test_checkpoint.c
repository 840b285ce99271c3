/* Checkpoints list their optimizer state groups by the registry's names; a resume copies them back
 * exactly and refuses (one line) a checkpoint whose optimizer is unknown or whose groups differ. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/checkpoint.h"
#include "optim/optimizer.h"
#include "tests/support/test_util.h"
#include "train/trainer.h"

static void tiny_model(ml_model *m) {
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, ML_SOURCE_DIR "/configs/tiny-v1.json"), ML_OK);
    assert_int_equal(ml_model_create(m, &cfg), ML_OK);
    ml_model_init_weights(m, 5);
}

/* An optimizer over the model whose state holds recognisable values, after one step. */
static void stepped_optimizer(ml_optimizer *o, ml_model *m, ml_optim_kind kind, double momentum) {
    ml_optim_config cfg = ml_optim_defaults(kind);
    cfg.momentum = momentum;
    assert_int_equal(ml_optimizer_for_model(o, m, &cfg), ML_OK);
    for (size_t i = 0; i < m->grad_arena.capacity; i++) m->grad_arena.base[i] = (float)((int)(i % 7) - 3) * 1e-3f;
    assert_int_equal(ml_optim_step(o, m->param_arena.base, m->grad_arena.base, 1e-3f), ML_OK);
}

/* The trainer's save: the optimizer's state borrowed under the registry's names. */
static void save_with(const char *path, ml_model *m, ml_optimizer *o, const char *rename_kind, int drop_last) {
    ml_train_state st;
    memset(&st, 0, sizeof st);
    st.step = 1;
    ml_rng_seed(&st.rng, 1);
    snprintf(st.optimizer, sizeof st.optimizer, "%s", rename_kind ? rename_kind : ml_optim_kind_name(o->cfg.kind));
    st.optimizer_step = o->t;
    st.n_optim_state = ml_optim_num_state(o) - drop_last;
    for (int i = 0; i < st.n_optim_state; i++) {
        const char *name;
        st.optim_state[i] = ml_optim_state(o, i, &name);
        snprintf(st.optim_state_name[i], sizeof st.optim_state_name[i], "%s", name);
    }
    assert_int_equal(ml_checkpoint_save(path, m, &st), ML_OK);
}

static void round_trip(ml_optim_kind kind, double momentum, int n_groups, const char *const *names) {
    const char *dir = ml_test_tmpdir("test_checkpoint");
    const char *path = ml_test_path(dir, "rt.h5");
    ml_model m, loaded;
    tiny_model(&m);
    ml_optimizer o, fresh;
    stepped_optimizer(&o, &m, kind, momentum);
    save_with(path, &m, &o, NULL, 0);

    ml_train_state st;
    assert_int_equal(ml_checkpoint_load(path, &loaded, &st), ML_OK);
    assert_string_equal(st.optimizer, ml_optim_kind_name(kind));
    assert_int_equal(st.n_optim_state, n_groups);
    for (int i = 0; i < n_groups; i++) assert_string_equal(st.optim_state_name[i], names[i]);
    /* the registry agrees with what was written */
    const char *want[ML_OPTIM_MAX_STATE];
    assert_int_equal(ml_optim_state_names(&o.cfg, want), n_groups);
    assert_int_equal(ml_optimizer_for_model(&fresh, &loaded, &o.cfg), ML_OK);
    assert_int_equal(ml_optimizer_restore(&fresh, &st, path), ML_OK);
    assert_int_equal(fresh.t, o.t);
    for (int i = 0; i < n_groups; i++)
        assert_memory_equal(ml_optim_state(&fresh, i, NULL), ml_optim_state(&o, i, NULL), o.num_floats * sizeof(float));
    ml_train_state_free(&st);
    ml_optim_free(&fresh);
    ml_optim_free(&o);
    ml_model_free(&loaded);
    ml_model_free(&m);
}

static void test_adamw_groups(void **state) {
    const char *names[] = {"exp_avg", "exp_avg_sq"};
    round_trip(ML_OPTIM_ADAMW, 0, 2, names);
}

static void test_sgd_groups(void **state) {
    const char *names[] = {"momentum_buffer"};
    round_trip(ML_OPTIM_SGD, 0.9, 1, names);
    round_trip(ML_OPTIM_SGD, 0, 0, names); /* plain SGD keeps nothing */
}

/* restore must fail with one line naming what is wrong */
static void expect_restore_fails(const char *rename_kind, int drop_last, ml_status code, const char *needle) {
    const char *dir = ml_test_tmpdir("test_checkpoint");
    const char *path = ml_test_path(dir, "bad.h5");
    ml_model m, loaded;
    tiny_model(&m);
    ml_optimizer o, fresh;
    stepped_optimizer(&o, &m, ML_OPTIM_ADAMW, 0);
    save_with(path, &m, &o, rename_kind, drop_last);
    ml_train_state st;
    assert_int_equal(ml_checkpoint_load(path, &loaded, &st), ML_OK);
    assert_int_equal(ml_optimizer_for_model(&fresh, &loaded, &o.cfg), ML_OK);
    assert_int_equal(ml_optimizer_restore(&fresh, &st, path), code);
    const char *msg = ml_last_error();
    if (!strstr(msg, needle)) fail_msg("message '%s' does not contain '%s'", msg, needle);
    assert_null(strchr(msg, '\n'));
    ml_train_state_free(&st);
    ml_optim_free(&fresh);
    ml_optim_free(&o);
    ml_model_free(&loaded);
    ml_model_free(&m);
}

static void test_unknown_optimizer(void **state) {
    expect_restore_fails("adamx", 0, ML_ERR_UNSUPPORTED, "'adamx', which this build does not know");
}

static void test_groups_mismatch(void **state) {
    expect_restore_fails(NULL, 1, ML_ERR_FORMAT, "[exp_avg], but this run's adamw keeps [exp_avg, exp_avg_sq]");
    expect_restore_fails("sgd", 0, ML_ERR_ARG, "not adamw");
}

/* Registry rows: per-optimizer weight decay and how it applies */
static void test_registry(void **state) {
    ml_optim_kind k;
    const ml_optim_def *sgd = ml_optim_find("sgd", &k), *adamw = ml_optim_find("adamw", NULL);
    assert_non_null(sgd);
    assert_int_equal(k, ML_OPTIM_SGD);
    assert_true(sgd->default_weight_decay == 0.0);
    assert_string_equal(sgd->weight_decay_kind, "L2");
    assert_true(adamw->default_weight_decay == 0.1);
    assert_string_equal(adamw->weight_decay_kind, "decoupled");
    assert_true(ml_optim_defaults(ML_OPTIM_SGD).weight_decay == 0.0);
    assert_null(ml_optim_find("adamx", NULL));
    assert_int_equal(ml_optim_kind_parse("adamx", &k), ML_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_groups),    cmocka_unit_test(test_sgd_groups),
        cmocka_unit_test(test_unknown_optimizer), cmocka_unit_test(test_groups_mismatch),
        cmocka_unit_test(test_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
