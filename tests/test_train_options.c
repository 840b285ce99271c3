/* The training options table: defaults, the stored run arguments and what a resume does with them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "train/train_options.h"

static int row(const char *flag) {
    int n;
    const ml_train_opt *t = ml_train_options(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].flag, flag)) return i;
    fail_msg("no row %s", flag);
    return -1;
}

static void test_defaults(void **state) {
    ml_train_args a;
    ml_train_args_defaults(&a);
    assert_int_equal(a.batch, 4);
    assert_int_equal(a.seq, 256);
    assert_int_equal(a.steps, 100);
    assert_string_equal(a.optim, "adamw");
    assert_string_equal(a.schedule, "cosine");
    assert_string_equal(a.kd_loss, "fkl");
    assert_true(a.lr == 2e-3f && a.beta2 == 0.95f && a.eps == 1e-8f && a.clip == 1.0f);
    assert_true(isnan(a.weight_decay)); /* the optimizer's own default */
    assert_true(a.seed == 1 && a.keep == 3 && a.eval_batches == 8);
}

static void test_rows(void **state) {
    int n;
    const ml_train_opt *t = ml_train_options(&n);
    for (int i = 0; i < n; i++) { /* every stored row restores or records; json keys unique */
        if (t[i].json) assert_int_not_equal(t[i].resume, ML_RESUME_FREE);
        else assert_int_equal(t[i].resume, ML_RESUME_FREE);
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(t[i].flag, t[j].flag);
            if (t[i].json && t[j].json) assert_string_not_equal(t[i].json, t[j].json);
        }
    }
    assert_ptr_equal(ml_train_option_find("eps"), ml_train_option_find("adam-eps"));
    assert_ptr_equal(ml_train_option_by_json("kd_loss"), ml_train_option_find("loss"));
    char help[600];
    ml_train_option_help(ml_train_option_find("optim"), NULL, help, sizeof help);
    assert_string_equal(help, "adamw | sgd (default adamw)");
    ml_train_option_help(ml_train_option_find("adam-eps"), NULL, help, sizeof help);
    assert_string_equal(help, "AdamW epsilon (default 1e-8); also --eps");
    ml_train_args a;
    ml_train_args_defaults(&a);
    a.lr = 1e-4f; /* a command's own default (qat) is the one its --help shows; the others stay as written */
    ml_train_option_help(ml_train_option_find("lr"), &a, help, sizeof help);
    assert_string_equal(help, "peak learning rate (default 0.0001)");
    ml_train_option_help(ml_train_option_find("adam-eps"), &a, help, sizeof help);
    assert_string_equal(help, "AdamW epsilon (default 1e-8); also --eps");
    ml_train_args_defaults(&a);
    assert_int_equal(ml_train_option_set(&a, ml_train_option_find("batch"), "x"), ML_ERR_ARG);
    assert_int_equal(ml_train_option_set(&a, ml_train_option_find("precision"), "fp16"), ML_ERR_ARG);
}

static void test_resume(void **state) {
    ml_train_args a;
    ml_train_args_defaults(&a);
    a.lr = 5e-4f;
    a.batch = 3;
    a.weight_decay = 0.0f;
    a.seed = 42;
    a.doc_mask = 1;
    a.data[0] = "a.shard";
    a.data[1] = "b.shard";
    a.n_data = 2;
    a.out_dir = "run";
    a.keep = 9;
    snprintf(a.optim, sizeof a.optim, "sgd");
    char *json;
    assert_int_equal(ml_train_args_to_json(&a, &json), ML_OK);
    assert_null(strstr(json, "\"keep\"")); /* per-invocation options are not stored */
    assert_null(strstr(json, "\"teacher\"")); /* nor distillation ones without a teacher */

    ml_train_args b;
    ml_train_args_defaults(&b);
    int n;
    ml_train_options(&n);
    int *given = calloc((size_t)n, sizeof *given);
    given[row("batch")] = 1;
    b.batch = 7; /* given again: changes it */
    char *strings;
    assert_int_equal(ml_train_args_resume(&b, json, given, &strings), ML_OK);
    assert_true(b.lr == 5e-4f && b.weight_decay == 0.0f && b.seed == 42 && b.doc_mask == 1);
    assert_int_equal(b.batch, 7);
    assert_int_equal(b.keep, 3);
    assert_string_equal(b.optim, "sgd");
    assert_int_equal(b.n_data, 2);
    assert_string_equal(b.data[1], "b.shard");
    free(strings);

    /* --data given again: the stored list is not read */
    ml_train_args_defaults(&b);
    memset(given, 0, sizeof *given * (size_t)n);
    given[row("source")] = 1;
    assert_int_equal(ml_train_args_resume(&b, json, given, &strings), ML_OK);
    assert_int_equal(b.n_data, 0);
    free(strings);

    /* a MATCH option given with another value */
    ml_train_args_defaults(&b);
    memset(given, 0, sizeof *given * (size_t)n);
    given[row("optim")] = 1; /* b.optim is adamw */
    assert_int_equal(ml_train_args_resume(&b, json, given, &strings), ML_ERR_ARG);
    free(given);
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
