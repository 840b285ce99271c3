#include "mix/mix.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/sysinfo.h"
#include "data/batch_reader.h"
#include "data/shard.h"
#include "infer/eval_loss.h"
#include "mix/influence.h"
#include "mix/mixture_file.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "train/trainer.h"

void ml_mix_args_defaults(ml_mix_args *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->method, sizeof a->method, "influence");
    a->batch = 8, a->seq = 128, a->lr = 2e-3f, a->warmup = 10;
    a->steps = 200, a->n_checkpoints = 4, a->samples = 64, a->target_batches = 4;
    a->tensors = "embed,head,last:1";
    a->floor = 0.01, a->temperature = 1.0;
    a->runs = 12, a->sim_steps = 60, a->alpha = 1.0, a->heldout = 3;
    a->seed = 1;
}

/* ---------------------------------------------------------------- Eqs. 5 and 6 */

void ml_mix_joint_influence(const double *scores, int T, int n, int C, const double *target_w, double *joint) {
    double tsum = 0, csum = 0;
    for (int t = 1; t <= T; t++) tsum += t;
    for (int c = 0; c < C; c++) csum += target_w ? target_w[c] : 1.0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                s += ((double)(t + 1) / tsum) * ((target_w ? target_w[c] : 1.0) / csum) *
                     scores[((int64_t)t * n + i) * C + c];
        joint[i] = s;
    }
}

ml_status ml_mix_domain_weights(const double *joint, const int *domain, const double *len, int n, int G, double floor,
                                double temperature, double *rho, double *w, int *collapsed) {
    if (!(temperature > 0)) return ml_fail(ML_ERR_ARG, "--temperature must be > 0");
    if (!(floor >= 0) || floor * G >= 1) return ml_fail(ML_ERR_ARG, "--floor must lie in [0, 1/%d)", G);
    double num[ML_MIX_MAX_DOMAINS] = {0}, den[ML_MIX_MAX_DOMAINS] = {0};
    for (int i = 0; i < n; i++) num[domain[i]] += joint[i] * len[i], den[domain[i]] += len[i];
    double psum = 0;
    for (int g = 0; g < G; g++) {
        rho[g] = den[g] > 0 ? num[g] / den[g] : 0;
        psum += rho[g] > 0 ? pow(rho[g], 1.0 / temperature) : 0;
    }
    *collapsed = !(psum > 0);
    for (int g = 0; g < G; g++) {
        double p = *collapsed ? 1.0 / G : (rho[g] > 0 ? pow(rho[g], 1.0 / temperature) : 0) / psum;
        w[g] = floor + (1 - G * floor) * p;
    }
    return ML_OK;
}

/* ---------------------------------------------------------------- the job */

typedef struct {
    const ml_mix_args *a;
    int G, C;
    uint64_t dom_tokens[ML_MIX_MAX_DOMAINS];
    char tokenizer[ML_SHARD_MAX_STR];
    uint32_t vocab;
    double t_start;
    /* progress over the training of one phase */
    int64_t phase_done, phase_total;
    double phase_t0;
    const char *phase;
    char run_name[128];
    int64_t run_base;
    cJSON *runs; /* table of runs for mixture.json */
} mixctx;

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long k = (long)s;
    if (k >= 3600)
        snprintf(buf, n, "%ldh%02ldm", k / 3600, (k / 60) % 60);
    else
        snprintf(buf, n, "%ldm%02lds", k / 60, k % 60);
}

static void progress(mixctx *x, double done, double total, const char *what, int final) {
    double el = ml_now_seconds() - x->phase_t0, rate = done > 0 ? done / el : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    char eta_s[32], line[512];
    fmt_eta(eta_s, sizeof eta_s, eta);
    snprintf(line, sizeof line, "mix %s: %s | %.0f/%.0f (%.0f%%) | %.2f/s | ETA %s", x->phase, what, done, total,
             total > 0 ? 100.0 * done / total : 0, rate, eta_s);
    ml_progress_report r = {.task = "mix", .done = done, .total = total, .rate = rate, .eta_s = eta, .final = final,
                            .line = line};
    ml_progress_emit(&x->a->progress, &r);
}

static void on_step(const ml_train_step_report *r, void *user) {
    mixctx *x = user;
    char what[256];
    snprintf(what, sizeof what, "%s step %lld/%lld loss %.3f", x->run_name, (long long)r->step, (long long)r->steps,
             r->loss);
    x->phase_done = x->run_base + r->step;
    progress(x, (double)x->phase_done, (double)x->phase_total, what, 0);
}

