#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/dist.h"
#include "common/log.h"
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
static ml_status prune_checkpoints(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return ml_fail(ML_ERR_IO, "pruning checkpoints: cannot open %s: %s", dir, strerror(errno));
    char *names[4096];
    int n = 0;
    ml_status s = ML_OK;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        size_t len = strlen(e->d_name);
        if (!strncmp(e->d_name, "ckpt_", 5) && len > 3 && !strcmp(e->d_name + len - 3, ".h5")) {
            if (!(names[n] = strdup(e->d_name))) {
                s = ml_fail(ML_ERR_NOMEM, "out of memory pruning checkpoints in %s", dir);
                break;
            }
            n++;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (s == ML_OK && i < n - keep) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (unlink(p) != 0 && errno != ENOENT)
                s = ml_fail(ML_ERR_IO, "cannot remove old checkpoint %s: %s", p, strerror(errno));
        }
        free(names[i]);
    }
    return s;
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
    char metrics_path[4096];
    char *args_json;
    double prof_wall; /* with ML_PROFILE=1: wall time and count of the profiled training steps */
    int64_t prof_steps;
    /* data parallelism (common/dist.h) */
    int rank, ranks;
    ml_dist_reducer *reducer; /* NULL with one rank */
    ml_dist_bucket *buckets;
    int *bucket_level; /* a bucket may start once model->grad_ready reported this level (see model.h) */
    char *bucket_started;
    int n_buckets;
    int hook_live;     /* the last micro-batch's backward: start buckets from the hook */
    ml_status hook_status;
    float *acc;        /* --deterministic-reduce with --grad-accum > 1: the sum of earlier micro-batches */
    double bwd_s, comm_span_s, comm_wait_s; /* last step: backward, all-reduce span, wait after backward */
    /* ZeRO-1: the optimizer covers params[shard_lo, shard_hi) only; parts of every rank */
    size_t shard_lo, shard_hi, *part_cnt, *part_off;
} trainer;

static ml_status evaluate(trainer *t, const ml_train_args *a, double *val_loss) {
    int64_t n;
    const int prof = ml_prof_enabled();
    ml_prof_enable(0); /* the profile covers training steps only */
    double sum[2] = {0, 0};
    ml_status s = ml_eval_loss_part(&t->model, t->val, a->batch, a->seq, a->eval_batches, t->rank, t->ranks, &sum[0], &n);
    ml_prof_enable(prof);
    sum[1] = (double)n;
    if (t->ranks > 1) { /* every rank scored its share of the batches */
        ML_TRY(ml_dist_agree(s, "evaluation"));
        ML_TRY(ml_dist_sum_f64(sum, 2, "evaluation"));
    }
    *val_loss = sum[1] > 0 ? sum[0] / sum[1] : 0.0;
    return s;
}

static ml_status save_rank0(trainer *t, const ml_train_args *a, int64_t step);

/* Every rank calls this: with ZeRO-1 the optimizer state is gathered to rank 0 (into buffers made for the
 * save), rank 0 writes the one checkpoint, and all ranks learn whether it worked. */
static ml_status save(trainer *t, const ml_train_args *a, int64_t step) {
    if (!a->zero1 || t->ranks == 1) return ml_dist_agree(t->rank == 0 ? save_rank0(t, a, step) : ML_OK, "checkpoint");
    const int n = ml_optim_num_state(&t->opt);
    const size_t N = t->model.param_arena.capacity;
    float *full[ML_OPTIM_MAX_STATE] = {0};
    ml_status s = ML_OK;
    for (int i = 0; i < n && s == ML_OK && t->rank == 0; i++)
        if (!(full[i] = calloc(N, sizeof(float))))
            s = ml_fail(ML_ERR_NOMEM, "out of memory gathering the optimizer state for a checkpoint");
    s = ml_dist_agree(s, "checkpoint (gather)");
    for (int i = 0; i < n && s == ML_OK; i++) {
        const char *name;
        const float *mine = ml_optim_state(&t->opt, i, &name);
        if (t->rank == 0) memcpy(full[i] + t->shard_lo, mine, (t->shard_hi - t->shard_lo) * sizeof(float));
        s = ml_dist_gatherv_f32(mine, full[i], t->part_cnt, t->part_off, 0, "checkpoint (gather optimizer state)");
    }
    if (s == ML_OK) {
        if (t->rank == 0) {
            /* borrow the gathered state for the save */
            float *own[ML_OPTIM_MAX_STATE];
            memcpy(own, t->opt.state, sizeof own);
            for (int j = 0, k = 0; j < ML_OPTIM_MAX_STATE; j++)
                if (t->opt.state[j]) t->opt.state[j] = full[k++];
            s = save_rank0(t, a, step);
            memcpy(t->opt.state, own, sizeof own);
        }
        s = ml_dist_agree(s, "checkpoint");
    }
    for (int i = 0; i < n; i++) free(full[i]);
    return s;
}

