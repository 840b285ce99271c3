#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/prof.h"
#include "common/signals.h"
#include "common/sysinfo.h"
#include "data/batch_reader.h"
#include "data/mixture_loader.h"
#include "distill/kd_head.h"
#include "distill/logit_cache.h"
#include "infer/eval_loss.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"
#include "model/linear.h"
#include "model/model.h"
#include "optim/clip.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "quant/quant.h"

void ml_train_args_defaults(ml_train_args *a) {
    memset(a, 0, sizeof *a);
    a->batch = 4;
    a->seq = 256;
    a->steps = 100;
    a->grad_accum = 1;
    snprintf(a->optim, sizeof a->optim, "adamw");
    snprintf(a->schedule, sizeof a->schedule, "cosine");
    snprintf(a->precision, sizeof a->precision, "fp32");
    snprintf(a->kd_loss, sizeof a->kd_loss, "fkl");
    snprintf(a->kd_tail, sizeof a->kd_tail, "renorm");
    a->temperature = 1.0f;
    a->kd_beta = 0.5f;
    a->lr = 2e-3f;
    a->min_lr_ratio = 0.1f;
    a->weight_decay = 0.1f;
    a->clip = 1.0f;
    a->beta1 = 0.9f;
    a->beta2 = 0.95f;
    a->eps = 1e-8f;
    a->wsd_decay_fraction = 0.2f;
    a->seed = 1;
    a->keep = 3;
    a->eval_batches = 8;
}

ml_status ml_train_args_to_json(const ml_train_args *a, char **json) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < a->n_data; i++) cJSON_AddItemToArray(data, cJSON_CreateString(a->data[i]));
    if (a->n_sources) {
        cJSON *src = cJSON_AddArrayToObject(o, "source");
        for (int i = 0; i < a->n_sources; i++) cJSON_AddItemToArray(src, cJSON_CreateString(a->sources[i]));
        cJSON_AddNumberToObject(o, "shuffle_rows", a->shuffle_rows);
    }
    if (a->val) cJSON_AddStringToObject(o, "val", a->val);
    if (a->config_path) cJSON_AddStringToObject(o, "config", a->config_path);
    if (a->init_ckpt) cJSON_AddStringToObject(o, "init", a->init_ckpt);
    cJSON_AddNumberToObject(o, "batch", a->batch);
    cJSON_AddNumberToObject(o, "seq", a->seq);
    cJSON_AddNumberToObject(o, "steps", (double)a->steps);
    cJSON_AddNumberToObject(o, "grad_accum", a->grad_accum);
    cJSON_AddStringToObject(o, "optim", a->optim);
    cJSON_AddStringToObject(o, "schedule", a->schedule);
    cJSON_AddStringToObject(o, "precision", a->precision);
    cJSON_AddNumberToObject(o, "lr", a->lr);
    cJSON_AddNumberToObject(o, "min_lr_ratio", a->min_lr_ratio);
    cJSON_AddNumberToObject(o, "warmup", (double)a->warmup);
    cJSON_AddNumberToObject(o, "weight_decay", a->weight_decay);
    cJSON_AddNumberToObject(o, "clip", a->clip);
    cJSON_AddNumberToObject(o, "beta1", a->beta1);
    cJSON_AddNumberToObject(o, "beta2", a->beta2);
    cJSON_AddNumberToObject(o, "eps", a->eps);
    cJSON_AddNumberToObject(o, "momentum", a->momentum);
    cJSON_AddNumberToObject(o, "wsd_decay_fraction", a->wsd_decay_fraction);
    cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddBoolToObject(o, "doc_positions", a->doc_positions);
    cJSON_AddBoolToObject(o, "doc_mask", a->doc_mask);
    cJSON_AddBoolToObject(o, "recompute", a->recompute);
    if (a->teacher || a->cache) {
        if (a->teacher) cJSON_AddStringToObject(o, "teacher", a->teacher);
        if (a->cache) cJSON_AddStringToObject(o, "cache", a->cache);
        if (a->cache) cJSON_AddStringToObject(o, "kd_tail", a->kd_tail);
        cJSON_AddStringToObject(o, "kd_loss", a->kd_loss);
        cJSON_AddNumberToObject(o, "temperature", a->temperature);
        cJSON_AddNumberToObject(o, "kd_beta", a->kd_beta);
        cJSON_AddNumberToObject(o, "ce_weight", a->ce_weight);
        if (a->teacher_latent) cJSON_AddBoolToObject(o, "teacher_latent", 1);
    }
    *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *json ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
}