static ml_status mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ml_fail(ML_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return ml_fail(ML_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    return ML_OK;
}

/* Check every shard: opens, one tokenizer and vocab, domains with at least one window. */
static ml_status check_data(mixctx *x) {
    const ml_mix_args *a = x->a;
    const char *first = NULL;
    for (int k = 0; k < a->n_domains + a->n_targets; k++) {
        const ml_mix_set *set = k < a->n_domains ? &a->domains[k] : &a->targets[k - a->n_domains];
        const char *kind = k < a->n_domains ? "domain" : "target";
        uint64_t tokens = 0;
        if (set->n_shards < 1) return ml_fail(ML_ERR_ARG, "%s '%s' has no shards", kind, set->name);
        for (int j = 0; j < set->n_shards; j++) {
            ml_shard_reader *r;
            ml_status s = ml_shard_open(&r, set->shards[j]);
            if (s != ML_OK) return ml_fail_context(s, "%s '%s'", kind, set->name);
            const ml_shard_info *inf = ml_shard_get_info(r);
            tokens += inf->n_tokens;
            if (!first) {
                first = set->shards[j];
                snprintf(x->tokenizer, sizeof x->tokenizer, "%s", inf->tokenizer);
                x->vocab = inf->vocab_size;
            } else if (strcmp(inf->tokenizer, x->tokenizer) || inf->vocab_size != x->vocab) {
                s = ml_fail(ML_ERR_ARG, "shards of different tokenizers: %s (%s, vocab %u) and %s (%s, vocab %u)", first,
                            x->tokenizer, x->vocab, set->shards[j], inf->tokenizer, inf->vocab_size);
                ml_shard_close(r);
                return s;
            }
            ml_shard_close(r);
        }
        if (tokens < (uint64_t)a->seq + 1)
            return ml_fail(ML_ERR_ARG, "%s '%s' has %llu tokens: fewer than one window of --seq %d + 1", kind, set->name,
                           (unsigned long long)tokens, a->seq);
        if (k < a->n_domains) x->dom_tokens[k] = tokens;
    }
    return ML_OK;
}

/* "s1,s2:W:name" for each domain of weight > 0 */
static ml_status domain_specs(const ml_mix_args *a, const double *w, char **specs, int *n) {
    *n = 0;
    for (int g = 0; g < a->n_domains; g++) {
        if (!(w[g] > 0)) continue;
        size_t len = 64 + strlen(a->domains[g].name);
        for (int j = 0; j < a->domains[g].n_shards; j++) len += strlen(a->domains[g].shards[j]) + 1;
        char *s = malloc(len);
        if (!s) return ml_fail(ML_ERR_NOMEM, "out of memory");
        size_t at = 0;
        for (int j = 0; j < a->domains[g].n_shards; j++)
            at += (size_t)snprintf(s + at, len - at, "%s%s", j ? "," : "", a->domains[g].shards[j]);
        snprintf(s + at, len - at, ":%.9g:%s", w[g], a->domains[g].name);
        specs[(*n)++] = s;
    }
    return ML_OK;
}

/* Mean loss of each target at a checkpoint. */
static ml_status eval_targets(mixctx *x, const char *ckpt, double *loss) {
    const ml_mix_args *a = x->a;
    ml_model m;
    ML_TRY(ml_checkpoint_load(ckpt, &m, NULL));
    m.recompute = 1;
    ml_status s = ml_model_reserve(&m, a->batch, a->seq, a->seq);
    for (int c = 0; s == ML_OK && c < a->n_targets; c++) {
        ml_batch_reader *r;
        ml_batch_opts bo = {.B = a->batch, .T = a->seq, .pos_mode = ML_POS_ROW};
        int64_t n;
        s = ml_batch_reader_open(&r, a->targets[c].shards, a->targets[c].n_shards, &bo);
        if (s == ML_OK) s = ml_eval_loss(&m, r, a->batch, a->seq, a->target_batches, &loss[c], &n);
        ml_batch_reader_close(r);
        if (s != ML_OK) s = ml_fail_context(s, "target '%s'", a->targets[c].name);
    }
    ml_model_free(&m);
    return s;
}

static int cmp_str(const void *p, const void *q) { return strcmp(*(char *const *)p, *(char *const *)q); }

/* The checkpoints of a run directory in step order (at most max), malloc'd names. */
static int list_ckpts(const char *dir, char **out, int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    char *all[4096];
    while ((e = readdir(d)) && n < 4096) {
        size_t len = strlen(e->d_name);
        if (!strncmp(e->d_name, "ckpt_", 5) && len > 3 && !strcmp(e->d_name + len - 3, ".h5")) {
            char *p = malloc(strlen(dir) + len + 2);
            if (!p) break;
            sprintf(p, "%s/%s", dir, e->d_name);
            all[n++] = p;
        }
    }
    closedir(d);
    qsort(all, (size_t)n, sizeof *all, cmp_str);
    int k = n > max ? n - max : 0;
    for (int i = 0; i < k; i++) free(all[i]);
    for (int i = k; i < n; i++) out[i - k] = all[i];
    return n - k;
}

typedef struct {
    double loss[ML_MIX_MAX_DOMAINS]; /* per target */
    double seconds;
    int reused;
} run_result;

static ml_status write_json_atomic(const char *path, cJSON *o) {
    char *text = cJSON_Print(o);
    if (!text) return ml_fail(ML_ERR_NOMEM, "out of memory writing %s", path);
    ml_atomic_file f;
    ml_status s = ml_atomic_begin(&f, path, 1);
    if (s == ML_OK && (fputs(text, f.fp) < 0 || fputc('\n', f.fp) < 0)) {
        ml_atomic_abort(&f);
        s = ml_fail(ML_ERR_IO, "writing %s failed: %s", path, strerror(errno));
    } else if (s == ML_OK) {
        s = ml_atomic_commit(&f);
    }
    free(text);
    return s;
}

/* One training run on mixture w (normalised), cached in out/name: a finished run (result.json with the
 * same weights and steps) is read back instead of trained again. */
static ml_status train_run(mixctx *x, const char *name, const double *w, int64_t steps, int n_ckpt, run_result *res) {
    const ml_mix_args *a = x->a;
    char dir[4096], rpath[4200];
    snprintf(dir, sizeof dir, "%s/%s", a->out_dir, name);
    snprintf(rpath, sizeof rpath, "%s/result.json", dir);
    memset(res, 0, sizeof *res);
    char *text;
    size_t size;
    if (ml_read_file(rpath, &text, &size) == ML_OK) {
        cJSON *o = cJSON_Parse(text);
        free(text);
        const cJSON *jw = cJSON_GetObjectItemCaseSensitive(o, "weights"), *jl = cJSON_GetObjectItemCaseSensitive(o, "target_loss"),
                    *js = cJSON_GetObjectItemCaseSensitive(o, "steps");
        int same = o && cJSON_IsArray(jw) && cJSON_GetArraySize(jw) == x->G && cJSON_IsArray(jl) &&
                   cJSON_GetArraySize(jl) == x->C && cJSON_IsNumber(js) && (int64_t)js->valuedouble == steps;
        for (int g = 0; same && g < x->G; g++) same = fabs(cJSON_GetArrayItem(jw, g)->valuedouble - w[g]) < 1e-9;
        if (same) {
            for (int c = 0; c < x->C; c++) res->loss[c] = cJSON_GetArrayItem(jl, c)->valuedouble;
            const cJSON *sec = cJSON_GetObjectItemCaseSensitive(o, "seconds");
            res->seconds = cJSON_IsNumber(sec) ? sec->valuedouble : 0;
            res->reused = 1;
            cJSON_Delete(o);
            ml_log(ML_LOG_INFO, "mix: %s finished earlier, kept", name);
            x->run_base += steps;
            return ML_OK;
        }
        cJSON_Delete(o);
    }
    ML_TRY(mkdirs(dir));
    char *specs[ML_MIX_MAX_DOMAINS];
    int ns = 0;
    ML_TRY(domain_specs(a, w, specs, &ns));
    ml_train_args ta;
    ml_train_args_defaults(&ta);
    ta.config_path = a->init_ckpt ? NULL : a->config_path;
    ta.init_ckpt = a->init_ckpt;
    for (int i = 0; i < ns; i++) ta.sources[i] = specs[i];
    ta.n_sources = ns;
    ta.batch = a->batch, ta.seq = a->seq, ta.steps = steps, ta.lr = a->lr;
    ta.warmup = a->warmup < steps ? a->warmup : 0;
    ta.seed = a->seed;
    ta.out_dir = dir;
    ta.quiet = 1;
    ta.keep = n_ckpt + 1;
    ta.ckpt_every = n_ckpt > 1 ? steps / n_ckpt : 0;
    ta.callbacks = (ml_train_callbacks){.step = on_step, .user = x};
    snprintf(x->run_name, sizeof x->run_name, "%s", name);
    double t0 = ml_now_seconds();
    ml_status s = ml_train(&ta);
    for (int i = 0; i < ns; i++) free(specs[i]);
    if (s != ML_OK) return ml_fail_context(s, "run %s", name);
    x->run_base += steps;
    res->seconds = ml_now_seconds() - t0;
    char *ck[1];
    if (list_ckpts(dir, ck, 1) != 1) return ml_fail(ML_ERR_IO, "run %s left no checkpoint in %s", name, dir);
    s = eval_targets(x, ck[0], res->loss);
    free(ck[0]);
    ML_TRY(s);
    cJSON *o = cJSON_CreateObject();
    cJSON *jw = cJSON_AddArrayToObject(o, "weights"), *jl = cJSON_AddArrayToObject(o, "target_loss");
    for (int g = 0; g < x->G; g++) cJSON_AddItemToArray(jw, cJSON_CreateNumber(w[g]));
    for (int c = 0; c < x->C; c++) cJSON_AddItemToArray(jl, cJSON_CreateNumber(res->loss[c]));
    cJSON_AddNumberToObject(o, "steps", (double)steps);
    cJSON_AddNumberToObject(o, "seconds", res->seconds);
    s = write_json_atomic(rpath, o);
    cJSON_Delete(o);
    ML_TRY(s);
    /* the losses as the file holds them (JSON keeps ~15 digits), so a rerun that reads them back fits the same */
    if (ml_read_file(rpath, &text, &size) != ML_OK) return ml_fail(ML_ERR_IO, "cannot read back %s", rpath);
    o = cJSON_Parse(text);
    free(text);
    jl = cJSON_GetObjectItemCaseSensitive(o, "target_loss");
    for (int c = 0; c < x->C && cJSON_GetArraySize(jl) == x->C; c++) res->loss[c] = cJSON_GetArrayItem(jl, c)->valuedouble;
    cJSON_Delete(o);
    return ML_OK;
}

static cJSON *weights_obj(const mixctx *x, const double *w) {
    cJSON *o = cJSON_CreateObject();
    for (int g = 0; g < x->G; g++) cJSON_AddNumberToObject(o, x->a->domains[g].name, w[g]);
    return o;
}

static void add_run_row(mixctx *x, const char *name, const char *kind, const double *w, const run_result *r,
                        const double *pred, int heldout) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "name", name);
    cJSON_AddStringToObject(row, "kind", kind);
    cJSON_AddItemToObject(row, "weights", weights_obj(x, w));
    cJSON *l = cJSON_AddObjectToObject(row, "target_loss");
    for (int c = 0; c < x->C; c++) cJSON_AddNumberToObject(l, x->a->targets[c].name, r->loss[c]);
    if (pred) {
        cJSON *p = cJSON_AddObjectToObject(row, "predicted_loss");
        for (int c = 0; c < x->C; c++) cJSON_AddNumberToObject(p, x->a->targets[c].name, pred[c]);
        cJSON_AddBoolToObject(row, "heldout", heldout);
    }
    cJSON_AddNumberToObject(row, "seconds", r->seconds);
    cJSON_AddItemToArray(x->runs, row);
}

