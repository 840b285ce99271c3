#include "distill/teacher_logits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/signals.h"
#include "common/sysinfo.h"
#include "data/batch_reader.h"
#include "distill/kd_loss.h"
#include "distill/logit_cache.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model.h"

typedef struct {
    int K;
    int32_t *ids;
    float *lp, *tail;
} topk_ctx;

/* A fused-head "loss" that keeps the top K of each row of logits and no gradient. */
static void topk_rows(void *p, float *logits, float *losses, const int32_t *targets, int row0, int rows, int V,
                      float grad_scale) {
    topk_ctx *k = p;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const int64_t i = row0 + r;
        ml_topk_logprobs(logits + (int64_t)r * V, V, k->K, k->ids + i * k->K, k->lp + i * k->K, k->tail + i);
        losses[r] = 0.0f;
    }
}

typedef struct {
    ml_model teacher;
    int has_teacher;
    ml_batch_reader *br;
    ml_logit_cache_writer *w;
    int32_t *tokens, *targets, *ids;
    float *lp, *tail;
    char *config_json;
} job;

static ml_status run(job *j, const ml_teacher_logits_args *a) {
    ML_TRY(ml_model_load_any(a->teacher, &j->teacher));
    j->has_teacher = 1;
    const ml_config *tc = &j->teacher.cfg;
    if (a->K > tc->vocab_size || a->K > ML_KD_MAX_TOPK)
        return ml_fail(ML_ERR_ARG, "--topk %d: at most %d (the teacher's vocabulary %d, distillation's limit %d)", a->K,
                       tc->vocab_size < ML_KD_MAX_TOPK ? tc->vocab_size : ML_KD_MAX_TOPK, tc->vocab_size,
                       ML_KD_MAX_TOPK);
    ml_batch_opts bo = {.B = a->B, .T = a->T, .pos_mode = ML_POS_ROW};
    ML_TRY(ml_batch_reader_open(&j->br, a->data, a->n_data, &bo));
    if (ml_batch_reader_vocab_size(j->br) > (uint32_t)tc->vocab_size)
        return ml_fail(ML_ERR_CONFIG, "data vocabulary (%u, tokenizer %s) is larger than the teacher's (%d)",
                       ml_batch_reader_vocab_size(j->br), ml_batch_reader_tokenizer(j->br), tc->vocab_size);
    j->teacher.recompute = 1; /* forward only: blocks share one set of buffers */
    ML_TRY(ml_model_reserve(&j->teacher, a->B, a->T, a->T));
    int64_t n_batches = a->batches;
    if (n_batches <= 0) {
        int64_t rows = (int64_t)(ml_batch_reader_total_tokens(j->br) / ((uint64_t)a->T + 1));
        n_batches = rows / a->B > 0 ? rows / a->B : 1;
    }
    const size_t N = (size_t)a->B * a->T, NK = N * (size_t)a->K;
    j->tokens = malloc(N * sizeof(int32_t));
    j->targets = malloc(N * sizeof(int32_t));
    j->ids = malloc(NK * sizeof(int32_t));
    j->lp = malloc(NK * sizeof(float));
    j->tail = malloc(N * sizeof(float));
    if (!j->tokens || !j->targets || !j->ids || !j->lp || !j->tail)
        return ml_fail(ML_ERR_NOMEM, "out of memory for a batch of %zu x %d top-K entries", N, a->K);
    ml_logit_cache_info info = {.B = a->B, .T = a->T, .K = a->K, .vocab_size = tc->vocab_size,
                                .data_tokens = ml_batch_reader_total_tokens(j->br), .data_shards = a->n_data,
                                .start = ml_batch_reader_get_cursor(j->br)};
    snprintf(info.tokenizer, sizeof info.tokenizer, "%s", ml_batch_reader_tokenizer(j->br));
    snprintf(info.teacher, sizeof info.teacher, "%s", a->teacher);
    snprintf(info.teacher_name, sizeof info.teacher_name, "%s", tc->name);
    ML_TRY(ml_config_to_json(tc, &j->config_json));
    ML_TRY(ml_logit_cache_create(&j->w, a->out, &info, j->config_json));
    if (!a->quiet)
        ml_log(ML_LOG_INFO, "teacher %s (%lld parameters, vocabulary %d): top %d of %lld batches of %d x %d -> %s", tc->name,
               (long long)ml_config_num_params(tc), tc->vocab_size, a->K, (long long)n_batches, a->B, a->T, a->out);
    ml_batch b = {.tokens = j->tokens, .targets = j->targets, .B = a->B, .T = a->T};
    topk_ctx k = {a->K, j->ids, j->lp, j->tail};
    const double t0 = ml_now_seconds();
    for (int64_t i = 0; i < n_batches; i++) {
        ml_data_cursor c = ml_batch_reader_get_cursor(j->br);
        ML_TRY(ml_batch_reader_next(j->br, j->tokens, j->targets, NULL, NULL));
        ML_TRY(ml_model_forward(&j->teacher, &b));
        double unused_sum;
        int64_t unused_n;
        ML_TRY(ml_model_head_custom(&j->teacher, &b, topk_rows, &k, 0.0f, &unused_sum, &unused_n));
        ML_TRY(ml_logit_cache_append(j->w, &c, j->tokens, j->ids, j->lp, j->tail));
        if (!a->quiet) {
            double dt = ml_now_seconds() - t0, rate = (double)(i + 1) * (double)N / dt;
            double eta = dt / (double)(i + 1) * (double)(n_batches - i - 1);
            char line[160];
            snprintf(line, sizeof line, "batch %lld/%lld | %.0f tok/s | ETA %ldm%02lds", (long long)i + 1,
                     (long long)n_batches, rate, (long)eta / 60, (long)eta % 60);
            ml_progress_report pr = {.task = "teacher-logits", .done = (double)(i + 1), .total = (double)n_batches,
                                     .rate = (double)(i + 1) / dt, .eta_s = eta, .final = i + 1 == n_batches,
                                     .line = line};
            ml_progress_emit(&a->progress, &pr);
        }
        if (ml_stop_requested())
            return ml_fail(ML_ERR_INTERRUPTED, "interrupted after batch %lld: no cache written", (long long)i + 1);
    }
    ml_logit_cache_writer *w = j->w;
    j->w = NULL;
    ML_TRY(ml_logit_cache_commit(w));
    if (!a->quiet)
        ml_log(ML_LOG_INFO, "wrote %s: %lld batches, %.1f s", a->out, (long long)n_batches, ml_now_seconds() - t0);
    return ML_OK;
}

ml_status ml_teacher_logits(const ml_teacher_logits_args *a) {
    if (!a->teacher || !a->out || a->n_data < 1)
        return ml_fail(ML_ERR_ARG, "teacher-logits needs --teacher, --data and --out");
    if (a->B < 1 || a->T < 1 || a->K < 1 || a->batches < 0)
        return ml_fail(ML_ERR_ARG, "--batch, --seq and --topk must be positive and --batches not negative");
    job j;
    memset(&j, 0, sizeof j);
    ml_status s = run(&j, a);
    ml_logit_cache_abort(j.w);
    ml_batch_reader_close(j.br);
    if (j.has_teacher) ml_model_free(&j.teacher);
    free(j.tokens), free(j.targets), free(j.ids), free(j.lp), free(j.tail), free(j.config_json);
    return s;
}
