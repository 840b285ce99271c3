#include "merge/search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/rng.h"
#include "common/sysinfo.h"
#include "infer/eval_loss.h"

static int sparsifies(ml_merge_method m) {
    return m == ML_MERGE_TIES || m == ML_MERGE_DARE_LINEAR || m == ML_MERGE_DARE_TIES || m == ML_MERGE_BREADCRUMBS ||
           m == ML_MERGE_BREADCRUMBS_TIES;
}

/* Distinct searched models, in recipe order. */
static ml_status searched_models(const ml_merge_recipe *r, char ***out, int *n) {
    char **names = calloc(ML_SEARCH_MAX_MODELS, sizeof *names);
    if (!names) return ml_fail(ML_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int s = 0; s < r->n_slices; s++) {
        const char *base = r->slices[s].base_model ? r->slices[s].base_model : r->base_model;
        for (int i = 0; i < r->slices[s].n_sources; i++) {
            const char *m = r->slices[s].sources[i].model;
            if (r->method != ML_MERGE_LINEAR && base && !strcmp(base, m)) continue;
            int seen = 0;
            for (int j = 0; j < k; j++) seen |= !strcmp(names[j], m);
            if (seen) continue;
            if (k == ML_SEARCH_MAX_MODELS) {
                for (int j = 0; j < k; j++) free(names[j]);
                free(names);
                return ml_fail(ML_ERR_UNSUPPORTED, "the search handles at most %d models", ML_SEARCH_MAX_MODELS);
            }
            names[k++] = strdup(m);
        }
    }
    *out = names;
    *n = k;
    return ML_OK;
}

static ml_status apply(ml_merge_recipe *r, char **models, int n, const ml_search_trial *t, int density) {
    for (int s = 0; s < r->n_slices; s++)
        for (int i = 0; i < r->slices[s].n_sources; i++) {
            ml_msource *src = &r->slices[s].sources[i];
            for (int j = 0; j < n; j++) {
                if (strcmp(src->model, models[j])) continue;
                ML_TRY(ml_mparams_set(&src->params, "weight", t->weight[j]));
                if (density) ML_TRY(ml_mparams_set(&src->params, "density", t->density[j]));
            }
        }
    return ML_OK;
}

/* The recipe's own weight (and density) for a model when they are scalars on its entry. */
static void initial_point(const ml_merge_recipe *r, char **models, int n, ml_search_trial *t, int density) {
    for (int j = 0; j < n; j++) {
        t->weight[j] = 1.0 / n;
        t->density[j] = density ? 0.5 : NAN;
        for (int s = 0; s < r->n_slices; s++)
            for (int i = 0; i < r->slices[s].n_sources; i++) {
                const ml_msource *src = &r->slices[s].sources[i];
                if (strcmp(src->model, models[j])) continue;
                double v;
                for (int p = 0; p < src->params.n; p++) {
                    const ml_mval *mv = &src->params.p[p].v;
                    if (mv->kind != ML_MV_NUM) continue;
                    v = mv->num;
                    if (!strcmp(src->params.p[p].name, "weight")) t->weight[j] = v;
                    if (density && !strcmp(src->params.p[p].name, "density")) t->density[j] = v;
                }
            }
    }
}

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