/* ---------------------------------------------------------------- samples */

/* `count` windows of T+1 tokens at seeded random offsets of a domain (a shard drawn by its tokens). */
static ml_status read_windows(const ml_mix_set *d, int T, int count, ml_rng *rng, int32_t *out) {
    ml_shard_reader *r[ML_MIX_MAX_SHARDS] = {0};
    uint64_t ntok[ML_MIX_MAX_SHARDS], total = 0;
    ml_status s = ML_OK;
    for (int j = 0; j < d->n_shards && s == ML_OK; j++) {
        s = ml_shard_open(&r[j], d->shards[j]);
        if (s == ML_OK) ntok[j] = ml_shard_get_info(r[j])->n_tokens, total += ntok[j] > (uint64_t)T + 1 ? ntok[j] : 0;
    }
    if (s == ML_OK && total == 0)
        s = ml_fail(ML_ERR_ARG, "domain '%s': no shard holds a window of %d tokens", d->name, T + 1);
    for (int i = 0; i < count && s == ML_OK; i++) {
        uint64_t u = ml_rng_below(rng, total);
        int j = 0;
        while (ntok[j] <= (uint64_t)T + 1 || u >= ntok[j]) {
            if (ntok[j] > (uint64_t)T + 1) u -= ntok[j];
            j++;
        }
        uint64_t off = ml_rng_below(rng, ntok[j] - (uint64_t)T);
        s = ml_shard_read_i32(r[j], out + (int64_t)i * (T + 1), off, (uint64_t)T + 1);
    }
    for (int j = 0; j < d->n_shards; j++) ml_shard_close(r[j]);
    return s == ML_OK ? s : ml_fail_context(s, "domain '%s'", d->name);
}

/* Mean target gradients at one checkpoint (into gbar[c]) on a loaded model. */
static ml_status target_grads(mixctx *x, ml_model *m, const unsigned char *sel, float **gbar, double *tloss) {
    const ml_mix_args *a = x->a;
    for (int c = 0; c < a->n_targets; c++) {
        ml_batch_reader *r;
        ml_batch_opts bo = {.B = a->batch, .T = a->seq, .pos_mode = ML_POS_ROW};
        ML_TRY(ml_batch_reader_open(&r, a->targets[c].shards, a->targets[c].n_shards, &bo));
        ml_status s = ml_influence_target_grad(m, r, a->batch, a->seq, a->target_batches, sel, gbar[c], &tloss[c], NULL);
        ml_batch_reader_close(r);
        if (s != ML_OK) return ml_fail_context(s, "target '%s'", a->targets[c].name);
    }
    return ML_OK;
}

/* Scores of n windows (T+1 tokens each) at one loaded model: scores[i*C + c]. */
static ml_status score_windows(mixctx *x, ml_model *m, const unsigned char *sel, float **gbar, const int32_t *win,
                               int n, double *scores, double *seconds, double done0, double total) {
    const ml_mix_args *a = x->a;
    const int B = a->batch, T = a->seq, C = a->n_targets;
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    double *sc = malloc(sizeof(double) * B * C);
    ml_status s = tok && tgt && sc ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    double t0 = ml_now_seconds();
    for (int i0 = 0; i0 < n && s == ML_OK; i0 += B) {
        int rows = n - i0 < B ? n - i0 : B;
        for (int r = 0; r < B; r++) {
            const int32_t *w = win + (int64_t)(i0 + (r < rows ? r : 0)) * (T + 1);
            for (int t = 0; t < T; t++) tok[r * T + t] = w[t], tgt[r * T + t] = r < rows ? w[t + 1] : -1;
        }
        ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
        s = ml_influence_score(m, &b, sel, (const float *const *)gbar, C, sc, NULL);
        for (int r = 0; r < rows && s == ML_OK; r++)
            for (int c = 0; c < C; c++) scores[(int64_t)(i0 + r) * C + c] = sc[r * C + c];
        if (total > 0) progress(x, done0 + i0 + rows, total, "scoring samples", 0);
    }
    *seconds = ml_now_seconds() - t0;
    free(tok), free(tgt), free(sc);
    return s;
}

/* Seconds of one plain training pass (forward, loss, backward) over a batch, for the cost record. */
static double train_pass_seconds(ml_model *m, const int32_t *win, int B, int T, int reps) {
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    if (!tok || !tgt) {
        free(tok), free(tgt);
        return 0;
    }
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) tok[r * T + t] = win[(int64_t)r * (T + 1) + t], tgt[r * T + t] = win[(int64_t)r * (T + 1) + t + 1];
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    double t0 = ml_now_seconds(), ls;
    int64_t n;
    for (int k = 0; k < reps; k++) {
        ml_model_zero_grad(m);
        if (ml_model_forward(m, &b) != ML_OK || ml_model_head_loss(m, &b, 1.0f / (B * T), &ls, &n) != ML_OK ||
            ml_model_backward(m, &b) != ML_OK)
            break;
    }
    double dt = (ml_now_seconds() - t0) / reps;
    free(tok), free(tgt);
    return dt;
}

/* ---------------------------------------------------------------- simulate: regression */

#define EPS_W 0.01