static int kept(const char *name, const char *const *keep, int n_keep) {
    for (int i = 0; i < n_keep; i++)
        if (!strcmp(keep[i], name)) return 1;
    return 0;
}

ml_status ml_train_args_from_json(ml_train_args *a, const char *json, const char *const *keep, int n_keep,
                                  char **strings) {
    cJSON *o = cJSON_Parse(json);
    if (!o) return ml_fail(ML_ERR_FORMAT, "stored run arguments are not valid JSON");
    *strings = NULL;
#define NUM(key, field, type)                                                 \
    do {                                                                      \
        cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);                 \
        if (cJSON_IsNumber(it) && !kept(key, keep, n_keep)) a->field = (type)it->valuedouble; \
    } while (0)
#define STR(key, field)                                                                        \
    do {                                                                                       \
        cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);                                  \
        if (cJSON_IsString(it) && !kept(key, keep, n_keep))                                    \
            snprintf(a->field, sizeof a->field, "%s", it->valuestring);                        \
    } while (0)
    NUM("batch", batch, int);
    NUM("seq", seq, int);
    NUM("steps", steps, int64_t);
    NUM("grad_accum", grad_accum, int);
    NUM("lr", lr, float);
    NUM("min_lr_ratio", min_lr_ratio, float);
    NUM("warmup", warmup, int64_t);
    NUM("weight_decay", weight_decay, float);
    NUM("clip", clip, float);
    NUM("beta1", beta1, float);
    NUM("beta2", beta2, float);
    NUM("eps", eps, float);
    NUM("momentum", momentum, float);
    NUM("wsd_decay_fraction", wsd_decay_fraction, float);
    NUM("seed", seed, uint64_t);
    NUM("shuffle_rows", shuffle_rows, int);
    cJSON *bo = cJSON_GetObjectItemCaseSensitive(o, "doc_positions");
    if (cJSON_IsBool(bo) && !kept("doc_positions", keep, n_keep)) a->doc_positions = cJSON_IsTrue(bo);
    bo = cJSON_GetObjectItemCaseSensitive(o, "doc_mask");
    if (cJSON_IsBool(bo) && !kept("doc_mask", keep, n_keep)) a->doc_mask = cJSON_IsTrue(bo);
    bo = cJSON_GetObjectItemCaseSensitive(o, "teacher_latent");
    if (cJSON_IsBool(bo) && !kept("teacher_latent", keep, n_keep)) a->teacher_latent = cJSON_IsTrue(bo);
    bo = cJSON_GetObjectItemCaseSensitive(o, "recompute");
    if (cJSON_IsBool(bo) && !kept("recompute", keep, n_keep)) a->recompute = cJSON_IsTrue(bo);
    STR("optim", optim);
    STR("schedule", schedule);
    STR("precision", precision); /* absent in runs from before bf16: they were fp32, the default */
    STR("kd_loss", kd_loss);
    STR("kd_tail", kd_tail);
    NUM("temperature", temperature, float);
    NUM("kd_beta", kd_beta, float);
    NUM("ce_weight", ce_weight, float);
#undef NUM
#undef STR
    /* data files and mixture sources: only when the user named neither again */
    cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data"), *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    if (!kept("data", keep, n_keep) && !kept("source", keep, n_keep) && (cJSON_IsArray(data) || cJSON_IsArray(src))) {
        size_t total = 0;
        cJSON *it;
        if (cJSON_IsArray(data)) cJSON_ArrayForEach(it, data) if (cJSON_IsString(it)) total += strlen(it->valuestring) + 1;
        if (cJSON_IsArray(src)) cJSON_ArrayForEach(it, src) if (cJSON_IsString(it)) total += strlen(it->valuestring) + 1;
        char *buf = malloc(total + 1), *p = buf;
        if (!buf) {
            cJSON_Delete(o);
            return ml_fail(ML_ERR_NOMEM, "out of memory");
        }
        a->n_data = 0;
        a->n_sources = 0;
        if (cJSON_IsArray(data)) cJSON_ArrayForEach(it, data) if (cJSON_IsString(it) && a->n_data < ML_MAX_DATA_FILES) {
            strcpy(p, it->valuestring);
            a->data[a->n_data++] = p;
            p += strlen(p) + 1;
        }
        if (cJSON_IsArray(src)) cJSON_ArrayForEach(it, src) if (cJSON_IsString(it) && a->n_sources < ML_MAX_SOURCES) {
            strcpy(p, it->valuestring);
            a->sources[a->n_sources++] = p;
            p += strlen(p) + 1;
        }
        *strings = buf;
    }
    cJSON_Delete(o);
    return ML_OK;
}