static ml_status save_rank0(trainer *t, const ml_train_args *a, int64_t step) {
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
    /* the optimizer's state is borrowed, not copied, for the save; its groups carry the registry's names */
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
    if (!t->st.args_json) return ml_fail(ML_ERR_NOMEM, "out of memory saving %s", path);
    ML_TRY(ml_checkpoint_save(path, &t->model, &t->st));
    return prune_checkpoints(a->out_dir, a->keep);
}

/* A metrics line; a failed write is an error, not a silent gap in the file. */
static ml_status metrics_line(trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ml_status metrics_line(trainer *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vfprintf(t->metrics, fmt, ap);
    va_end(ap);
    if (k < 0 || fflush(t->metrics) != 0)
        return ml_fail(ML_ERR_IO, "writing %s failed: %s", t->metrics_path, strerror(errno));
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

/* ---------------------------------------------------------------- data parallelism */

/* Skip n micro-batches of the data stream (the other ranks' part of the step). */
static void skip_batches(trainer *t, int64_t n) {
    if (t->mix)
        for (int64_t i = 0; i < n; i++) ml_mixture_skip(t->mix);
    else
        ml_batch_reader_skip(t->train, n);
}

/* Bucket i's gradients are final: with --deterministic-reduce add the earlier micro-batches' sum
 * (acc + g, the order in which accumulation adds the last micro-batch), then start its all-reduce. */
static ml_status start_bucket(trainer *t, int i) {
    if (t->bucket_started[i]) return ML_OK;
    t->bucket_started[i] = 1;
    if (t->acc) {
        float *g = t->model.grad_arena.base + t->buckets[i].offset;
        const float *acc = t->acc + t->buckets[i].offset;
        for (size_t k = 0; k < t->buckets[i].count; k++) g[k] = acc[k] + g[k];
    }
    return ml_dist_reducer_start(t->reducer, i);
}

/* model->grad_ready during the last micro-batch's backward. */
static void on_grad_ready(void *user, int level) {
    trainer *t = user;
    if (!t->hook_live || t->hook_status != ML_OK) return;
    for (int i = 0; i < t->n_buckets && t->hook_status == ML_OK; i++)
        if (t->bucket_level[i] >= level) t->hook_status = start_bucket(t, i);
    if (t->hook_status == ML_OK) t->hook_status = ml_dist_reducer_poll(t->reducer);
}

static ml_status finish_reduce(trainer *t) {
    for (int i = 0; i < t->n_buckets; i++) ML_TRY(start_bucket(t, i));
    memset(t->bucket_started, 0, (size_t)t->n_buckets);
    return ml_dist_reducer_finish(t->reducer);
}

static ml_status run(trainer *t, const ml_train_args *a) {
    ml_model *m = &t->model;
    const int G = a->grad_accum, R = t->ranks, root = t->rank == 0;
    const int64_t tokens_per_step = (int64_t)a->batch * a->seq * G * R;
    const double flops_per_token = ml_config_train_flops_per_token(&m->cfg, a->seq);
    const float grad_scale = 1.0f / (float)tokens_per_step;
    ml_batch b = {.tokens = t->tokens, .targets = t->targets, .pos = t->pos, .doc = t->doc, .B = a->batch, .T = a->seq};
    double t_start = ml_now_seconds();
    int64_t first_step = t->st.step;
    if (first_step >= a->steps)
        ml_log(ML_LOG_INFO, "checkpoint is already at step %lld of %lld: nothing to do", (long long)first_step,
               (long long)a->steps);
    for (int64_t step = first_step; step < a->steps; step++) {
        double t0 = ml_now_seconds();
        ml_model_zero_grad(m);
        double loss_sum = 0;
        int64_t scored = 0;
        ml_kd_stats kd_stats = {0};
        uint64_t domain_rows[ML_MAX_SOURCES] = {0};
        t->bwd_s = 0;
        if (R > 1) skip_batches(t, (int64_t)t->rank * G); /* the micro-batches of lower ranks */
        for (int micro = 0; micro < G; micro++) {
            ml_data_cursor cursor = {0, 0, 0};
            if (micro > 0 && t->acc) ml_model_zero_grad(m); /* each micro-batch on its own; acc holds the sum */
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
            double tb = ml_now_seconds();
            t->hook_live = t->reducer && micro == G - 1;
            t->hook_status = ML_OK;
            ML_TRY(ml_model_backward(m, &b));
            t->hook_live = 0;
            ML_TRY(t->hook_status);
            t->bwd_s += ml_now_seconds() - tb;
            if (t->acc && micro < G - 1) { /* acc = ((g0 + g1) + g2) ...: the order the ranks' sum follows */
                const size_t nf = m->grad_arena.capacity;
                float *g = m->grad_arena.base;
                if (micro == 0)
                    memcpy(t->acc, g, nf * sizeof(float));
                else
                    for (size_t i = 0; i < nf; i++) t->acc[i] = t->acc[i] + g[i];
            }
            loss_sum += s;
            scored += n;
        }
        if (R > 1) skip_batches(t, (int64_t)(R - 1 - t->rank) * G); /* and those of higher ranks */
        int stop = ml_stop_requested();
        if (t->reducer) {
            ML_TRY(finish_reduce(t));
            ml_dist_reducer_times(t->reducer, &t->comm_span_s, &t->comm_wait_s);
            /* the step's statistics, added over ranks in rank order */
            double red[6 + ML_MAX_SOURCES];
            const int ns = t->mix ? ml_mixture_num_sources(t->mix) : 0;
            red[0] = loss_sum, red[1] = (double)scored, red[2] = kd_stats.kd_sum, red[3] = kd_stats.ce_sum;
            red[4] = (double)kd_stats.count, red[5] = stop;
            for (int i = 0; i < ns; i++) red[6 + i] = (double)domain_rows[i];
            ML_TRY(ml_dist_sum_f64(red, 6 + ns, "step statistics"));
            loss_sum = red[0], scored = (int64_t)red[1], kd_stats.kd_sum = red[2], kd_stats.ce_sum = red[3];
            kd_stats.count = (int64_t)red[4], stop = red[5] > 0;
            for (int i = 0; i < ns; i++) domain_rows[i] = (uint64_t)red[6 + i];
        } else if (t->acc && G > 1) {
            const size_t nf = m->grad_arena.capacity;
            for (size_t i = 0; i < nf; i++) m->grad_arena.base[i] = t->acc[i] + m->grad_arena.base[i];
        }
        ml_model_grads_to_latent(m); /* weight transforms: gradients of the used weights reach the latent ones */
        double loss = loss_sum / (double)(scored ? scored : 1);
        /* clip_grad_norm leaves non-finite gradients untouched and returns their norm */
        double gnorm = 0;
        ML_PROFILE(ML_PROF_CLIP) gnorm = ml_clip_grad_norm(m->grad_arena.base, m->grad_arena.capacity, a->clip);
        float lr = ml_lr_at(&t->sched, step);
        int skipped = !isfinite(loss) || !isfinite(gnorm);
        ml_status us = ML_OK;
        /* the step writes the bf16 weight copies as it goes, unless it updates only this rank's shard (ZeRO-1) */
        uint16_t *mirror = a->zero1 && R > 1 ? NULL : ml_model_bf16_mirror(m);
        if (!skipped) ML_PROFILE(ML_PROF_OPTIMIZER) us = ml_optim_step_mirrored(&t->opt, m->param_arena.base + t->shard_lo,
                                                                                 m->grad_arena.base + t->shard_lo, lr,
                                                                                 mirror ? mirror + t->shard_lo : NULL);
        ML_TRY(us);
        if (a->zero1 && R > 1 && !skipped) /* ZeRO-1: every rank updated its shard; share the new weights */
            ML_TRY(ml_dist_allgatherv_f32(m->param_arena.base, t->part_cnt, t->part_off, "parameter allgather (ZeRO-1)"));
        ml_model_weights_stepped(m, mirror && !skipped);
        t->st.tokens_seen += tokens_per_step;
        double now = ml_now_seconds(), dt = now - t0;
        if (ml_prof_enabled()) t->prof_wall += dt, t->prof_steps++;
        double tok_s = (double)tokens_per_step / dt;
        double done = (double)(step + 1 - first_step), left = (double)(a->steps - step - 1);
        char eta[32];
        fmt_eta(eta, sizeof eta, (now - t_start) / done * left);
        if (skipped && root)
            ml_log(ML_LOG_WARN, "step %lld: loss %g, grad norm %g not finite: update skipped", (long long)step + 1, loss,
                   gnorm);
        char kd_part[96] = "", kd_json[96] = "";
        ml_train_step_report rep = {.step = step + 1, .steps = a->steps, .loss = loss, .lr = lr, .grad_norm = gnorm,
                                    .skipped = skipped, .tokens = t->st.tokens_seen, .tokens_per_s = tok_s,
                                    .gflops = tok_s * flops_per_token / 1e9,
                                    .eta_s = (now - t_start) / done * left};
        if ((t->has_teacher || t->cache) && kd_stats.count) {
            double kdm = kd_stats.kd_sum / (double)kd_stats.count, cem = kd_stats.ce_sum / (double)kd_stats.count;
            snprintf(kd_part, sizeof kd_part, " (%s %.4f, ce %.4f)", a->kd_loss, kdm, cem);
            snprintf(kd_json, sizeof kd_json, "\"kd\":%.6f,\"ce\":%.6f,", kdm, cem);
            rep.has_kd = 1, rep.kd = kdm, rep.ce = cem;
        }
        char line[512];
        snprintf(line, sizeof line, "step %6lld/%lld | loss %.4f%s | lr %.3e | grad norm %.3f | %.0f tok/s | %.1f GFLOP/s | ETA %s",
                 (long long)step + 1, (long long)a->steps, loss, kd_part, lr, gnorm, tok_s,
                 tok_s * flops_per_token / 1e9, eta);
        rep.line = line;
        if (a->callbacks.step && root) a->callbacks.step(&rep, a->callbacks.user);
        char mix_json[1024] = "", dist_json[160] = "";
        if (t->mix) mixture_rows_json(t->mix, domain_rows, mix_json, sizeof mix_json);
        if (R > 1)
            snprintf(dist_json, sizeof dist_json, ",\"ranks\":%d,\"backward_s\":%.4f,\"allreduce_s\":%.4f,\"allreduce_wait_s\":%.4f",
                     R, t->bwd_s, t->comm_span_s, t->comm_wait_s);
        if (root)
            ML_TRY(metrics_line(t,
                                "{\"step\":%lld,\"loss\":%.6f,%s%s\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%lld,\"tokens_per_s\":%.1f,"
                                "\"gflops\":%.2f,\"skipped\":%s%s}\n",
                                (long long)step + 1, loss, kd_json, mix_json, lr, gnorm, (long long)t->st.tokens_seen, tok_s,
                                tok_s * flops_per_token / 1e9, skipped ? "true" : "false", dist_json));
        int last = step + 1 == a->steps;
        if (t->has_val && ((a->eval_every > 0 && (step + 1) % a->eval_every == 0) || last)) {
            double vl;
            ML_TRY(evaluate(t, a, &vl));
            if (root) {
                ml_log(ML_LOG_INFO, "eval  step %lld | val loss %.4f | ppl %.2f", (long long)step + 1, vl, exp(vl));
                if (a->callbacks.eval) a->callbacks.eval(step + 1, vl, a->callbacks.user);
                ML_TRY(metrics_line(t, "{\"step\":%lld,\"val_loss\":%.6f,\"val_ppl\":%.4f}\n", (long long)step + 1, vl,
                                    exp(vl)));
            }
        }
        if (last || (a->ckpt_every > 0 && (step + 1) % a->ckpt_every == 0)) ML_TRY(save(t, a, step + 1));
        if (a->stop_after > 0 && step + 1 == a->stop_after && !last) {
            ML_TRY(save(t, a, step + 1));
            if (root)
                ml_log(ML_LOG_INFO, "stopped after step %lld as asked; resume with --resume %s/ckpt_%08lld.h5", (long long)step + 1,
                   a->out_dir, (long long)step + 1);
            return ML_OK;
        }
        if (stop && !last) { /* a stop on any rank stops every rank after the same step */
            ML_TRY(save(t, a, step + 1));
            if (root)
                ml_log(ML_LOG_INFO, "interrupted: checkpoint written at step %lld in %s (resume with --resume)",
                   (long long)step + 1, a->out_dir);
            return ml_fail(ML_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint saved", (long long)step + 1);
        }
    }
    return ML_OK;
}

/* Restore into an optimizer over params[lo, lo + o->num_floats) (all of them, or a ZeRO-1 shard). */
static ml_status optimizer_restore_from(ml_optimizer *o, ml_train_state *st, const char *path, size_t lo) {
    const char *kind = ml_optim_kind_name(o->cfg.kind);
    if (!st->optimizer[0]) return ml_fail(ML_ERR_FORMAT, "%s holds no optimizer state to resume from", path);
    if (!ml_optim_find(st->optimizer, NULL))
        return ml_fail(ML_ERR_UNSUPPORTED, "%s was trained with optimizer '%s', which this build does not know (%s)",
                       path, st->optimizer, ml_optim_names());
    if (strcmp(st->optimizer, kind) != 0)
        return ml_fail(ML_ERR_ARG, "checkpoint was trained with %s, not %s: resume needs the same optimizer",
                       st->optimizer, kind);
    /* the state groups must be exactly those the registry lists for this configuration */
    const char *want[ML_OPTIM_MAX_STATE];
    int n_want = ml_optim_state_names(&o->cfg, want), same = n_want == st->n_optim_state;
    for (int i = 0; same && i < n_want; i++) same = !strcmp(want[i], st->optim_state_name[i]);
    if (!same) {
        char have[256] = "", need[256] = "";
        for (int i = 0; i < st->n_optim_state; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", st->optim_state_name[i]);
        for (int i = 0; i < n_want; i++)
            snprintf(need + strlen(need), sizeof need - strlen(need), "%s%s", i ? ", " : "", want[i]);
        return ml_fail(ML_ERR_FORMAT, "%s holds %s state groups [%s], but this run's %s keeps [%s]", path, st->optimizer,
                       have, kind, need);
    }
    for (int i = 0; i < n_want; i++) {
        const char *name;
        float *dst = ml_optim_state(o, i, &name);
        memcpy(dst, st->optim_state[i] + lo, o->num_floats * sizeof(float));
    }
    o->t = st->optimizer_step;
    /* copied: release the loaded arrays (later saves borrow the optimizer's own state) */
    if (st->owns_optim_state)
        for (int j = 0; j < st->n_optim_state; j++) free(st->optim_state[j]);
    st->n_optim_state = 0;
    st->owns_optim_state = 0;
    return ML_OK;
}

ml_status ml_optimizer_restore(ml_optimizer *o, ml_train_state *st, const char *path) {
    return optimizer_restore_from(o, st, path, 0);
}

/* ---------------------------------------------------------------- setup of a data-parallel run */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

/* What every rank must agree on: the run arguments, the size of every data file, the weights. */
static ml_status check_ranks_agree(trainer *t, const ml_train_args *a) {
    uint64_t h = fnv(1469598103934665603ull, t->args_json, strlen(t->args_json));
    for (int i = 0; i < a->n_data; i++) {
        struct stat sb;
        int64_t sz = stat(a->data[i], &sb) == 0 ? (int64_t)sb.st_size : -1;
        h = fnv(h, &sz, sizeof sz);
    }
    uint64_t hw = 1469598103934665603ull; /* the weights, word by word (fast enough once per run) */
    const uint64_t *w = (const uint64_t *)t->model.param_arena.base;
    for (size_t i = 0; i < t->model.param_arena.capacity / 2; i++) hw = (hw ^ w[i]) * 1099511628211ull;
    uint64_t mine[2] = {h, hw}, *all = malloc(sizeof mine * (size_t)t->ranks);
    if (!all) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = ml_dist_allgather(mine, all, sizeof mine, "the check that all ranks agree");
    int bad_args = -1, bad_w = -1;
    for (int r = 1; s == ML_OK && r < t->ranks; r++) {
        if (bad_args < 0 && all[2 * r] != all[0]) bad_args = r;
        if (bad_w < 0 && all[2 * r + 1] != all[1]) bad_w = r;
    }
    free(all);
    ML_TRY(s);
    if (bad_args < 0 && bad_w < 0) return ML_OK;
    /* say what differs: rank 0's arguments go to every rank, each names its first differing key */
    int64_t len = (int64_t)strlen(t->args_json) + 1;
    ML_TRY(ml_dist_bcast(&len, sizeof len, 0, "the check that all ranks agree"));
    char *ref = malloc((size_t)len);
    if (!ref) return ml_fail(ML_ERR_NOMEM, "out of memory");
    if (t->rank == 0) memcpy(ref, t->args_json, (size_t)len);
    s = ml_dist_bcast(ref, (size_t)len, 0, "the check that all ranks agree");
    ml_status mine_s = ML_OK;
    if (s == ML_OK && t->rank == bad_args) {
        cJSON *x = cJSON_Parse(ref), *y = cJSON_Parse(t->args_json), *e;
        char diff[300] = "";
        cJSON_ArrayForEach(e, y) {
            cJSON *o = cJSON_GetObjectItemCaseSensitive(x, e->string);
            char *pe = cJSON_PrintUnformatted(e), *po = o ? cJSON_PrintUnformatted(o) : NULL;
            int differ = !po || strcmp(pe, po) != 0;
            if (differ) snprintf(diff, sizeof diff, "%s is %.100s here, %.100s on rank 0", e->string, pe, po ? po : "unset");
            free(pe), free(po);
            if (differ) break;
        }
        cJSON_Delete(x), cJSON_Delete(y);
        mine_s = ml_fail(ML_ERR_ARG, "run arguments or data differ from rank 0's (%s): start every rank with the same "
                                     "command and the same files", diff[0] ? diff : "a data file's size");
    } else if (s == ML_OK && t->rank == bad_w && bad_args < 0) {
        mine_s = ml_fail(ML_ERR_ARG, "the starting weights differ from rank 0's: every rank must load the same checkpoint");
    }
    free(ref);
    ML_TRY(s);
    return ml_dist_agree(mine_s, "the check that all ranks agree");
}

/* Buckets of the gradient array, from its end (ready first: the head, the last block) to the embedding,
 * cut at parameter starts once a bucket holds bucket_floats; each starts when its earliest parameter is
 * final (model->grad_ready levels: num_layers for the final norm and LM head, the block index, -1 for
 * the embedding). */
static ml_status plan_buckets(trainer *t, size_t bucket_floats, int deterministic) {
    const ml_model *m = &t->model;
    const int L = m->cfg.num_layers;
    const size_t n = m->grad_arena.capacity;
    t->buckets = malloc(sizeof *t->buckets * (size_t)(m->n_params + 1));
    t->bucket_level = malloc(sizeof(int) * (size_t)(m->n_params + 1));
    t->bucket_started = calloc((size_t)m->n_params + 1, 1);
    int *order = malloc(sizeof(int) * (size_t)m->n_params);
    if (!t->buckets || !t->bucket_level || !t->bucket_started || !order) {
        free(order);
        return ml_fail(ML_ERR_NOMEM, "out of memory planning gradient buckets");
    }
    for (int i = 0; i < m->n_params; i++) order[i] = i;
    for (int i = 1; i < m->n_params; i++) /* by offset, descending */
        for (int j = i; j > 0 && m->params[order[j]].offset > m->params[order[j - 1]].offset; j--) {
            int x = order[j];
            order[j] = order[j - 1], order[j - 1] = x;
        }
    size_t hi = n;
    int level = L, nb = 0;
    for (int k = 0; k < m->n_params; k++) {
        const ml_param *p = &m->params[order[k]];
        int pl = p->kind == ML_P_EMBED ? -1 : p->layer >= 0 ? p->layer : L;
        if (pl < level) level = pl;
        size_t lo = k == m->n_params - 1 ? 0 : p->offset;
        if (hi - lo >= bucket_floats || k == m->n_params - 1) {
            t->buckets[nb] = (ml_dist_bucket){lo, hi - lo};
            t->bucket_level[nb++] = level;
            hi = lo;
            level = L;
        }
    }
    free(order);
    t->n_buckets = nb;
    return ml_dist_reducer_create(&t->reducer, m->grad_arena.base, n, t->buckets, nb, deterministic);
}

/* ZeRO-1 parts: rank r updates params[part_off[r], part_off[r] + part_cnt[r]), cut at multiples of 64. */
static ml_status plan_shards(trainer *t) {
    const size_t n = t->model.param_arena.capacity, R = (size_t)t->ranks;
    t->part_cnt = malloc(sizeof(size_t) * R);
    t->part_off = malloc(sizeof(size_t) * R);
    if (!t->part_cnt || !t->part_off) return ml_fail(ML_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < R; r++) {
        size_t lo = (n * r / R) & ~(size_t)63, hi = r + 1 == R ? n : (n * (r + 1) / R) & ~(size_t)63;
        t->part_off[r] = lo, t->part_cnt[r] = hi - lo;
    }
    t->shard_lo = t->part_off[t->rank];
    t->shard_hi = t->shard_lo + t->part_cnt[t->rank];
    return ML_OK;
}

/* The optimizer over this rank's shard: the model's segments cut to [shard_lo, shard_hi), shifted. */
static ml_status optimizer_for_shard(trainer *t, const ml_optim_config *cfg) {
    const ml_model *m = &t->model;
    ml_optim_segment *segs = malloc(sizeof *segs * (size_t)m->n_params);
    if (!segs) return ml_fail(ML_ERR_NOMEM, "out of memory");
    int ns = 0;
    for (int i = 0; i < m->n_params; i++) {
        size_t lo = m->params[i].offset, hi = lo + m->params[i].numel;
        if (lo < t->shard_lo) lo = t->shard_lo;
        if (hi > t->shard_hi) hi = t->shard_hi;
        if (lo < hi) segs[ns++] = (ml_optim_segment){lo - t->shard_lo, hi - lo, m->params[i].weight_decay};
    }
    ml_status s = ml_optim_create(&t->opt, cfg, segs, ns, t->shard_hi - t->shard_lo, NULL);
    free(segs);
    return s;
}

/* Resuming on another number of ranks: the global batch (ranks x grad-accum micro-batches) must stay
 * the checkpoint's; an unchanged --grad-accum is recomputed for the new number of ranks. */
static ml_status resume_rule(trainer *t, ml_train_args *a) {
    int ranks0 = 1, accum0 = a->grad_accum;
    cJSON *o = t->st.args_json ? cJSON_Parse(t->st.args_json) : NULL;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "ranks"), *g = cJSON_GetObjectItemCaseSensitive(o, "grad_accum");
    if (cJSON_IsNumber(r)) ranks0 = (int)r->valuedouble;
    if (cJSON_IsNumber(g)) accum0 = (int)g->valuedouble;
    cJSON_Delete(o);
    const int64_t global0 = (int64_t)ranks0 * accum0, global = (int64_t)t->ranks * a->grad_accum;
    if (global == global0) return ML_OK;
    if (a->grad_accum == accum0 && global0 % t->ranks == 0) {
        a->grad_accum = (int)(global0 / t->ranks);
        if (t->rank == 0)
            ml_log(ML_LOG_INFO, "checkpoint made by %d rank(s) x %d micro-batches: %d rank(s) x %d keep the global batch",
                   ranks0, accum0, t->ranks, a->grad_accum);
        return ML_OK;
    }
    return ml_fail(ML_ERR_ARG, "the checkpoint's step is %d rank(s) x %d micro-batches = %lld; %d rank(s) x --grad-accum %d "
                               "= %lld: the global batch must stay the same (use --grad-accum %lld/%d)",
                   ranks0, accum0, (long long)global0, t->ranks, a->grad_accum, (long long)global, (long long)global0,
                   t->ranks);
}

ml_status ml_train(const ml_train_args *args) {
    ML_TRY(ml_dist_init());
    if (args->dist_timeout > 0) ml_dist_set_timeout(args->dist_timeout);
    /* the optimizer's own weight decay unless one was set; the run arguments store the value used */
    ml_train_args resolved = *args;
    const ml_train_args *a = &resolved;
    if (args->qat && !args->no_self_distill && !args->teacher && !args->cache && args->init_ckpt) {
        resolved.teacher = args->init_ckpt; /* QAT self-distillation: the full-precision --init model teaches */
        resolved.teacher_latent = 1;
    }
    if (isnan(resolved.weight_decay)) {
        ml_optim_kind kind;
        ml_status s = ml_optim_kind_parse(resolved.optim, &kind);
        if (s != ML_OK) return a->resume_ckpt ? ml_fail_context(s, "resuming %s", a->resume_ckpt) : s;
        resolved.weight_decay = (float)ml_optim_def_of(kind)->default_weight_decay;
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
    /* a writer killed while saving (kill -9, power loss) left ckpt_*.h5.tmp.PID behind */
    int stale = 0;
    ML_TRY(ml_atomic_remove_stale(a->out_dir, "ckpt_", &stale));
    if (stale) ml_log(ML_LOG_INFO, "removed %d temporary checkpoint file(s) of a dead writer in %s", stale, a->out_dir);

    trainer t;
    memset(&t, 0, sizeof t);
    t.rank = ml_dist_rank();
    t.ranks = ml_dist_size();
    int agreed = 0; /* past the point where all ranks agree that setup worked */
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
        if (s == ML_OK) s = resume_rule(&t, &resolved);
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
        ml_gemm_engine engine = ML_GEMM_AUTO;
        s = ml_precision_parse(a->precision, &prec);
        if (s == ML_OK && a->gemm_engine[0]) s = ml_gemm_engine_parse(a->gemm_engine, &engine);
        if (s == ML_OK) s = ml_model_set_precision(&t.model, prec);
        if (s == ML_OK) s = ml_model_set_gemm_engine(&t.model, engine);
        if (s != ML_OK) goto done;
    }
    if (a->rope_theta > 0 && a->rope_theta != t.model.cfg.rope_theta) {
        ml_log(ML_LOG_INFO, "RoPE theta %g -> %g for this run", t.model.cfg.rope_theta, a->rope_theta);
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
        if (s != ML_OK && a->resume_ckpt) s = ml_fail_context(s, "resuming %s", a->resume_ckpt);
        if (s != ML_OK) goto done;
        ml_optim_config oc = ml_optim_defaults(kind);
        oc.beta1 = a->beta1;
        oc.beta2 = a->beta2;
        oc.eps = a->eps;
        oc.weight_decay = a->weight_decay; /* resolved above: the optimizer's default unless set */
        oc.momentum = a->momentum;
        if (a->zero1 && t.ranks > 1) {
            s = plan_shards(&t);
            if (s == ML_OK) s = optimizer_for_shard(&t, &oc);
        } else {
            s = ml_optimizer_for_model(&t.opt, &t.model, &oc);
        }
        if (s != ML_OK) goto done;
        if (a->resume_ckpt) s = optimizer_restore_from(&t.opt, &t.st, a->resume_ckpt, t.shard_lo);
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
    snprintf(t.metrics_path, sizeof t.metrics_path, "%s/metrics.jsonl", a->out_dir);
    t.metrics = t.rank == 0 ? fopen(t.metrics_path, a->resume_ckpt ? "a" : "w") : NULL;
    if (!t.metrics && t.rank == 0) {
        s = ml_fail(ML_ERR_IO, "cannot open %s: %s", t.metrics_path, strerror(errno));
        goto done;
    }
    s = ml_train_args_to_json(a, &t.args_json);
    if (s == ML_OK && t.ranks > 1) { /* the number of ranks, for the resume rule */
        cJSON *o = cJSON_Parse(t.args_json);
        cJSON_AddNumberToObject(o, "ranks", t.ranks);
        char *j = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!j) s = ml_fail(ML_ERR_NOMEM, "out of memory");
        free(t.args_json);
        t.args_json = j;
    }
    if (s == ML_OK && a->deterministic_reduce && a->grad_accum > 1) {
        t.acc = malloc(t.model.grad_arena.capacity * sizeof(float));
        if (!t.acc) s = ml_fail(ML_ERR_NOMEM, "out of memory for --deterministic-reduce's accumulation buffer");
    }
    if (s == ML_OK && t.ranks > 1) {
        size_t bf = (size_t)((a->bucket_mb > 0 ? a->bucket_mb : 25.0f) * 1048576.0f / sizeof(float));
        s = plan_buckets(&t, bf ? bf : 1, a->deterministic_reduce);
        t.model.grad_ready = on_grad_ready;
        t.model.grad_ready_user = &t;
    }
    if (s != ML_OK) goto done;
    agreed = 1;
    s = ml_dist_agree(ML_OK, "setup");
    if (s == ML_OK && t.ranks > 1) s = check_ranks_agree(&t, a);
    if (s != ML_OK) goto done;
    if (t.rank == 0) {
        char blas[256];
        ml_blas_describe(blas, sizeof blas);
        ml_log(ML_LOG_INFO, "model %s: %lld parameters, %d layers x %d (%s), batch %d x %d x accum %d, %s, %s lr %.2e, %s GEMMs",
               t.model.cfg.name, (long long)ml_config_num_params(&t.model.cfg), t.model.cfg.num_layers,
               t.model.cfg.layer_repeat, t.model.cfg.tie_word_embeddings ? "tied" : "untied", a->batch, a->seq,
               a->grad_accum, a->optim, a->schedule, a->lr, ml_precision_name(t.model.precision));
        ml_log(ML_LOG_INFO, "%s", blas);
        if (t.model.precision == ML_PRECISION_BF16)
            ml_log(ML_LOG_INFO, "bf16 GEMM engine: %s%s; activations %s", ml_gemm_engine_name(t.model.gemm_engine),
                   t.model.gemm_engine == ML_GEMM_AUTO ? " (per machine and shape; bench shows which ran)" : "",
                   t.model.act16 ? "bf16 where only products or SwiGLU read them" : "fp32");
        const char *warn = ml_blas_kernel_warning();
        if (warn) ml_log(ML_LOG_INFO, "%s", warn);
        if (a->resume_ckpt) ml_log(ML_LOG_INFO, "resuming %s at step %lld", a->resume_ckpt, (long long)t.st.step);
        for (int i = 0; t.mix && i < ml_mixture_num_sources(t.mix); i++)
            ml_log(ML_LOG_INFO, "source %d: %s, weight %.3f", i, ml_mixture_domain(t.mix, i), ml_mixture_weight(t.mix, i));
        if (t.mix && a->shuffle_rows) ml_log(ML_LOG_INFO, "shuffle buffer: %d rows", a->shuffle_rows);
        if (t.model.quant[0])
            ml_log(ML_LOG_INFO, "quantization-aware training: %s, %d learned scale tensors", t.model.quant,
                   ml_quant_num_scales(&t.model));
        if (t.has_teacher)
            ml_log(ML_LOG_INFO, "distilling from %s%s (%lld parameters): %s, temperature %g, ce weight %g", a->teacher,
                   a->teacher_latent ? " (full precision: self-distillation)" : "",
                   (long long)ml_config_num_params(&t.teacher.cfg), a->kd_loss, a->temperature, a->ce_weight);
        if (t.cache)
            ml_log(ML_LOG_INFO, "distilling from the cache %s (teacher %s, top %d): %s, tail %s, temperature %g, ce weight %g",
                   a->cache, ml_logit_cache_get_info(t.cache)->teacher_name, ml_logit_cache_get_info(t.cache)->K,
                   a->kd_loss, a->kd_tail, a->temperature, a->ce_weight);
        if (t.ranks > 1)
            ml_log(ML_LOG_INFO, "data parallel: %d ranks x %d micro-batch(es) per step, %d gradient buckets%s%s", t.ranks,
                   a->grad_accum, t.n_buckets, a->deterministic_reduce ? ", deterministic reduction" : "",
                   a->zero1 ? ", ZeRO-1 optimizer shards" : "");
    }
    ml_prof_reset();
    ml_prof_enable_from_env();
    s = run(&t, a);
    if (ml_prof_enabled() && t.prof_steps > 0) {
        char table[8192];
        size_t len = 0;
        ml_prof_table(table, sizeof table, &len, t.prof_wall, t.prof_steps);
        if (len > 0 && len < sizeof table) table[len - 1] = 0; /* the last newline: the sink ends the line */
        if (t.rank == 0)
            ml_log(ML_LOG_INFO, "profile (ML_PROFILE, %lld steps, data loading included in 'other')\n%s",
                   (long long)t.prof_steps, table);
    }
    if (s == ML_OK && t.ranks > 1) { /* memory per rank: optimizer state and peak resident size */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double mem[2] = {(double)ml_optim_state_floats(&t.opt.cfg, t.opt.num_floats) * 4.0 / 1048576.0,
                         (double)ru.ru_maxrss / 1024.0};
        double *all = malloc(sizeof mem * (size_t)t.ranks);
        if (all && ml_dist_allgather(mem, all, sizeof mem, "memory report") == ML_OK && t.rank == 0) {
            char line[1024];
            size_t k = (size_t)snprintf(line, sizeof line, "memory per rank (optimizer state / peak RSS, MiB):");
            for (int r = 0; r < t.ranks && k < sizeof line; r++)
                k += (size_t)snprintf(line + k, sizeof line - k, " %d: %.0f / %.0f", r, all[2 * r], all[2 * r + 1]);
            ml_log(ML_LOG_INFO, "%s", line);
        }
        free(all);
    }
done:
    if (!agreed && t.ranks > 1) s = ml_dist_agree(s, "setup"); /* the other ranks wait for this rank's verdict */
    if (t.metrics && fclose(t.metrics) != 0 && s == ML_OK)
        s = ml_fail(ML_ERR_IO, "writing %s failed: %s", t.metrics_path, strerror(errno));
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
    ml_dist_reducer_free(t.reducer);
    free(t.buckets), free(t.bucket_level), free(t.bucket_started), free(t.acc), free(t.part_cnt), free(t.part_off);
    return s;
}