/* Ridge least squares: beta[P] for rows X[n][P], y[n]; the intercept (column 0) is not penalised. */
static int ridge(const double *X, const double *y, int n, int P, double lambda, double *beta) {
    double A[ML_MIX_MAX_DOMAINS + 1][ML_MIX_MAX_DOMAINS + 2];
    for (int i = 0; i < P; i++) {
        for (int j = 0; j < P; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += X[k * P + i] * X[k * P + j];
            A[i][j] = s + (i == j && i > 0 ? lambda : 0);
        }
        double s = 0;
        for (int k = 0; k < n; k++) s += X[k * P + i] * y[k];
        A[i][P] = s;
    }
    for (int c = 0; c < P; c++) { /* Gauss-Jordan with partial pivoting */
        int piv = c;
        for (int r = c + 1; r < P; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c])) piv = r;
        if (fabs(A[piv][c]) < 1e-300) return -1;
        for (int k = 0; k <= P; k++) {
            double t = A[c][k];
            A[c][k] = A[piv][k], A[piv][k] = t;
        }
        for (int r = 0; r < P; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k <= P; k++) A[r][k] -= f * A[c][k];
        }
    }
    for (int i = 0; i < P; i++) beta[i] = A[i][P] / A[i][i];
    return 0;
}

static void features(const double *w, int G, double *row) {
    row[0] = 1;
    for (int g = 0; g < G; g++) row[g + 1] = log(w[g] + EPS_W);
}

static double predict(const double *beta, const double *w, int G) {
    double row[ML_MIX_MAX_DOMAINS + 1], s = 0;
    features(w, G, row);
    for (int i = 0; i <= G; i++) s += beta[i] * row[i];
    return s;
}

/* Spearman rank correlation of two short vectors. */
static double spearman(const double *a, const double *b, int n) {
    double ra[256], rb[256];
    for (int i = 0; i < n; i++) {
        ra[i] = rb[i] = 0;
        for (int j = 0; j < n; j++) ra[i] += a[j] < a[i], rb[i] += b[j] < b[i];
    }
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += ra[i] / n, mb += rb[i] / n;
    for (int i = 0; i < n; i++) sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma), sbb += (rb[i] - mb) * (rb[i] - mb);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

/* Minimise Σ_c λ_c pred_c(w) over the simplex with w_g >= floor: exponentiated gradient. */
static void minimise(const double *beta_comb, int G, double floor, double *w) {
    for (int g = 0; g < G; g++) w[g] = 1.0 / G;
    for (int it = 0; it < 5000; it++) {
        double grad[ML_MIX_MAX_DOMAINS], mx = 0, sum = 0;
        for (int g = 0; g < G; g++) grad[g] = beta_comb[g + 1] / (w[g] + EPS_W), mx = fmax(mx, fabs(grad[g]));
        double eta = mx > 0 ? 0.05 / mx : 0;
        for (int g = 0; g < G; g++) w[g] *= exp(-eta * grad[g]), sum += w[g];
        double excess = 0, free_sum = 0;
        for (int g = 0; g < G; g++) w[g] /= sum;
        for (int g = 0; g < G; g++) /* the floor: lift, take the mass from the others */
            if (w[g] < floor) excess += floor - w[g], w[g] = floor;
            else free_sum += w[g] - floor;
        for (int g = 0; g < G && excess > 0 && free_sum > 0; g++)
            if (w[g] > floor) w[g] -= excess * (w[g] - floor) / free_sum;
    }
}