ml_status ml_train_args_stored_str(const char *json, const char *key, char **value) {
    *value = NULL;
    cJSON *o = cJSON_Parse(json);
    if (!o) return ml_fail(ML_ERR_FORMAT, "stored run arguments are not valid JSON");
    cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(t)) *value = strdup(t->valuestring);
    cJSON_Delete(o);
    return ML_OK;
}

ml_status ml_train_args_stored_teacher(const char *json, char **teacher) {
    return ml_train_args_stored_str(json, "teacher", teacher);
}

ml_status ml_optimizer_for_model(ml_optimizer *o, const ml_model *m, const ml_optim_config *cfg) {
    ml_optim_segment *segs = malloc(sizeof *segs * (size_t)m->n_params);
    if (!segs) return ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_params; i++)
        segs[i] = (ml_optim_segment){m->params[i].offset, m->params[i].numel, m->params[i].weight_decay};
    ml_status s = ml_optim_create(o, cfg, segs, m->n_params, m->param_arena.capacity, NULL);
    free(segs);
    return s;
}

/* ---------------------------------------------------------------- checkpoints on disk */

static void ckpt_path(char *buf, size_t n, const char *dir, int64_t step) {
    snprintf(buf, n, "%s/ckpt_%08lld.h5", dir, (long long)step);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Keep the newest `keep` checkpoints of the run directory. */
static void prune_checkpoints(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    char *names[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t len = strlen(e->d_name);
        if (!strncmp(e->d_name, "ckpt_", 5) && len > 3 && !strcmp(e->d_name + len - 3, ".h5"))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (i < n - keep) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            unlink(p);
        }
        free(names[i]);
    }
}

/* ---------------------------------------------------------------- the loop */

typedef struct {
    ml_model model;
    ml_model teacher;
    int has_teacher;
    ml_logit_cache *cache; /* offline teacher */
    ml_kd_tail tail;
    ml_kd_config kd;
    ml_optimizer opt;
    ml_schedule sched;
    ml_batch_reader *train, *val;
    ml_mixture *mix; /* instead of train, for --source runs */
    int has_val;
    ml_train_state st;
    int32_t *tokens, *targets, *pos, *doc; /* pos/doc NULL unless the run asks for them */
    FILE *metrics;
    char *args_json;
    double prof_wall; /* with ML_PROFILE=1: wall time and count of the profiled training steps */
    int64_t prof_steps;
} trainer;

static ml_status evaluate(trainer *t, const ml_train_args *a, double *val_loss) {
    int64_t n;
    const int prof = ml_prof_enabled();
    ml_prof_enable(0); /* the profile covers training steps only */
    ml_status s = ml_eval_loss(&t->model, t->val, a->batch, a->seq, a->eval_batches, val_loss, &n);
    ml_prof_enable(prof);
    return s;
}

static ml_status save(trainer *t, const ml_train_args *a, int64_t step) {
    char path[4096];
    ckpt_path(path, sizeof path, a->out_dir, step);
    t->st.step = step;
    memset(t->st.cursor, 0, sizeof t->st.cursor);
    if (t->mix) {
        size_t n = ml_mixture_state_size(t->mix);
        if ((size_t)t->st.n_mixture != n) {
            int64_t *w = realloc(t->st.mixture, n * sizeof *w);
            if (!w) return ml_fail(ML_ERR_NOMEM, "out of memory for the mixture state");
            t->st.mixture = w;
            t->st.n_mixture = (int64_t)n;
        }
        ml_mixture_get_state(t->mix, t->st.mixture);
    } else {
        ml_data_cursor c = ml_batch_reader_get_cursor(t->train);
        t->st.cursor[0] = (int64_t)c.epoch;
        t->st.cursor[1] = (int64_t)c.shard;
        t->st.cursor[2] = (int64_t)c.offset;
    }
    /* the optimizer's state is borrowed, not copied, for the save */
    snprintf(t->st.optimizer, sizeof t->st.optimizer, "%s", ml_optim_kind_name(t->opt.cfg.kind));
    t->st.optimizer_step = t->opt.t;
    t->st.n_optim_state = ml_optim_num_state(&t->opt);
    for (int i = 0; i < t->st.n_optim_state; i++) {
        const char *name;
        t->st.optim_state[i] = ml_optim_state(&t->opt, i, &name);
        snprintf(t->st.optim_state_name[i], sizeof t->st.optim_state_name[i], "%s", name);
    }
    t->st.owns_optim_state = 0;
    free(t->st.args_json);
    t->st.args_json = strdup(t->args_json);
    ML_TRY(ml_checkpoint_save(path, &t->model, &t->st));
    prune_checkpoints(a->out_dir, a->keep);
    return ML_OK;
}

