/* Zero-shot multiple choice against a PyTorch implementation of the same scoring
 * (tests/reference/mc_eval_ref.py on tests/reference/mobilellm_torch.py): for the first 8 items of
 * HellaSwag, PIQA, ARC-Easy and ARC-Challenge (../shared/data/eval; skipped when absent) and for a
 * crafted HellaSwag file exercising the WikiHow-markup preprocessing, a tiny model (tiny-v1 with
 * layer sharing; tiny-pro with its window of 8 on PIQA) must give the same contexts and choices
 * (byte for byte), the same per-choice log-likelihoods (|c - t| <= 1e-4 * max(1, |t|); sums of up to
 * ~500 fp32 log-probabilities), the same predictions and the same acc / acc_norm. The model window
 * is 512 positions, so long HellaSwag items are truncated on both sides. Also: bad files. */
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "data/tokenizer.h"
#include "formats/safetensors.h"
#include "infer/mc_eval.h"
#include "model/model.h"
#include "tests/support/test_util.h"

#define EVAL_FILE(name) ml_test_shared("data/eval/" name)

static void write_weights(const ml_model *m, const char *path) {
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        assert_int_equal(ml_safetensors_writer_add_f32(w, p->name, ML_ST_F32, p->ndim, p->shape, ml_param_data(m, p)),
                         ML_OK);
    }
    assert_int_equal(ml_safetensors_writer_write(w, path), ML_OK);
    ml_safetensors_writer_free(w);
}

typedef struct {
    const char *preset;
    ml_mc_task task;
    char data[4096];
    int limit, max_len;
    char w_path[4096], o_path[4096];
} job;

enum { MAX_JOBS = 8 };
static job jobs[MAX_JOBS];
static int n_jobs;