ml_status ml_merge_search(ml_merge_recipe *r, const ml_search_opts *o, ml_search_trial **trials_out, int *n_out,
                          int *best_out, char ***models_out, int *n_models_out) {
    *trials_out = NULL;
    *n_out = 0;
    const int density = o->search_density && sparsifies(r->method);
    if (o->search_density && !density)
        return ml_fail(ML_ERR_ARG, "merge_method %s has no density to search", ml_merge_method_name(r->method));
    if (r->method == ML_MERGE_SLERP) return ml_fail(ML_ERR_UNSUPPORTED, "the search tunes weights; slerp has none (only t)");
    if (o->n_domains < 1) return ml_fail(ML_ERR_ARG, "the search needs held-out shards of at least one domain");
    char **models = NULL;
    int nm = 0;
    ML_TRY(searched_models(r, &models, &nm));
    *models_out = models;
    *n_models_out = nm;
    if (nm == 0) return ml_fail(ML_ERR_ARG, "no model weights to search");
    const int ntr = o->trials > 0 ? o->trials : 16;
    const double wmax = o->weight_max > 0 ? o->weight_max : 1.0;
    ml_search_trial *tr = calloc((size_t)ntr, sizeof *tr);
    ml_batch_reader *readers[ML_SEARCH_MAX_DOMAINS] = {0};
    ml_merge_plan *plan = NULL;
    ml_model m;
    memset(&m, 0, sizeof m);
    ml_status s = tr ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_search_trial start;
    memset(&start, 0, sizeof start);
    initial_point(r, models, nm, &start, density);
    if (s == ML_OK) s = apply(r, models, nm, &start, density);
    if (s == ML_OK) s = ml_merge_plan_open(&plan, r);
    if (s == ML_OK) s = ml_merge_plan_preload(plan);
    if (s == ML_OK) s = ml_model_create(&m, ml_merge_plan_config(plan));
    if (s == ML_OK) {
        m.recompute = 1;
        s = ml_model_reserve(&m, o->B, o->T, o->T);
    }
    ml_batch_opts bo = {o->B, o->T, ML_POS_ROW};
    for (int d = 0; d < o->n_domains && s == ML_OK; d++) {
        s = ml_batch_reader_open(&readers[d], o->domains[d].shards, o->domains[d].n_shards, &bo);
        if (s == ML_OK && ml_batch_reader_vocab_size(readers[d]) > (uint32_t)m.cfg.vocab_size)
            s = ml_fail(ML_ERR_CONFIG, "domain %s: shards of a %u-token vocabulary, the model has %d", o->domains[d].name,
                        ml_batch_reader_vocab_size(readers[d]), m.cfg.vocab_size);
        if (s != ML_OK) s = ml_fail_context(s, "search data %s", o->domains[d].name);
    }
    ml_rng rng;
    ml_rng_seed(&rng, o->seed * 0x9E3779B97F4A7C15ull + 12345);
    int best = -1, n_random = ntr / 3 > 1 ? ntr / 3 : 1;
    double step = 0.25 * wmax;
    for (int i = 0; i < ntr && s == ML_OK; i++) {
        ml_search_trial *t = &tr[i];
        double t0 = ml_now_seconds();
        t->index = i;
        if (i == 0) {
            memcpy(t->weight, start.weight, sizeof t->weight);
            memcpy(t->density, start.density, sizeof t->density);
        } else if (i <= n_random || best < 0) {
            for (int j = 0; j < nm; j++) {
                t->weight[j] = wmax * ml_rng_uniform(&rng);
                t->density[j] = density ? 0.1 + 0.9 * ml_rng_uniform(&rng) : NAN;
            }
        } else {
            for (int j = 0; j < nm; j++) {
                t->weight[j] = clampd(tr[best].weight[j] + step * ml_rng_normal(&rng), 0.0, wmax);
                t->density[j] = density ? clampd(tr[best].density[j] + 0.5 * step / wmax * ml_rng_normal(&rng), 0.05, 1.0) : NAN;
            }
        }
        /* a linear merge with every weight zero is undefined: nudge */
        double wsum = 0;
        for (int j = 0; j < nm; j++) wsum += t->weight[j];
        if (wsum <= 1e-6)
            for (int j = 0; j < nm; j++) t->weight[j] = 1e-3;
        s = apply(r, models, nm, t, density);
        if (s == ML_OK) s = ml_merge_plan_check(plan);
        if (s == ML_OK) s = ml_merge_into_model(plan, &m);
        double num = 0, den = 0;
        for (int d = 0; d < o->n_domains && s == ML_OK; d++) {
            int64_t tokens;
            s = ml_eval_loss(&m, readers[d], o->B, o->T, o->max_batches, &t->loss[d], &tokens);
            num += o->domains[d].weight * t->loss[d];
            den += o->domains[d].weight;
        }
        if (s != ML_OK) break;
        t->objective = den > 0 ? num / den : num;
        t->seconds = ml_now_seconds() - t0;
        *n_out = i + 1;
        if (best < 0 || t->objective < tr[best].objective) best = i;
        else if (i > n_random) step *= 0.85; /* a failed perturbation shrinks the step */
        if (o->progress) o->progress(o->user, t, ntr, &tr[best], nm, (const char *const *)models, o->n_domains, o->domains);
    }
    for (int d = 0; d < o->n_domains; d++) ml_batch_reader_close(readers[d]);
    ml_model_free(&m);
    ml_merge_plan_free(plan);
    if (s == ML_OK) s = apply(r, models, nm, &tr[best], density);
    if (s != ML_OK) {
        free(tr);
        return s;
    }
    *trials_out = tr;
    *best_out = best;
    return ML_OK;
}

ml_status ml_search_write_tsv(const char *path, const ml_search_trial *t, int n, int n_models, const char *const *models,
                              int search_density, int n_domains, const ml_search_domain *domains) {
    ml_atomic_file af;
    ML_TRY(ml_atomic_begin(&af, path, 1));
    FILE *f = af.fp;
    fprintf(f, "trial");
    for (int j = 0; j < n_models; j++) fprintf(f, "\tweight:%s", models[j]);
    if (search_density)
        for (int j = 0; j < n_models; j++) fprintf(f, "\tdensity:%s", models[j]);
    for (int d = 0; d < n_domains; d++) fprintf(f, "\tloss:%s", domains[d].name);
    fprintf(f, "\tobjective\tseconds\n");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%d", t[i].index);
        for (int j = 0; j < n_models; j++) fprintf(f, "\t%.6f", t[i].weight[j]);
        if (search_density)
            for (int j = 0; j < n_models; j++) fprintf(f, "\t%.6f", t[i].density[j]);
        for (int d = 0; d < n_domains; d++) fprintf(f, "\t%.6f", t[i].loss[d]);
        fprintf(f, "\t%.6f\t%.2f\n", t[i].objective, t[i].seconds);
    }
    if (ferror(f)) {
        ml_atomic_abort(&af);
        return ml_fail(ML_ERR_IO, "cannot write %s", path);
    }
    return ml_atomic_commit(&af);
}