static void fmt_eta(char *buf, size_t n, double seconds) {
    if (!isfinite(seconds) || seconds < 0) seconds = 0;
    long s = (long)seconds;
    if (s >= 3600)
        snprintf(buf, n, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else
        snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

/* "domain_rows":{"web":3,"code":1}, (rows of this step per domain; sources sharing a domain add up) */
static void mixture_rows_json(const ml_mixture *mix, const uint64_t *rows, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "\"domain_rows\":{");
    int first = 1;
    for (int i = 0; i < ml_mixture_num_sources(mix) && k < n; i++) {
        const char *d = ml_mixture_domain(mix, i);
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= !strcmp(d, ml_mixture_domain(mix, j));
        if (seen) continue;
        uint64_t sum = 0;
        for (int j = i; j < ml_mixture_num_sources(mix); j++)
            if (!strcmp(d, ml_mixture_domain(mix, j))) sum += rows[j];
        k += (size_t)snprintf(buf + k, n - k, "%s\"%s\":%llu", first ? "" : ",", d, (unsigned long long)sum);
        first = 0;
    }
    if (k < n) snprintf(buf + k, n - k, "},");
}

static ml_status run(trainer *t, const ml_train_args *a) {
    ml_model *m = &t->model;
    const int64_t tokens_per_step = (int64_t)a->batch * a->seq * a->grad_accum;
    const double flops_per_token = ml_config_train_flops_per_token(&m->cfg, a->seq);
    const float grad_scale = 1.0f / (float)tokens_per_step;
    ml_batch b = {.tokens = t->tokens, .targets = t->targets, .pos = t->pos, .doc = t->doc, .B = a->batch, .T = a->seq};
    double t_start = ml_now_seconds();
    int64_t first_step = t->st.step;
    if (first_step >= a->steps)
        printf("checkpoint is already at step %lld of %lld: nothing to do\n", (long long)first_step,
               (long long)a->steps);
    for (int64_t step = first_step; step < a->steps; step++) {
        double t0 = ml_now_seconds();
        ml_model_zero_grad(m);
        double loss_sum = 0;
        int64_t scored = 0;
        ml_kd_stats kd_stats = {0};
        uint64_t domain_rows[ML_MAX_SOURCES] = {0};
        for (int micro = 0; micro < a->grad_accum; micro++) {
            ml_data_cursor cursor = {0, 0, 0};
            if (t->mix) {
                ML_TRY(ml_mixture_next(t->mix, t->tokens, t->targets, t->doc, t->pos));
                for (int i = 0; i < ml_mixture_num_sources(t->mix); i++) domain_rows[i] += ml_mixture_batch_rows(t->mix, i);
            } else {
                cursor = ml_batch_reader_get_cursor(t->train);
                ML_TRY(ml_batch_reader_next(t->train, t->tokens, t->targets, t->doc, t->pos));
            }
            ML_TRY(ml_model_forward(m, &b));
            double s;
            int64_t n;
            if (t->cache) { /* the cache batch is found by the data cursor: resume lands on the same one */
                ml_logit_batch lb;
                ML_TRY(ml_logit_cache_fetch(t->cache, &cursor, t->tokens, &lb));
                ML_TRY(ml_kd_cache_head_loss(m, &lb, ml_logit_cache_get_info(t->cache)->K, &b, &t->kd, t->tail,
                                             grad_scale, &s, &n, &kd_stats));
            } else if (t->has_teacher) {
                ML_TRY(ml_model_forward(&t->teacher, &b));
                ML_TRY(ml_kd_head_loss(m, &t->teacher, &b, &t->kd, grad_scale, &s, &n, &kd_stats));
            } else {
                ML_TRY(ml_model_head_loss(m, &b, grad_scale, &s, &n));
            }
            ML_TRY(ml_model_backward(m, &b));
            loss_sum += s;
            scored += n;
        }
        ml_model_grads_to_latent(m); /* weight transforms: gradients of the used weights reach the latent ones */
        double loss = loss_sum / (double)(scored ? scored : 1);
        /* clip_grad_norm leaves non-finite gradients untouched and returns their norm */
        double gnorm = 0;
        ML_PROFILE(ML_PROF_CLIP) gnorm = ml_clip_grad_norm(m->grad_arena.base, m->grad_arena.capacity, a->clip);
        float lr = ml_lr_at(&t->sched, step);
        int skipped = !isfinite(loss) || !isfinite(gnorm);
        ml_status us = ML_OK;
        if (!skipped) ML_PROFILE(ML_PROF_OPTIMIZER) us = ml_optim_step(&t->opt, m->param_arena.base, m->grad_arena.base, lr);
        ML_TRY(us);
        ml_model_weights_changed(m);
        t->st.tokens_seen += tokens_per_step;
        double now = ml_now_seconds(), dt = now - t0;
        if (ml_prof_enabled()) t->prof_wall += dt, t->prof_steps++;
        double tok_s = (double)tokens_per_step / dt;
        double done = (double)(step + 1 - first_step), left = (double)(a->steps - step - 1);
        char eta[32];
        fmt_eta(eta, sizeof eta, (now - t_start) / done * left);
        if (skipped)
            fprintf(stderr, "step %lld: loss %g, grad norm %g not finite: update skipped\n", (long long)step + 1,
                    loss, gnorm);
        char kd_part[96] = "", kd_json[96] = "";
        if ((t->has_teacher || t->cache) && kd_stats.count) {
            double kdm = kd_stats.kd_sum / (double)kd_stats.count, cem = kd_stats.ce_sum / (double)kd_stats.count;
            snprintf(kd_part, sizeof kd_part, " (%s %.4f, ce %.4f)", a->kd_loss, kdm, cem);
            snprintf(kd_json, sizeof kd_json, "\"kd\":%.6f,\"ce\":%.6f,", kdm, cem);
        }
        if (!a->quiet)
            printf("step %6lld/%lld | loss %.4f%s | lr %.3e | grad norm %.3f | %.0f tok/s | %.1f GFLOP/s | ETA %s\n",
                   (long long)step + 1, (long long)a->steps, loss, kd_part, lr, gnorm, tok_s,
                   tok_s * flops_per_token / 1e9, eta);
        char mix_json[1024] = "";
        if (t->mix) mixture_rows_json(t->mix, domain_rows, mix_json, sizeof mix_json);
        fprintf(t->metrics,
                "{\"step\":%lld,\"loss\":%.6f,%s%s\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%lld,\"tokens_per_s\":%.1f,"
                "\"gflops\":%.2f,\"skipped\":%s}\n",
                (long long)step + 1, loss, kd_json, mix_json, lr, gnorm, (long long)t->st.tokens_seen, tok_s,
                tok_s * flops_per_token / 1e9, skipped ? "true" : "false");
        fflush(t->metrics);
        int last = step + 1 == a->steps;
        if (t->has_val && ((a->eval_every > 0 && (step + 1) % a->eval_every == 0) || last)) {
            double vl;
            ML_TRY(evaluate(t, a, &vl));
            printf("eval  step %lld | val loss %.4f | ppl %.2f\n", (long long)step + 1, vl, exp(vl));
            fprintf(t->metrics, "{\"step\":%lld,\"val_loss\":%.6f,\"val_ppl\":%.4f}\n", (long long)step + 1, vl,
                    exp(vl));
            fflush(t->metrics);
        }
        if (last || (a->ckpt_every > 0 && (step + 1) % a->ckpt_every == 0)) ML_TRY(save(t, a, step + 1));
        if (a->stop_after > 0 && step + 1 == a->stop_after && !last) {
            ML_TRY(save(t, a, step + 1));
            printf("stopped after step %lld as asked; resume with --resume %s/ckpt_%08lld.h5\n", (long long)step + 1,
                   a->out_dir, (long long)step + 1);
            return ML_OK;
        }
        if (ml_stop_requested() && !last) {
            ML_TRY(save(t, a, step + 1));
            printf("interrupted: checkpoint written at step %lld in %s (resume with --resume)\n",
                   (long long)step + 1, a->out_dir);
            return ml_fail(ML_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint saved", (long long)step + 1);
        }
    }
    return ML_OK;
}

/* Copy the checkpoint's optimizer state into the fresh optimizer (same kind required). */
static ml_status restore_optimizer(trainer *t) {
    const char *kind = ml_optim_kind_name(t->opt.cfg.kind);
    if (!t->st.optimizer[0]) return ml_fail(ML_ERR_FORMAT, "checkpoint holds no optimizer state to resume from");
    if (strcmp(t->st.optimizer, kind) != 0)
        return ml_fail(ML_ERR_ARG, "checkpoint was trained with %s, not %s: resume needs the same optimizer",
                       t->st.optimizer, kind);
    for (int i = 0; i < ml_optim_num_state(&t->opt); i++) {
        const char *name;
        float *dst = ml_optim_state(&t->opt, i, &name);
        int found = 0;
        for (int j = 0; j < t->st.n_optim_state; j++)
            if (!strcmp(t->st.optim_state_name[j], name)) {
                memcpy(dst, t->st.optim_state[j], t->opt.num_floats * sizeof(float));
                found = 1;
            }
        if (!found) return ml_fail(ML_ERR_FORMAT, "checkpoint lacks optimizer state '%s'", name);
    }
    t->opt.t = t->st.optimizer_step;
    /* copied: release the loaded arrays (later saves borrow the optimizer's own state) */
    for (int j = 0; j < t->st.n_optim_state; j++) free(t->st.optim_state[j]);
    t->st.n_optim_state = 0;
    t->st.owns_optim_state = 0;
    return ML_OK;
}

ml_status ml_train(const ml_train_args *args) {
    ml_train_args resolved = *args;
    const ml_train_args *a = &resolved;
    if (args->qat && args->self_distill && !args->teacher && !args->cache && args->init_ckpt) {
        resolved.teacher = args->init_ckpt; /* QAT self-distillation: the full-precision --init model teaches */
        resolved.teacher_latent = 1;
    }
    int sources = !!a->config_path + !!a->init_ckpt + !!a->resume_ckpt;
    if (sources != 1) return ml_fail(ML_ERR_ARG, "give exactly one of --config, --init, --resume");
    if (a->n_data < 1 && a->n_sources < 1) return ml_fail(ML_ERR_ARG, "no training data (--data SHARD... or --source SPEC...)");
    if (a->n_data > 0 && a->n_sources > 0) return ml_fail(ML_ERR_ARG, "give --data or --source, not both");
    if (a->n_sources > 0 && a->cache)
        return ml_fail(ML_ERR_UNSUPPORTED, "a teacher-logit cache follows the --data stream; it cannot be used with --source");
    if (a->shuffle_rows < 0) return ml_fail(ML_ERR_ARG, "--shuffle-rows must be >= 0");
    if (!a->out_dir) return ml_fail(ML_ERR_ARG, "missing --out DIR");
    if (a->batch < 1 || a->seq < 1 || a->grad_accum < 1 || a->steps < 1)
        return ml_fail(ML_ERR_ARG, "--batch, --seq, --grad-accum and --steps must be positive");
    if (a->quant_scheme) { /* a bad recipe is refused before anything is created */
        ml_quant_recipe r;
        ML_TRY(ml_quant_recipe_parse(&r, a->quant_scheme, a->quant_embedding, a->quant_act));
    }
    if (mkdir(a->out_dir, 0755) != 0 && errno != EEXIST)
        return ml_fail(ML_ERR_IO, "cannot create output directory %s: %s", a->out_dir, strerror(errno));

    trainer t;
    memset(&t, 0, sizeof t);
    ml_status s = ML_OK;
    if (a->config_path) {
        ml_config cfg;
        s = ml_config_load(&cfg, a->config_path);
        if (s == ML_OK) s = ml_model_create(&t.model, &cfg);
        if (s == ML_OK) ml_model_init_weights(&t.model, a->seed);
        ml_rng_seed(&t.st.rng, a->seed);
    } else if (a->init_ckpt) {
        s = ml_checkpoint_load(a->init_ckpt, &t.model, NULL);
        ml_rng_seed(&t.st.rng, a->seed);
    } else {
        s = ml_checkpoint_load(a->resume_ckpt, &t.model, &t.st);
    }
    if (s != ML_OK) goto done;
    /* quantization-aware training: install the recipe (learned scales join the parameters before the optimizer) */
    s = ml_quant_prepare(&t.model, a->quant_scheme, a->quant_embedding, a->quant_act,
                         a->init_ckpt ? a->init_ckpt : a->resume_ckpt ? a->resume_ckpt : "the model");
    if (s == ML_OK && a->qat && !t.model.quant[0])
        s = ml_fail(ML_ERR_ARG, "%s is not quantized: give --scheme", a->init_ckpt ? a->init_ckpt : "the model");
    if (s != ML_OK) goto done;
    {
        ml_precision prec;
        s = ml_precision_parse(a->precision, &prec);
        if (s == ML_OK) s = ml_model_set_precision(&t.model, prec);
        if (s != ML_OK) goto done;
    }
    if (a->rope_theta > 0 && a->rope_theta != t.model.cfg.rope_theta) {
        printf("RoPE theta %g -> %g for this run\n", t.model.cfg.rope_theta, a->rope_theta);
        t.model.cfg.rope_theta = a->rope_theta; /* the checkpoints of this run carry the new value */
    }
    t.model.recompute = a->recompute;
    s = ml_model_reserve(&t.model, a->batch, a->seq, a->seq);
    if (s != ML_OK) goto done;
    if (a->teacher && a->cache) {
        s = ml_fail(ML_ERR_ARG, "give --teacher or --cache, not both");
        goto done;
    }
    if (a->teacher || a->cache) {
        t.kd = (ml_kd_config){.temperature = a->temperature, .beta = a->kd_beta, .ce_weight = a->ce_weight};
        s = ml_kd_kind_parse(a->kd_loss, &t.kd.kind);
        if (s == ML_OK) s = ml_kd_config_check(&t.kd);
        if (s == ML_OK && a->cache) s = ml_kd_tail_parse(a->kd_tail, &t.tail);
        if (s == ML_OK && a->cache) s = ml_logit_cache_open(&t.cache, a->cache);
        if (s != ML_OK || a->cache) goto teacher_done;
        s = a->teacher_latent ? ml_checkpoint_load(a->teacher, &t.teacher, NULL) : ml_model_load_any(a->teacher, &t.teacher);
        if (s != ML_OK) goto done;
        t.has_teacher = 1;
        t.teacher.recompute = 1; /* forward only: one set of block buffers shared by all blocks */
        s = ml_model_reserve(&t.teacher, a->batch, a->seq, a->seq);
        if (s == ML_OK) s = ml_kd_check_pair(&t.model, &t.teacher);
    teacher_done:
        if (s != ML_OK) goto done;
    }
    ml_batch_opts bo = {.B = a->batch, .T = a->seq, .pos_mode = a->doc_positions ? ML_POS_DOC : ML_POS_ROW};
    if (a->n_sources) {
        ml_mixture_opts mo = {.B = a->batch, .T = a->seq, .pos_mode = bo.pos_mode, .shuffle_rows = a->shuffle_rows,
                              .seed = a->seed};
        s = ml_mixture_open_specs(&t.mix, a->sources, a->n_sources, &mo);
    } else {
        s = ml_batch_reader_open(&t.train, a->data, a->n_data, &bo);
    }
    if (s != ML_OK) goto done;
    uint32_t data_vocab = t.mix ? ml_mixture_vocab_size(t.mix) : ml_batch_reader_vocab_size(t.train);
    const char *data_tok = t.mix ? ml_mixture_tokenizer(t.mix) : ml_batch_reader_tokenizer(t.train);
    if ((uint32_t)t.model.cfg.vocab_size < data_vocab) {
        s = ml_fail(ML_ERR_CONFIG, "data vocabulary (%u, tokenizer %s) is larger than the model's (%d)", data_vocab,
                    data_tok, t.model.cfg.vocab_size);
        goto done;
    }
    if (t.cache) {
        s = ml_logit_cache_check_run(t.cache, t.train, a->n_data, a->batch, a->seq, t.model.cfg.vocab_size);
        if (s != ML_OK) goto done;
    }
    if (a->val) {
        s = ml_batch_reader_open(&t.val, &a->val, 1, &bo);
        if (s != ML_OK) goto done;
        t.has_val = 1;
    }
    if (a->resume_ckpt && t.mix) {
        if (!t.st.mixture) {
            s = ml_fail(ML_ERR_FORMAT, "%s holds no mixture state (trained with --data?): cannot resume with --source",
                        a->resume_ckpt);
            goto done;
        }
        s = ml_mixture_set_state(t.mix, t.st.mixture, (size_t)t.st.n_mixture);
        if (s != ML_OK) s = ml_fail_context(s, "resuming %s", a->resume_ckpt);
        if (s != ML_OK) goto done;
    } else if (a->resume_ckpt) {
        ml_data_cursor c = {(uint64_t)t.st.cursor[0], (uint64_t)t.st.cursor[1], (uint64_t)t.st.cursor[2]};
        s = ml_batch_reader_set_cursor(t.train, &c);
        if (s != ML_OK) goto done;
    }
    {
        ml_optim_kind kind;
        s = ml_optim_kind_parse(a->optim, &kind);
        if (s != ML_OK) goto done;
        ml_optim_config oc = ml_optim_defaults(kind);
        oc.beta1 = a->beta1;
        oc.beta2 = a->beta2;
        oc.eps = a->eps;
        oc.weight_decay = a->weight_decay;
        oc.momentum = a->momentum;
        s = ml_optimizer_for_model(&t.opt, &t.model, &oc);
        if (s != ML_OK) goto done;
        if (a->resume_ckpt) s = restore_optimizer(&t);
        if (s != ML_OK) goto done;
        t.sched = ml_schedule_defaults(a->lr, a->steps);
        s = ml_schedule_kind_parse(a->schedule, &t.sched.kind);
        t.sched.warmup_steps = a->warmup;
        t.sched.min_ratio = a->min_lr_ratio;
        t.sched.decay_fraction = a->wsd_decay_fraction;
        if (s == ML_OK) s = ml_schedule_check(&t.sched);
        if (s != ML_OK) goto done;
    }
    size_t N = (size_t)a->batch * a->seq;
    t.tokens = malloc(N * sizeof(int32_t));
    t.targets = malloc(N * sizeof(int32_t));
    t.pos = a->doc_positions ? malloc(N * sizeof(int32_t)) : NULL;
    t.doc = a->doc_mask ? malloc(N * sizeof(int32_t)) : NULL;
    if (!t.tokens || !t.targets || (a->doc_positions && !t.pos) || (a->doc_mask && !t.doc)) {
        s = ml_fail(ML_ERR_NOMEM, "out of memory for batch buffers");
        goto done;
    }
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", a->out_dir);
    t.metrics = fopen(mpath, a->resume_ckpt ? "a" : "w");
    if (!t.metrics) {
        s = ml_fail(ML_ERR_IO, "cannot open %s: %s", mpath, strerror(errno));
        goto done;
    }
    s = ml_train_args_to_json(a, &t.args_json);
    if (s != ML_OK) goto done;
    {
        char blas[256];
        ml_blas_describe(blas, sizeof blas);
        printf("model %s: %lld parameters, %d layers x %d (%s), batch %d x %d x accum %d, %s, %s lr %.2e, %s GEMMs\n",
               t.model.cfg.name, (long long)ml_config_num_params(&t.model.cfg), t.model.cfg.num_layers,
               t.model.cfg.layer_repeat, t.model.cfg.tie_word_embeddings ? "tied" : "untied", a->batch, a->seq,
               a->grad_accum, a->optim, a->schedule, a->lr, ml_precision_name(t.model.precision));
        printf("%s\n", blas);
        const char *warn = ml_blas_kernel_warning();
        if (warn) printf("%s\n", warn);
        if (a->resume_ckpt) printf("resuming %s at step %lld\n", a->resume_ckpt, (long long)t.st.step);
        for (int i = 0; t.mix && i < ml_mixture_num_sources(t.mix); i++)
            printf("source %d: %s, weight %.3f\n", i, ml_mixture_domain(t.mix, i), ml_mixture_weight(t.mix, i));
        if (t.mix && a->shuffle_rows) printf("shuffle buffer: %d rows\n", a->shuffle_rows);
        if (t.model.quant[0])
            printf("quantization-aware training: %s, %d learned scale tensors\n", t.model.quant,
                   ml_quant_num_scales(&t.model));
        if (t.has_teacher)
            printf("distilling from %s%s (%lld parameters): %s, temperature %g, ce weight %g\n", a->teacher,
                   a->teacher_latent ? " (full precision: self-distillation)" : "", (long long)ml_config_num_params(&t.teacher.cfg), a->kd_loss, a->temperature, a->ce_weight);
        if (t.cache)
            printf("distilling from the cache %s (teacher %s, top %d): %s, tail %s, temperature %g, ce weight %g\n",
                   a->cache, ml_logit_cache_get_info(t.cache)->teacher_name, ml_logit_cache_get_info(t.cache)->K,
                   a->kd_loss, a->kd_tail, a->temperature, a->ce_weight);
    }
    ml_prof_reset();
    ml_prof_enable_from_env();
    s = run(&t, a);
    if (ml_prof_enabled() && t.prof_steps > 0) {
        printf("profile (ML_PROFILE, %lld steps, data loading included in 'other')\n", (long long)t.prof_steps);
        ml_prof_print(stdout, t.prof_wall, t.prof_steps);
    }
done:
    if (t.metrics) fclose(t.metrics);
    free(t.tokens);
    free(t.targets);
    free(t.pos);
    free(t.doc);
    free(t.args_json);
    ml_batch_reader_close(t.train);
    ml_mixture_close(t.mix);
    ml_batch_reader_close(t.val);
    ml_optim_free(&t.opt);
    ml_train_state_free(&t.st);
    ml_model_free(&t.model);
    if (t.has_teacher) ml_model_free(&t.teacher);
    ml_logit_cache_close(t.cache);
    return s;
}