static void cfg_path(char *out, size_t n, const char *preset) {
    snprintf(out, n, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
}

static void make_model(ml_model *m, const char *preset) {
    char path[4096];
    cfg_path(path, sizeof path, preset);
    ml_config cfg;
    assert_int_equal(ml_config_load(&cfg, path), ML_OK);
    cfg.initializer_range = 0.1f; /* a peaky model: choices differ by far more than rounding */
    assert_int_equal(ml_model_create(m, &cfg), ML_OK);
    ml_model_init_weights(m, 17);
}

static void add_job(const char *preset, ml_mc_task task, const char *data, int limit, int max_len) {
    const char *dir = ml_test_tmpdir("mc_eval");
    job *j = &jobs[n_jobs];
    j->preset = preset;
    j->task = task;
    snprintf(j->data, sizeof j->data, "%s", data);
    j->limit = limit;
    j->max_len = max_len;
    snprintf(j->w_path, sizeof j->w_path, "%s/%s.safetensors", dir, preset);
    snprintf(j->o_path, sizeof j->o_path, "%s/job%d.json", dir, n_jobs);
    n_jobs++;
}

static const char *write_file(const char *name, const char *text) {
    const char *p = ml_test_path(ml_test_tmpdir("mc_eval"), name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
    return p;
}

static int have_data(void) {
    return ml_test_have_shared(EVAL_FILE("hellaswag_val.jsonl")) && ml_test_have_shared(EVAL_FILE("piqa_valid.jsonl")) &&
           ml_test_have_shared(EVAL_FILE("arc_easy_test.jsonl")) && ml_test_have_shared(EVAL_FILE("arc_challenge_test.jsonl"));
}

/* weights of both presets, then one Python process for every job */
static int setup_jobs(void **state) {
    if (have_data()) {
        add_job("tiny-v1", ML_MC_HELLASWAG, EVAL_FILE("hellaswag_val.jsonl"), 8, 0);
        add_job("tiny-v1", ML_MC_PIQA, EVAL_FILE("piqa_valid.jsonl"), 8, 0);
        add_job("tiny-v1", ML_MC_ARC_EASY, EVAL_FILE("arc_easy_test.jsonl"), 8, 0);
        add_job("tiny-v1", ML_MC_ARC_CHALLENGE, EVAL_FILE("arc_challenge_test.jsonl"), 8, 0);
        add_job("tiny-pro", ML_MC_PIQA, EVAL_FILE("piqa_valid.jsonl"), 10, 0);
    }
    const char *hs = write_file("hs.jsonl",
        "{\"ctx\": \"  Home: [header] How to clean [title] Use soap.  Rinse [step] well [unclosed\", \"label\": 1, "
        "\"endings\": [\"[substeps] Dry  it.\", \"Wait [a]\\n[b] then  go \", \" caf\\u00e9 [x][y]ok\", \"[\"]}\n"
        "\n"
        "{\"ctx\": \"Plain: a b\", \"label\": 0, \"endings\": [\"x\", \"y\"]}\n");
    add_job("tiny-v1", ML_MC_HELLASWAG, hs, 0, 0);
    add_job("tiny-pro", ML_MC_HELLASWAG, hs, 0, 24); /* window 24 < inputs: truncation on both sides */
    const char *presets[2] = {"tiny-v1", "tiny-pro"};
    for (int p = 0; p < 2; p++) {
        ml_model m;
        make_model(&m, presets[p]);
        for (int i = 0; i < n_jobs; i++)
            if (!strcmp(jobs[i].preset, presets[p])) {
                write_weights(&m, jobs[i].w_path);
            }
        ml_model_free(&m);
    }
    char cmd[65536];
    int k = snprintf(cmd, sizeof cmd, "%s %s/tests/reference/mc_eval_ref.py", ML_PYTHON, ML_SOURCE_DIR);
    for (int i = 0; i < n_jobs; i++) {
        char cp[4096];
        cfg_path(cp, sizeof cp, jobs[i].preset);
        k += snprintf(cmd + k, sizeof cmd - k, " --job '%s|%s|%s|%s|%d|%d|%s'", cp, jobs[i].w_path,
                      ml_mc_task_name(jobs[i].task), jobs[i].data, jobs[i].limit, jobs[i].max_len, jobs[i].o_path);
    }
    return ml_test_run("%s", cmd) == 0 ? 0 : -1;
}

static void compare(int ji) {
    const job *j = &jobs[ji];
    ml_model m;
    make_model(&m, j->preset);
    ml_mc_task task = j->task;
    ml_tokenizer *tok;
    assert_int_equal(ml_tokenizer_open(&tok, "bytes"), ML_OK);
    ml_mc_set set;
    assert_int_equal(ml_mc_load(&set, task, j->data, j->limit), ML_OK);
    ml_mc_result r;
    ml_mc_opts o = {.max_len = j->max_len};
    assert_int_equal(ml_mc_evaluate(&m, tok, &set, &o, &r), ML_OK);
    char *text;
    size_t len;
    assert_int_equal(ml_read_file(j->o_path, &text, &len), ML_OK);
    cJSON *ref = cJSON_Parse(text);
    assert_non_null(ref);
    const cJSON *items = cJSON_GetObjectItem(ref, "items");
    assert_int_equal(cJSON_GetArraySize(items), set.n);
    double worst = 0;
    int longest = 0;
    for (int i = 0; i < set.n; i++) {
        const cJSON *it = cJSON_GetArrayItem(items, i);
        const ml_mc_score *sc = &r.items[i];
        assert_string_equal(set.items[i].context, cJSON_GetObjectItem(it, "context")->valuestring);
        const cJSON *ch = cJSON_GetObjectItem(it, "choices"), *ll = cJSON_GetObjectItem(it, "ll");
        assert_int_equal(cJSON_GetArraySize(ch), sc->n_choices);
        assert_int_equal(cJSON_GetObjectItem(it, "label")->valueint, sc->label);
        for (int c = 0; c < sc->n_choices; c++) {
            assert_string_equal(set.items[i].choices[c], cJSON_GetArrayItem(ch, c)->valuestring);
            double t = cJSON_GetArrayItem(ll, c)->valuedouble, e = fabs(sc->ll[c] - t) / fmax(1.0, fabs(t));
            worst = fmax(worst, e);
            if (e > 1e-4) fail_msg("%s item %d choice %d: ll %.6f, torch %.6f", ml_mc_task_name(task), i, c, sc->ll[c], t);
            int total = (int)strlen(set.items[i].context) + 1 + (int)strlen(set.items[i].choices[c]);
            if (total > longest) longest = total;
        }
        assert_int_equal(cJSON_GetObjectItem(it, "pred")->valueint, sc->pred);
        assert_int_equal(cJSON_GetObjectItem(it, "pred_norm")->valueint, sc->pred_norm);
    }
    assert_true(fabs(cJSON_GetObjectItem(ref, "acc")->valuedouble - r.acc) < 1e-12);
    assert_true(fabs(cJSON_GetObjectItem(ref, "acc_norm")->valuedouble - r.acc_norm) < 1e-12);
    print_message("%s %s: %d items, acc %.3f acc_norm %.3f, worst ll relative difference %.2e, longest input %d bytes\n",
                  j->preset, ml_mc_task_name(task), set.n, r.acc, r.acc_norm, worst, longest);
    cJSON_Delete(ref);
    free(text);
    ml_mc_result_free(&r);
    ml_mc_free(&set);
    ml_tokenizer_free(tok);
    ml_model_free(&m);
}

static void test_against_torch(void **s) {
    for (int i = 0; i < n_jobs; i++) compare(i);
}

static void test_bad_files(void **s) {
    ml_mc_set set;
    assert_int_equal(ml_mc_load(&set, ML_MC_PIQA, "/nonexistent/x.jsonl", 0), ML_ERR_IO);
    const char *p = write_file("bad.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n{oops\n");
    assert_int_equal(ml_mc_load(&set, ML_MC_PIQA, p, 0), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "bad.jsonl:2"));
    assert_int_equal(ml_mc_load(&set, ML_MC_PIQA, p, 1), ML_OK); /* the limit stops before line 2 */
    assert_int_equal(set.n, 1);
    ml_mc_free(&set);
    p = write_file("arc.jsonl", "{\"question\": \"q\", \"choices\": [{\"label\": \"A\", \"text\": \"x\"}, "
                                "{\"label\": \"B\", \"text\": \"y\"}], \"answerKey\": \"C\"}\n");
    assert_int_equal(ml_mc_load(&set, ML_MC_ARC_EASY, p, 0), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "answerKey"));
    p = write_file("lab.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}\n");
    assert_int_equal(ml_mc_load(&set, ML_MC_PIQA, p, 0), ML_ERR_FORMAT);
    p = write_file("empty.jsonl", "\n");
    assert_int_equal(ml_mc_load(&set, ML_MC_PIQA, p, 0), ML_ERR_FORMAT);
    ml_mc_task t;
    assert_int_equal(ml_mc_task_parse("winogrande", &t), ML_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torch),
        cmocka_unit_test(test_bad_files),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, setup_jobs, NULL));
}
