/* mobilellm merge: checkpoints merged by a mergekit-style recipe, or a search for its weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "common/atomic_file.h"
#include "common/sysinfo.h"
#include "merge/merge.h"
#include "merge/search.h"

typedef struct {
    double t0, last;
} merge_progress;

static void on_tensor(void *user, int done, int total, const char *tensor, uint64_t bytes) {
    merge_progress *p = user;
    double now = ml_now_seconds();
    if (done < total && now - p->last < 0.5) return;
    p->last = now;
    double el = now - p->t0;
    fprintf(stderr, "\rmerge: %d/%d tensors  %.2f GB read  %.0f MB/s  %.0fs  %-48.48s", done, total, bytes / 1e9,
            el > 0 ? bytes / 1e6 / el : 0.0, el, tensor);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static void on_trial(void *user, const ml_search_trial *t, int n_trials, const ml_search_trial *best, int n_models,
                     const char *const *models, int n_domains, const ml_search_domain *domains) {
    (void)user;
    (void)models;
    printf("trial %d/%d  weights", t->index + 1, n_trials);
    for (int j = 0; j < n_models; j++) printf(" %.3f", t->weight[j]);
    if (!isnan(t->density[0])) {
        printf("  densities");
        for (int j = 0; j < n_models; j++) printf(" %.3f", t->density[j]);
    }
    printf("  loss");
    for (int d = 0; d < n_domains; d++) printf(" %s=%.4f", domains[d].name, t->loss[d]);
    printf("  objective %.4f  best %.4f (trial %d)  %.1fs\n", t->objective, best->objective, best->index + 1, t->seconds);
    fflush(stdout);
}

/* DOMAIN=SHARD */
static int add_domain(ml_search_opts *o, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1] || (size_t)(eq - spec) >= sizeof o->domains[0].name) {
        fprintf(stderr, "mobilellm merge: --search-data takes DOMAIN=SHARD, not '%s'\n", spec);
        return -1;
    }
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
    int d = 0;
    while (d < o->n_domains && strcmp(o->domains[d].name, name)) d++;
    if (d == o->n_domains) {
        if (d == ML_SEARCH_MAX_DOMAINS) {
            fprintf(stderr, "mobilellm merge: at most %d search domains\n", ML_SEARCH_MAX_DOMAINS);
            return -1;
        }
        snprintf(o->domains[d].name, sizeof o->domains[d].name, "%s", name);
        o->domains[d].weight = 1.0;
        o->n_domains++;
    }
    if (o->domains[d].n_shards == 16) {
        fprintf(stderr, "mobilellm merge: at most 16 shards per search domain\n");
        return -1;
    }
    o->domains[d].shards[o->domains[d].n_shards++] = eq + 1;
    return 0;
}

/* DOMAIN=WEIGHT */
static int set_domain_weight(ml_search_opts *o, const char *spec) {
    const char *eq = strchr(spec, '=');
    char *end;
    double w = eq ? strtod(eq + 1, &end) : 0;
    if (!eq || !eq[1] || *end || !(w >= 0)) {
        fprintf(stderr, "mobilellm merge: --search-weight takes DOMAIN=WEIGHT (>= 0), not '%s'\n", spec);
        return -1;
    }
    for (int d = 0; d < o->n_domains; d++)
        if (!strncmp(o->domains[d].name, spec, (size_t)(eq - spec)) && o->domains[d].name[eq - spec] == 0) {
            o->domains[d].weight = w;
            return 0;
        }
    fprintf(stderr, "mobilellm merge: --search-weight names domain '%.*s', which --search-data does not\n", (int)(eq - spec), spec);
    return -1;
}

