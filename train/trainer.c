#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
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

static ml_status run(trainer *t, const ml_train_args *a) {
    ml_model *m = &t->model;
    const int64_t tokens_per_step = (int64_t)a->batch * a->seq * a->grad_accum;
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
        if (a->callbacks.step) a->callbacks.step(&rep, a->callbacks.user);
        char mix_json[1024] = "";
        if (t->mix) mixture_rows_json(t->mix, domain_rows, mix_json, sizeof mix_json);
        ML_TRY(metrics_line(t,
                            "{\"step\":%lld,\"loss\":%.6f,%s%s\"lr\":%.6e,\"grad_norm\":%.6f,\"tokens\":%lld,\"tokens_per_s\":%.1f,"
                            "\"gflops\":%.2f,\"skipped\":%s}\n",
                            (long long)step + 1, loss, kd_json, mix_json, lr, gnorm, (long long)t->st.tokens_seen, tok_s,
                            tok_s * flops_per_token / 1e9, skipped ? "true" : "false"));
        int last = step + 1 == a->steps;
        if (t->has_val && ((a->eval_every > 0 && (step + 1) % a->eval_every == 0) || last)) {
            double vl;
            ML_TRY(evaluate(t, a, &vl));
            ml_log(ML_LOG_INFO, "eval  step %lld | val loss %.4f | ppl %.2f", (long long)step + 1, vl, exp(vl));
            if (a->callbacks.eval) a->callbacks.eval(step + 1, vl, a->callbacks.user);
            ML_TRY(metrics_line(t, "{\"step\":%lld,\"val_loss\":%.6f,\"val_ppl\":%.4f}\n", (long long)step + 1, vl,
                                exp(vl)));
        }
        if (last || (a->ckpt_every > 0 && (step + 1) % a->ckpt_every == 0)) ML_TRY(save(t, a, step + 1));
        if (a->stop_after > 0 && step + 1 == a->stop_after && !last) {
            ML_TRY(save(t, a, step + 1));
            ml_log(ML_LOG_INFO, "stopped after step %lld as asked; resume with --resume %s/ckpt_%08lld.h5", (long long)step + 1,
                   a->out_dir, (long long)step + 1);
            return ML_OK;
        }
        if (ml_stop_requested() && !last) {
            ML_TRY(save(t, a, step + 1));
            ml_log(ML_LOG_INFO, "interrupted: checkpoint written at step %lld in %s (resume with --resume)",
                   (long long)step + 1, a->out_dir);
            return ml_fail(ML_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint saved", (long long)step + 1);
        }
    }
    return ML_OK;
}

ml_status ml_optimizer_restore(ml_optimizer *o, ml_train_state *st, const char *path) {
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
        memcpy(dst, st->optim_state[i], o->num_floats * sizeof(float));
    }
    o->t = st->optimizer_step;
    /* copied: release the loaded arrays (later saves borrow the optimizer's own state) */
    if (st->owns_optim_state)
        for (int j = 0; j < st->n_optim_state; j++) free(st->optim_state[j]);
    st->n_optim_state = 0;
    st->owns_optim_state = 0;
    return ML_OK;
}

ml_status ml_train(const ml_train_args *args) {
    /* the optimizer's own weight decay unless one was set; the run arguments store the value used */
    ml_train_args resolved = *args;
    const ml_train_args *a = &resolved;
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
    if (mkdir(a->out_dir, 0755) != 0 && errno != EEXIST)
        return ml_fail(ML_ERR_IO, "cannot create output directory %s: %s", a->out_dir, strerror(errno));
    /* a writer killed while saving (kill -9, power loss) left ckpt_*.h5.tmp.PID behind */
    int stale = 0;
    ML_TRY(ml_atomic_remove_stale(a->out_dir, "ckpt_", &stale));
    if (stale) ml_log(ML_LOG_INFO, "removed %d temporary checkpoint file(s) of a dead writer in %s", stale, a->out_dir);

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
    {
        ml_precision prec;
        s = ml_precision_parse(a->precision, &prec);
        if (s == ML_OK) s = ml_model_set_precision(&t.model, prec);
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
        s = ml_model_load_any(a->teacher, &t.teacher);
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
        s = ml_optimizer_for_model(&t.opt, &t.model, &oc);
        if (s != ML_OK) goto done;
        if (a->resume_ckpt) s = ml_optimizer_restore(&t.opt, &t.st, a->resume_ckpt);
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
    t.metrics = fopen(t.metrics_path, a->resume_ckpt ? "a" : "w");
    if (!t.metrics) {
        s = ml_fail(ML_ERR_IO, "cannot open %s: %s", t.metrics_path, strerror(errno));
        goto done;
    }
    s = ml_train_args_to_json(a, &t.args_json);
    if (s != ML_OK) goto done;
    {
        char blas[256];
        ml_blas_describe(blas, sizeof blas);
        ml_log(ML_LOG_INFO, "model %s: %lld parameters, %d layers x %d (%s), batch %d x %d x accum %d, %s, %s lr %.2e, %s GEMMs",
               t.model.cfg.name, (long long)ml_config_num_params(&t.model.cfg), t.model.cfg.num_layers,
               t.model.cfg.layer_repeat, t.model.cfg.tie_word_embeddings ? "tied" : "untied", a->batch, a->seq,
               a->grad_accum, a->optim, a->schedule, a->lr, ml_precision_name(t.model.precision));
        ml_log(ML_LOG_INFO, "%s", blas);
        const char *warn = ml_blas_kernel_warning();
        if (warn) ml_log(ML_LOG_INFO, "%s", warn);
        if (a->resume_ckpt) ml_log(ML_LOG_INFO, "resuming %s at step %lld", a->resume_ckpt, (long long)t.st.step);
        for (int i = 0; t.mix && i < ml_mixture_num_sources(t.mix); i++)
            ml_log(ML_LOG_INFO, "source %d: %s, weight %.3f", i, ml_mixture_domain(t.mix, i), ml_mixture_weight(t.mix, i));
        if (t.mix && a->shuffle_rows) ml_log(ML_LOG_INFO, "shuffle buffer: %d rows", a->shuffle_rows);
        if (t.has_teacher)
            ml_log(ML_LOG_INFO, "distilling from %s (%lld parameters): %s, temperature %g, ce weight %g", a->teacher,
                   (long long)ml_config_num_params(&t.teacher.cfg), a->kd_loss, a->temperature, a->ce_weight);
        if (t.cache)
            ml_log(ML_LOG_INFO, "distilling from the cache %s (teacher %s, top %d): %s, tail %s, temperature %g, ce weight %g",
                   a->cache, ml_logit_cache_get_info(t.cache)->teacher_name, ml_logit_cache_get_info(t.cache)->K,
                   a->kd_loss, a->kd_tail, a->temperature, a->ce_weight);
    }
    ml_prof_reset();
    ml_prof_enable_from_env();
    s = run(&t, a);
    if (ml_prof_enabled() && t.prof_steps > 0) {
        char table[8192];
        size_t len = 0;
        ml_prof_table(table, sizeof table, &len, t.prof_wall, t.prof_steps);
        if (len > 0 && len < sizeof table) table[len - 1] = 0; /* the last newline: the sink ends the line */
        ml_log(ML_LOG_INFO, "profile (ML_PROFILE, %lld steps, data loading included in 'other')\n%s", (long long)t.prof_steps,
               table);
    }
done:
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
    return s;
}