static void dirichlet(ml_rng *r, double alpha, int G, double *w) {
    double sum = 0;
    for (int g = 0; g < G; g++) { /* Marsaglia-Tsang gamma(alpha), boosted for alpha < 1 */
        double a = alpha < 1 ? alpha + 1 : alpha, d = a - 1.0 / 3, c = 1 / sqrt(9 * d), v;
        for (;;) {
            double z = ml_rng_normal(r);
            v = 1 + c * z;
            if (v <= 0) continue;
            v = v * v * v;
            double u = (ml_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
            if (u < 1 - 0.0331 * z * z * z * z || log(u) < 0.5 * z * z + d * (1 - v + log(v))) break;
        }
        double x = d * v;
        if (alpha < 1) x *= pow(((ml_rng_u64(r) >> 11) + 1) * (1.0 / 9007199254740993.0), 1 / alpha);
        w[g] = x, sum += x;
    }
    for (int g = 0; g < G; g++) w[g] /= sum;
}

/* ---------------------------------------------------------------- filter (Eq. 7) */

static ml_status run_filter(mixctx *x, const char *ckpt, const unsigned char *sel_spec_unused, cJSON *out) {
    (void)sel_spec_unused;
    const ml_mix_args *a = x->a;
    const int G = x->G, C = x->C, T = a->seq;
    ml_model m;
    ML_TRY(ml_checkpoint_load(ckpt, &m, NULL));
    ml_status s = ml_model_reserve(&m, a->batch, T, T);
    unsigned char *sel = calloc((size_t)m.n_params, 1);
    float *gbar[ML_MIX_MAX_DOMAINS] = {0};
    double tloss[ML_MIX_MAX_DOMAINS], tw[ML_MIX_MAX_DOMAINS];
    for (int c = 0; c < C; c++) tw[c] = a->targets[c].weight;
    if (!sel) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    if (s == ML_OK) s = ml_influence_select(&m, a->tensors, sel, NULL, 0);
    for (int c = 0; s == ML_OK && c < C; c++)
        if (!(gbar[c] = malloc(m.num_floats * sizeof(float)))) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    if (s == ML_OK) s = target_grads(x, &m, sel, gbar, tloss);
    char fdir[4096];
    snprintf(fdir, sizeof fdir, "%s/filtered", a->out_dir);
    if (s == ML_OK) s = mkdirs(fdir);
    ml_shard_writer *wr[ML_MIX_MAX_DOMAINS] = {0};
    char paths[ML_MIX_MAX_DOMAINS][4200];
    uint64_t kept[ML_MIX_MAX_DOMAINS] = {0}, seen[ML_MIX_MAX_DOMAINS] = {0};
    int32_t *win = NULL;
    double *sc = NULL, *joint = NULL;
    x->phase = "filter", x->phase_t0 = ml_now_seconds();
    for (int g = 0; g < G && s == ML_OK; g++) {
        snprintf(paths[g], sizeof paths[g], "%s/%s.shard", fdir, a->domains[g].name);
        s = ml_shard_writer_open(&wr[g], paths[g]);
        if (s == ML_OK) s = ml_shard_writer_set_vocab(wr[g], x->vocab);
        if (s == ML_OK) s = ml_shard_writer_set_tokenizer(wr[g], x->tokenizer);
        if (s == ML_OK) s = ml_shard_writer_set_domain(wr[g], a->domains[g].name);
        /* the domain's windows in stream order */
        ml_batch_reader *r = NULL;
        ml_batch_opts bo = {.B = 1, .T = T, .pos_mode = ML_POS_ROW};
        if (s == ML_OK) s = ml_batch_reader_open(&r, a->domains[g].shards, a->domains[g].n_shards, &bo);
        uint64_t nw = s == ML_OK ? ml_batch_reader_total_tokens(r) / ((uint64_t)T + 1) : 0;
        if (a->filter_windows > 0 && nw > (uint64_t)a->filter_windows) nw = (uint64_t)a->filter_windows;
        free(win), free(sc), free(joint);
        win = malloc(sizeof(int32_t) * (nw + 1) * (T + 1));
        sc = malloc(sizeof(double) * (nw + 1) * C);
        joint = malloc(sizeof(double) * (nw + 1));
        int32_t *in = malloc(sizeof(int32_t) * T), *tg = malloc(sizeof(int32_t) * T);
        if (s == ML_OK && (!win || !sc || !joint || !in || !tg)) s = ml_fail(ML_ERR_NOMEM, "out of memory");
        for (uint64_t i = 0; i < nw && s == ML_OK; i++) {
            s = ml_batch_reader_next(r, in, tg, NULL, NULL);
            memcpy(win + i * (T + 1), in, sizeof(int32_t) * T);
            win[i * (T + 1) + T] = tg[T - 1];
        }
        free(in), free(tg);
        ml_batch_reader_close(r);
        double secs;
        if (s == ML_OK) s = score_windows(x, &m, sel, gbar, win, (int)nw, sc, &secs, 0, (double)nw);
        if (s == ML_OK) ml_mix_joint_influence(sc, 1, (int)nw, C, tw, joint);
        for (uint64_t i = 0; i < nw && s == ML_OK; i++) {
            seen[g]++;
            if (joint[i] > 0) {
                uint32_t ids[4097];
                for (int t = 0; t <= T && t < 4097; t++) ids[t] = (uint32_t)win[i * (T + 1) + t];
                s = ml_shard_writer_append_doc(wr[g], ids, (size_t)T + 1);
                kept[g]++;
            }
        }
        if (s == ML_OK && kept[g] == 0)
            s = ml_fail(ML_ERR_ARG, "filter: no window of domain '%s' has positive influence", a->domains[g].name);
        if (s != ML_OK) s = ml_fail_context(s, "filtering domain '%s'", a->domains[g].name);
    }
    /* all or nothing: commit only when every domain is done; undo committed ones on a failed close */
    int committed = 0;
    for (int g = 0; g < G && s == ML_OK; g++) {
        s = ml_shard_writer_close(wr[g]);
        wr[g] = NULL;
        if (s == ML_OK) committed = g + 1;
    }
    if (s != ML_OK) {
        for (int g = 0; g < G; g++)
            if (wr[g]) ml_shard_writer_abort(wr[g]);
        for (int g = 0; g < committed; g++) unlink(paths[g]);
    } else {
        cJSON *f = cJSON_AddArrayToObject(out, "filter");
        for (int g = 0; g < G; g++) {
            cJSON *row = cJSON_CreateObject();
            char rel[4096];
            cJSON_AddStringToObject(row, "domain", a->domains[g].name);
            if (ml_mix_relpath(paths[g], a->out_dir, rel, sizeof rel) == ML_OK) cJSON_AddStringToObject(row, "shard", rel);
            cJSON_AddNumberToObject(row, "windows", (double)seen[g]);
            cJSON_AddNumberToObject(row, "kept", (double)kept[g]);
            cJSON_AddItemToArray(f, row);
            ml_log(ML_LOG_INFO, "mix filter: %s keeps %llu of %llu windows -> %s", a->domains[g].name,
                   (unsigned long long)kept[g], (unsigned long long)seen[g], paths[g]);
        }
    }
    free(win), free(sc), free(joint), free(sel);
    for (int c = 0; c < C; c++) free(gbar[c]);
    ml_model_free(&m);
    return s;
}

/* ---------------------------------------------------------------- methods */

static ml_status method_influence(mixctx *x, cJSON *out, double *w, char *last_ckpt, size_t last_n) {
    const ml_mix_args *a = x->a;
    const int G = x->G, C = x->C, T = a->seq, S = a->samples;
    char *ck[ML_MIX_MAX_CKPTS] = {0};
    int nck = 0;
    if (a->n_ckpts > 0) {
        for (int i = 0; i < a->n_ckpts; i++) ck[nck++] = strdup(a->ckpts[i]);
    } else {
        if (a->n_checkpoints < 1 || a->n_checkpoints > ML_MIX_MAX_CKPTS || a->steps < a->n_checkpoints)
            return ml_fail(ML_ERR_ARG, "--checkpoints must lie in [1, min(--steps, %d)]", ML_MIX_MAX_CKPTS);
        double uni[ML_MIX_MAX_DOMAINS];
        for (int g = 0; g < G; g++) uni[g] = 1.0 / G;
        run_result r;
        x->phase = "proxy", x->phase_t0 = ml_now_seconds(), x->phase_total = a->steps, x->run_base = 0;
        ML_TRY(train_run(x, "proxy", uni, a->steps, a->n_checkpoints, &r));
        add_run_row(x, "proxy", "proxy (uniform)", uni, &r, NULL, 0);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/proxy", a->out_dir);
        nck = list_ckpts(dir, ck, a->n_checkpoints);
        if (nck < a->n_checkpoints)
            return ml_fail(ML_ERR_IO, "proxy run in %s holds %d checkpoints, %d wanted", dir, nck, a->n_checkpoints);
    }
    snprintf(last_ckpt, last_n, "%s", ck[nck - 1]);
    /* samples: S windows per domain, seeded */
    const int n = G * S;
    int32_t *win = malloc(sizeof(int32_t) * (size_t)n * (T + 1));
    double *scores = malloc(sizeof(double) * (size_t)nck * n * C), *joint = malloc(sizeof(double) * n),
           *len = malloc(sizeof(double) * n);
    int *dom = malloc(sizeof(int) * n);
    ml_status s = win && scores && joint && len && dom ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory for %d samples", n);
    ml_rng rng;
    ml_rng_seed(&rng, a->seed ^ 0x6d69786d6978ull);
    for (int g = 0; g < G && s == ML_OK; g++) {
        s = read_windows(&a->domains[g], T, S, &rng, win + (int64_t)g * S * (T + 1));
        for (int i = 0; i < S; i++) dom[g * S + i] = g, len[g * S + i] = T;
    }
    double score_s = 0, pass_s = 0, tl[ML_MIX_MAX_CKPTS][ML_MIX_MAX_DOMAINS];
    char desc[256] = "";
    x->phase = "influence", x->phase_t0 = ml_now_seconds();
    for (int t = 0; t < nck && s == ML_OK; t++) {
        ml_model m;
        s = ml_checkpoint_load(ck[t], &m, NULL);
        if (s != ML_OK) break;
        unsigned char *sel = calloc((size_t)m.n_params, 1);
        float *gbar[ML_MIX_MAX_DOMAINS] = {0};
        s = ml_model_reserve(&m, a->batch, T, T);
        if (s == ML_OK && !sel) s = ml_fail(ML_ERR_NOMEM, "out of memory");
        if (s == ML_OK) s = ml_influence_select(&m, a->tensors, sel, desc, sizeof desc);
        for (int c = 0; s == ML_OK && c < C; c++)
            if (!(gbar[c] = malloc(m.num_floats * sizeof(float)))) s = ml_fail(ML_ERR_NOMEM, "out of memory");
        if (s == ML_OK) s = target_grads(x, &m, sel, gbar, tl[t]);
        double secs = 0;
        if (s == ML_OK)
            s = score_windows(x, &m, sel, gbar, win, n, scores + (int64_t)t * n * C, &secs, (double)t * n,
                              (double)nck * n);
        score_s += secs;
        if (s == ML_OK && t == 0 && n >= a->batch) pass_s = train_pass_seconds(&m, win, a->batch, T, 2) * ((double)n / a->batch);
        if (s != ML_OK) s = ml_fail_context(s, "checkpoint %s", ck[t]);
        for (int c = 0; c < C; c++) free(gbar[c]);
        free(sel);
        ml_model_free(&m);
    }
    double tw[ML_MIX_MAX_DOMAINS], rho[ML_MIX_MAX_DOMAINS];
    int collapsed = 0;
    for (int c = 0; c < C; c++) tw[c] = a->targets[c].weight;
    if (s == ML_OK) {
        progress(x, (double)nck * n, (double)nck * n, "scoring samples", 1);
        ml_mix_joint_influence(scores, nck, n, C, tw, joint);
        s = ml_mix_domain_weights(joint, dom, len, n, G, a->floor, a->temperature, rho, w, &collapsed);
    }
    if (s == ML_OK) {
        if (collapsed) ml_log(ML_LOG_WARN, "mix: no domain has positive utility; weights fall back to uniform");
        cJSON *inf = cJSON_AddObjectToObject(out, "influence");
        cJSON_AddStringToObject(inf, "tensors", a->tensors);
        cJSON_AddStringToObject(inf, "tensors_selected", desc);
        cJSON_AddBoolToObject(inf, "collapsed", collapsed);
        cJSON *cks = cJSON_AddArrayToObject(inf, "checkpoints");
        for (int t = 0; t < nck; t++) {
            cJSON *row = cJSON_CreateObject();
            char rel[4096];
            if (ml_mix_relpath(ck[t], a->out_dir, rel, sizeof rel) == ML_OK) cJSON_AddStringToObject(row, "path", rel);
            double tsum = nck * (nck + 1) / 2.0;
            cJSON_AddNumberToObject(row, "alpha", (t + 1) / tsum);
            cJSON *l = cJSON_AddObjectToObject(row, "target_loss");
            for (int c = 0; c < C; c++) cJSON_AddNumberToObject(l, a->targets[c].name, tl[t][c]);
            /* per domain and target: mean score at this checkpoint */
            cJSON *pd = cJSON_AddObjectToObject(row, "mean_influence");
            for (int g = 0; g < G; g++) {
                cJSON *o = cJSON_AddObjectToObject(pd, a->domains[g].name);
                for (int c = 0; c < C; c++) {
                    double m = 0;
                    for (int i = 0; i < S; i++) m += scores[((int64_t)t * n + g * S + i) * C + c] / S;
                    cJSON_AddNumberToObject(o, a->targets[c].name, m);
                }
            }
            cJSON_AddItemToArray(cks, row);
        }
        cJSON *ut = cJSON_AddObjectToObject(inf, "utility");
        for (int g = 0; g < G; g++) cJSON_AddNumberToObject(ut, a->domains[g].name, rho[g]);
        cJSON *cost = cJSON_AddObjectToObject(inf, "cost");
        cJSON_AddNumberToObject(cost, "samples_scored", (double)n * nck);
        cJSON_AddNumberToObject(cost, "scoring_seconds", score_s);
        cJSON_AddNumberToObject(cost, "scoring_seconds_per_sample", score_s / ((double)n * nck));
        cJSON_AddNumberToObject(cost, "train_pass_seconds_per_sample", pass_s / n);
        cJSON_AddNumberToObject(cost, "ratio_to_train_pass", pass_s > 0 ? (score_s / nck) / pass_s : 0);
        ml_log(ML_LOG_INFO, "mix: scored %d samples x %d checkpoints in %.1f s (%.2fx a training pass over them); %s",
               n, nck, score_s, pass_s > 0 ? (score_s / nck) / pass_s : 0, desc);
    }
    for (int t = 0; t < nck; t++) free(ck[t]);
    free(win), free(scores), free(joint), free(len), free(dom);
    return s;
}

static ml_status method_simulate(mixctx *x, cJSON *out, double *w) {
    const ml_mix_args *a = x->a;
    const int G = x->G, C = x->C, K = a->runs, H = a->heldout;
    if (K < G + 2 || K > 256) return ml_fail(ML_ERR_ARG, "--runs must lie in [domains + 2 = %d, 256]", G + 2);
    if (H < 0 || K - H < G + 1) return ml_fail(ML_ERR_ARG, "--heldout %d leaves fewer fitted runs than domains + 1", H);
    if (!(a->alpha > 0)) return ml_fail(ML_ERR_ARG, "--alpha must be > 0");
    double *W = malloc(sizeof(double) * K * G), *L = malloc(sizeof(double) * K * C), *X = malloc(sizeof(double) * K * (G + 1));
    if (!W || !L || !X) {
        free(W), free(L), free(X);
        return ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    ml_rng rng;
    ml_rng_seed(&rng, a->seed ^ 0x73696d756c617465ull);
    for (int k = 0; k < K; k++) dirichlet(&rng, a->alpha, G, W + k * G);
    ml_status s = ML_OK;
    x->phase = "simulate", x->phase_t0 = ml_now_seconds(), x->phase_total = (int64_t)K * a->sim_steps, x->run_base = 0;
    run_result rr[256];
    for (int k = 0; k < K && s == ML_OK; k++) {
        char name[64];
        snprintf(name, sizeof name, "sim/run_%03d", k);
        s = train_run(x, name, W + k * G, a->sim_steps, 1, &rr[k]);
        for (int c = 0; c < C; c++) L[k * C + c] = rr[k].loss[c];
        features(W + k * G, G, X + k * (G + 1));
        if (rr[k].reused) x->phase_t0 = ml_now_seconds(), x->phase_total -= a->sim_steps, x->run_base -= a->sim_steps;
    }
    double beta[ML_MIX_MAX_DOMAINS][ML_MIX_MAX_DOMAINS + 1], comb[ML_MIX_MAX_DOMAINS + 1] = {0}, tsum = 0;
    const double lambda = 1e-3;
    cJSON *reg = s == ML_OK ? cJSON_AddObjectToObject(out, "regression") : NULL;
    if (reg) {
        cJSON_AddStringToObject(reg, "model", "target loss = a + sum_g b_g log(w_g + 0.01), ridge 1e-3, one fit per target");
        cJSON_AddNumberToObject(reg, "runs", K);
        cJSON_AddNumberToObject(reg, "heldout_runs", H);
    }
    double yk[256], pk[256];
    cJSON *fits = reg ? cJSON_AddObjectToObject(reg, "fit") : NULL;
    double pred_all[256][ML_MIX_MAX_DOMAINS];
    for (int k = 0; k < 256; k++)
        for (int c = 0; c < ML_MIX_MAX_DOMAINS; c++) pred_all[k][c] = NAN;
    for (int c = 0; c < C && s == ML_OK; c++) {
        double b[ML_MIX_MAX_DOMAINS + 1], y[256];
        for (int k = 0; k < K; k++) y[k] = L[k * C + c];
        cJSON *f = cJSON_AddObjectToObject(fits, a->targets[c].name);
        if (H > 0 && ridge(X, y, K - H, G + 1, lambda, b) == 0) { /* the report: fit on K-H, test on H */
            double mae = 0, se = 0, se0 = 0, mean = 0;
            for (int k = 0; k < K - H; k++) mean += y[k] / (K - H);
            for (int k = K - H; k < K; k++) {
                double p = predict(b, W + k * G, G);
                mae += fabs(p - y[k]) / H, se += (p - y[k]) * (p - y[k]) / H, se0 += (mean - y[k]) * (mean - y[k]) / H;
                yk[k - (K - H)] = y[k], pk[k - (K - H)] = p;
            }
            cJSON_AddNumberToObject(f, "heldout_mae", mae);
            cJSON_AddNumberToObject(f, "heldout_rmse", sqrt(se));
            cJSON_AddNumberToObject(f, "heldout_rmse_of_mean", sqrt(se0));
            cJSON_AddNumberToObject(f, "heldout_spearman", spearman(yk, pk, H));
            ml_log(ML_LOG_INFO, "mix: regression for target %s on %d held-out runs: MAE %.4f, RMSE %.4f (mean predictor %.4f), Spearman %.2f",
                   a->targets[c].name, H, mae, sqrt(se), sqrt(se0), spearman(yk, pk, H));
            for (int k = K - H; k < K; k++) pred_all[k][c] = predict(b, W + k * G, G);
        }
        if (ridge(X, y, K, G + 1, lambda, beta[c]) != 0) {
            s = ml_fail(ML_ERR_ARG, "simulate: the regression for target '%s' is singular", a->targets[c].name);
            break;
        }
        for (int k = 0; k < K - H; k++) pred_all[k][c] = predict(beta[c], W + k * G, G);
        double r2n = 0, r2d = 0, my = 0;
        for (int k = 0; k < K; k++) my += y[k] / K;
        for (int k = 0; k < K; k++) {
            double p = predict(beta[c], W + k * G, G);
            r2n += (p - y[k]) * (p - y[k]), r2d += (y[k] - my) * (y[k] - my);
        }
        cJSON_AddNumberToObject(f, "train_r2_all_runs", r2d > 0 ? 1 - r2n / r2d : 0);
        cJSON *co = cJSON_AddObjectToObject(f, "coefficients");
        cJSON_AddNumberToObject(co, "intercept", beta[c][0]);
        for (int g = 0; g < G; g++) cJSON_AddNumberToObject(co, a->domains[g].name, beta[c][g + 1]);
        tsum += a->targets[c].weight;
    }
    if (s == ML_OK) {
        for (int c = 0; c < C; c++)
            for (int i = 0; i <= G; i++) comb[i] += a->targets[c].weight / tsum * beta[c][i];
        minimise(comb, G, a->floor, w);
        cJSON_AddNumberToObject(reg, "predicted_target_loss", predict(comb, w, G));
        for (int k = 0; k < K; k++) {
            char name[64];
            snprintf(name, sizeof name, "sim/run_%03d", k);
            add_run_row(x, name, "simulate", W + k * G, &rr[k], pred_all[k], k >= K - H);
        }
    }
    free(W), free(L), free(X);
    return s;
}

static ml_status method_loo(mixctx *x, cJSON *out) {
    const ml_mix_args *a = x->a;
    const int G = x->G, C = x->C;
    double uni[ML_MIX_MAX_DOMAINS];
    for (int g = 0; g < G; g++) uni[g] = 1.0 / G;
    x->phase = "loo", x->phase_t0 = ml_now_seconds(), x->phase_total = (int64_t)(G + 1) * a->steps, x->run_base = 0;
    run_result all, minus;
    ML_TRY(train_run(x, "proxy", uni, a->steps, a->n_checkpoints, &all));
    if (all.reused) x->phase_t0 = ml_now_seconds(), x->phase_total -= a->steps, x->run_base -= a->steps;
    cJSON *loo = cJSON_AddObjectToObject(out, "loo");
    cJSON_AddStringToObject(loo, "definition", "Eq. 1: loss on the target without the domain minus with it; positive = the domain helps");
    cJSON *tab = cJSON_AddObjectToObject(loo, "delta_loss");
    for (int j = 0; j < G; j++) {
        double w[ML_MIX_MAX_DOMAINS];
        for (int g = 0; g < G; g++) w[g] = g == j ? 0 : 1.0 / (G - 1);
        char name[128];
        snprintf(name, sizeof name, "loo/minus_%s", a->domains[j].name);
        ML_TRY(train_run(x, name, w, a->steps, 1, &minus));
        if (minus.reused) x->phase_t0 = ml_now_seconds(), x->phase_total -= a->steps, x->run_base -= a->steps;
        add_run_row(x, name, "loo", w, &minus, NULL, 0);
        cJSON *row = cJSON_AddObjectToObject(tab, a->domains[j].name);
        for (int c = 0; c < C; c++) cJSON_AddNumberToObject(row, a->targets[c].name, minus.loss[c] - all.loss[c]);
        char line[1024];
        size_t k = (size_t)snprintf(line, sizeof line, "mix loo: without %-10s", a->domains[j].name);
        for (int c = 0; c < C && k < sizeof line; c++)
            k += (size_t)snprintf(line + k, sizeof line - k, " | %s %+.4f", a->targets[c].name, minus.loss[c] - all.loss[c]);
        ml_log(ML_LOG_INFO, "%s", line);
    }
    return ML_OK;
}

ml_status ml_mix(const ml_mix_args *a) {
    if (!a->out_dir) return ml_fail(ML_ERR_ARG, "missing --out DIR");
    if (a->n_domains < 2 || a->n_domains > ML_MIX_MAX_DOMAINS)
        return ml_fail(ML_ERR_ARG, "give 2 to %d domains (--source NAME=SHARDS)", ML_MIX_MAX_DOMAINS);
    if (a->n_targets < 1 || a->n_targets > ML_MIX_MAX_DOMAINS) return ml_fail(ML_ERR_ARG, "give at least one --target");
    int infl = !strcmp(a->method, "influence"), sim = !strcmp(a->method, "simulate");
    if (!infl && !sim) return ml_fail(ML_ERR_ARG, "--method must be influence or simulate, not '%s'", a->method);
    int need_proxy = sim || a->loo || (infl && a->n_ckpts == 0);
    if (need_proxy && !!a->config_path + !!a->init_ckpt != 1)
        return ml_fail(ML_ERR_ARG, "give the proxy: exactly one of --config CFG or --init CKPT");
    if (a->batch < 1 || a->seq < 1 || a->seq > 4096 || a->steps < 1 || a->samples < 1 || a->target_batches < 0 ||
        a->sim_steps < 1)
        return ml_fail(ML_ERR_ARG, "--batch, --seq (<= 4096), --steps, --samples and --sim-steps must be positive");
    for (int i = 0; i < a->n_domains; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(a->domains[i].name, a->domains[j].name))
                return ml_fail(ML_ERR_ARG, "domain '%s' is given twice", a->domains[i].name);
    for (int c = 0; c < a->n_targets; c++)
        if (!(a->targets[c].weight > 0) || !isfinite(a->targets[c].weight))
            return ml_fail(ML_ERR_ARG, "target '%s' needs a weight > 0", a->targets[c].name);
    if (!(a->floor >= 0) || a->floor * a->n_domains >= 1)
        return ml_fail(ML_ERR_ARG, "--floor must lie in [0, 1/%d)", a->n_domains);
    if (!(a->temperature > 0)) return ml_fail(ML_ERR_ARG, "--temperature must be > 0");
    mixctx x = {.a = a, .G = a->n_domains, .C = a->n_targets, .t_start = ml_now_seconds()};
    ML_TRY(check_data(&x));
    ML_TRY(mkdirs(a->out_dir));
    {   /* the selection is checked before any training */
        ml_config cfg;
        ml_model m;
        ml_status s = ML_OK;
        if (a->config_path && !a->init_ckpt) {
            s = ml_config_load(&cfg, a->config_path);
            if (s == ML_OK) s = ml_model_create(&m, &cfg);
        } else {
            s = ml_checkpoint_load(a->init_ckpt ? a->init_ckpt : a->ckpts[0], &m, NULL);
        }
        ML_TRY(s);
        unsigned char *sel = calloc((size_t)m.n_params, 1);
        s = sel ? ml_influence_select(&m, a->tensors, sel, NULL, 0) : ml_fail(ML_ERR_NOMEM, "out of memory");
        if (s == ML_OK && (uint32_t)m.cfg.vocab_size < x.vocab)
            s = ml_fail(ML_ERR_CONFIG, "data vocabulary (%u, tokenizer %s) is larger than the model's (%d)", x.vocab,
                        x.tokenizer, m.cfg.vocab_size);
        free(sel);
        ml_model_free(&m);
        ML_TRY(s);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "format", "mobilellm-mixture");
    cJSON_AddNumberToObject(out, "version", 1);
    cJSON_AddStringToObject(out, "method", a->method);
    x.runs = cJSON_CreateArray();
    double w[ML_MIX_MAX_DOMAINS];
    char last_ckpt[4096] = "";
    ml_status s = infl ? method_influence(&x, out, w, last_ckpt, sizeof last_ckpt) : method_simulate(&x, out, w);
    if (s == ML_OK && a->loo) s = method_loo(&x, out);
    if (s == ML_OK && a->filter) {
        if (!last_ckpt[0]) { /* simulate: the proxy's last checkpoint (the LOO "all" run) or train it */
            double uni[ML_MIX_MAX_DOMAINS];
            run_result r;
            for (int g = 0; g < x.G; g++) uni[g] = 1.0 / x.G;
            x.phase = "proxy", x.phase_t0 = ml_now_seconds(), x.phase_total = a->steps, x.run_base = 0;
            s = train_run(&x, "proxy", uni, a->steps, a->n_checkpoints, &r);
            char dir[4096], *ck[1];
            snprintf(dir, sizeof dir, "%s/proxy", a->out_dir);
            if (s == ML_OK && list_ckpts(dir, ck, 1) == 1) snprintf(last_ckpt, sizeof last_ckpt, "%s", ck[0]), free(ck[0]);
        }
        if (s == ML_OK) s = run_filter(&x, last_ckpt, NULL, out);
    }
    if (s == ML_OK) {
        cJSON *doms = cJSON_AddArrayToObject(out, "domains");
        cJSON *ut = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(out, "influence"), "utility");
        for (int g = 0; g < x.G; g++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "name", a->domains[g].name);
            cJSON_AddNumberToObject(d, "weight", w[g]);
            cJSON_AddNumberToObject(d, "tokens", (double)x.dom_tokens[g]);
            if (ut) cJSON_AddNumberToObject(d, "utility", cJSON_GetObjectItemCaseSensitive(ut, a->domains[g].name)->valuedouble);
            cJSON *sh = cJSON_AddArrayToObject(d, "shards");
            for (int j = 0; j < a->domains[g].n_shards; j++) {
                char rel[4096];
                ml_status rs = ml_mix_relpath(a->domains[g].shards[j], a->out_dir, rel, sizeof rel);
                cJSON_AddItemToArray(sh, cJSON_CreateString(rs == ML_OK ? rel : a->domains[g].shards[j]));
            }
            cJSON_AddItemToArray(doms, d);
            ml_log(ML_LOG_INFO, "mix: %-12s weight %.4f", a->domains[g].name, w[g]);
        }
        cJSON *tg = cJSON_AddArrayToObject(out, "targets");
        for (int c = 0; c < x.C; c++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "name", a->targets[c].name);
            cJSON_AddNumberToObject(t, "weight", a->targets[c].weight);
            cJSON *sh = cJSON_AddArrayToObject(t, "shards");
            for (int j = 0; j < a->targets[c].n_shards; j++) {
                char rel[4096];
                ml_status rs = ml_mix_relpath(a->targets[c].shards[j], a->out_dir, rel, sizeof rel);
                cJSON_AddItemToArray(sh, cJSON_CreateString(rs == ML_OK ? rel : a->targets[c].shards[j]));
            }
            cJSON_AddItemToArray(tg, t);
        }
        cJSON *st = cJSON_AddObjectToObject(out, "settings");
        if (a->config_path) cJSON_AddStringToObject(st, "config", a->config_path);
        if (a->init_ckpt) cJSON_AddStringToObject(st, "init", a->init_ckpt);
        cJSON_AddNumberToObject(st, "batch", a->batch);
        cJSON_AddNumberToObject(st, "seq", a->seq);
        cJSON_AddNumberToObject(st, "lr", a->lr);
        cJSON_AddNumberToObject(st, "warmup", (double)a->warmup);
        cJSON_AddNumberToObject(st, "steps", (double)a->steps);
        cJSON_AddNumberToObject(st, "checkpoints", a->n_ckpts ? a->n_ckpts : a->n_checkpoints);
        cJSON_AddNumberToObject(st, "samples", a->samples);
        cJSON_AddNumberToObject(st, "target_batches", a->target_batches);
        cJSON_AddStringToObject(st, "tensors", a->tensors);
        cJSON_AddNumberToObject(st, "floor", a->floor);
        cJSON_AddNumberToObject(st, "temperature", a->temperature);
        cJSON_AddNumberToObject(st, "runs", a->runs);
        cJSON_AddNumberToObject(st, "sim_steps", (double)a->sim_steps);
        cJSON_AddNumberToObject(st, "alpha", a->alpha);
        cJSON_AddNumberToObject(st, "heldout", a->heldout);
        cJSON_AddNumberToObject(st, "seed", (double)a->seed);
        cJSON_AddStringToObject(st, "tokenizer", x.tokenizer);
        cJSON_AddItemToObject(out, "runs", x.runs);
        x.runs = NULL;
        cJSON_AddNumberToObject(out, "seconds", ml_now_seconds() - x.t_start);
        char path[4200];
        snprintf(path, sizeof path, "%s/mixture.json", a->out_dir);
        s = write_json_atomic(path, out);
        if (s == ML_OK) ml_log(ML_LOG_INFO, "mix: wrote %s", path);
    }
    cJSON_Delete(x.runs);
    cJSON_Delete(out);
    return s;
}