int ml_cmd_merge(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *format = "h5", *trials_out = NULL;
    int64_t seed = -1;
    int search = 0, trials = 16, search_density = 0, B = 4, T = 256, max_batches = 8, quiet = 0;
    float weight_max = 1.0f;
    ml_str_list sdata = {0}, sweight = {0};
    ml_opt opts[] = {
        {"config", ML_OPT_STR, &config, "the recipe (mergekit YAML)", 1, 0},
        {"out", ML_OPT_STR, &out, "output: a checkpoint (.h5), a directory with --format hf, or with --search the best recipe (.yaml)", 1, 0},
        {"format", ML_OPT_STR, &format, "h5 (default) or hf", 0, 0},
        {"seed", ML_OPT_I64, &seed, "seed of the random methods (DARE) and the search (default: the recipe's, else 0)", 0, 0},
        {"quiet", ML_OPT_FLAG, &quiet, "no progress line", 0, 0},
        {"search", ML_OPT_FLAG, &search, "search the models' weights on held-out shards; --out gets the best recipe", 0, 0},
        {"search-data", ML_OPT_STR_LIST, &sdata, "DOMAIN=SHARD... held-out shards per domain (repeat a domain for more shards)", 0, 0},
        {"search-weight", ML_OPT_STR_LIST, &sweight, "DOMAIN=WEIGHT... weight of a domain in the objective (default 1 each)", 0, 0},
        {"search-density", ML_OPT_FLAG, &search_density, "also search each model's density (ties, dare_*, breadcrumbs*)", 0, 0},
        {"trials", ML_OPT_INT, &trials, "candidates evaluated, the recipe's own first (default 16)", 0, 0},
        {"weight-max", ML_OPT_FLOAT, &weight_max, "weights are searched in [0, this] (default 1)", 0, 0},
        {"batch", ML_OPT_INT, &B, "search evaluation: sequences per batch (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &T, "search evaluation: tokens per sequence (default 256)", 0, 0},
        {"max-batches", ML_OPT_INT, &max_batches, "search evaluation: batches per domain (default 8; 0 = all)", 0, 0},
        {"trials-out", ML_OPT_STR, &trials_out, "table of every trial (TSV; default OUT with .tsv)", 0, 0},
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int rc = ml_args_parse("merge",
                           "--config RECIPE.yaml --out OUT.h5 | --out DIR --format hf | --search --search-data DOMAIN=SHARD... "
                           "--out BEST.yaml [--trials N] [--search-density]",
                           opts, n_opts, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    int hf = 0;
    if (!strcmp(format, "hf")) hf = 1;
    else if (strcmp(format, "h5")) {
        fprintf(stderr, "mobilellm merge: --format is h5 or hf, not '%s'\n", format);
        return 2;
    }
    if (!search && (sdata.count || sweight.count || search_density)) {
        fprintf(stderr, "mobilellm merge: --search-data, --search-weight and --search-density need --search\n");
        return 2;
    }
    if (search && (trials < 1 || B < 1 || T < 1 || max_batches < 0 || !(weight_max > 0))) {
        fprintf(stderr, "mobilellm merge: --trials, --batch, --seq and --weight-max must be positive\n");
        return 2;
    }
    ml_search_opts so;
    memset(&so, 0, sizeof so);
    for (int i = 0; i < sdata.count; i++)
        if (add_domain(&so, sdata.items[i])) return 2;
    for (int i = 0; i < sweight.count; i++)
        if (set_domain_weight(&so, sweight.items[i])) return 2;
    if (search && so.n_domains == 0) {
        fprintf(stderr, "mobilellm merge: --search needs --search-data DOMAIN=SHARD...\n");
        return 2;
    }

    ml_merge_recipe r;
    if (ml_merge_recipe_load(&r, config) != ML_OK) return ml_cli_fail("merge");
    if (seed >= 0) r.seed = (uint64_t)seed;
    double t0 = ml_now_seconds();
    ml_status s = ML_OK;
    if (!search) {
        ml_merge_plan *p = NULL;
        s = ml_merge_plan_open(&p, &r);
        if (s == ML_OK) {
            merge_progress mp = {t0, 0};
            s = ml_merge_write(p, out, hf, quiet ? NULL : on_tensor, &mp);
        }
        if (s == ML_OK)
            printf("{\"out\":\"%s\",\"method\":\"%s\",\"models\":%d,\"tensors\":%d,\"layers\":%d,\"seconds\":%.2f,"
                   "\"peak_rss_mb\":%.1f}\n",
                   out, ml_merge_method_name(r.method), ml_merge_plan_n_models(p), ml_merge_plan_n_tensors(p),
                   ml_merge_plan_config(p)->num_layers, ml_now_seconds() - t0, ml_peak_rss_bytes() / 1048576.0);
        ml_merge_plan_free(p);
    } else {
        so.trials = trials;
        so.seed = seed >= 0 ? (uint64_t)seed : r.seed;
        so.search_density = search_density;
        so.weight_max = weight_max;
        so.B = B;
        so.T = T;
        so.max_batches = max_batches;
        so.progress = on_trial;
        ml_search_trial *tr = NULL;
        int n = 0, best = 0, nm = 0;
        char **models = NULL, *yaml = NULL;
        s = ml_merge_search(&r, &so, &tr, &n, &best, &models, &nm);
        if (s == ML_OK) s = ml_merge_recipe_to_yaml(&r, &yaml);
        if (s == ML_OK) {
            ml_atomic_file af;
            s = ml_atomic_begin(&af, out, 1);
            if (s == ML_OK) {
                fprintf(af.fp, "# best of %d trials: objective %.6f (mobilellm merge --search)\n", n, tr[best].objective);
                fputs(yaml, af.fp);
                s = ferror(af.fp) ? (ml_atomic_abort(&af), ml_fail(ML_ERR_IO, "cannot write %s", out)) : ml_atomic_commit(&af);
            }
        }
        char tsv[4096];
        if (trials_out) snprintf(tsv, sizeof tsv, "%s", trials_out);
        else {
            snprintf(tsv, sizeof tsv, "%s", out);
            char *dot = strrchr(tsv, '.'), *slash = strrchr(tsv, '/');
            if (dot && (!slash || dot > slash)) *dot = 0;
            strncat(tsv, ".tsv", sizeof tsv - strlen(tsv) - 1);
        }
        if (s == ML_OK)
            s = ml_search_write_tsv(tsv, tr, n, nm, (const char *const *)models, search_density, so.n_domains, so.domains);
        if (s == ML_OK)
            printf("{\"best_trial\":%d,\"objective\":%.6f,\"recipe\":\"%s\",\"trials\":\"%s\",\"seconds\":%.1f}\n", best + 1,
                   tr[best].objective, out, tsv, ml_now_seconds() - t0);
        for (int i = 0; models && i < nm; i++) free(models[i]);
        free(models);
        free(tr);
        free(yaml);
    }
    ml_merge_recipe_free(&r);
    ml_str_list_release(&sdata);
    ml_str_list_release(&sweight);
    return s == ML_OK ? 0 : ml_cli_fail("merge");
}
