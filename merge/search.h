/* Search for merge weights (and, if asked, DARE/TIES densities) that minimise a weighted average of
 * held-out losses on per-domain token shards. Candidates are merged into one model in memory and
 * scored with infer/eval_loss.h; nothing is written. Trial 0 is the recipe as given, the next third
 * are random points, the rest perturb the best so far with a shrinking step ((1+1) evolution
 * strategy). Everything is a function of the seed. */
#ifndef ML_MERGE_SEARCH_H
#define ML_MERGE_SEARCH_H

#include <stdint.h>

#include "merge/merge.h"

#define ML_SEARCH_MAX_MODELS 16
#define ML_SEARCH_MAX_DOMAINS 16

typedef struct {
    char name[64];
    const char *shards[16];
    int n_shards;
    double weight; /* in the objective (default 1) */
} ml_search_domain;

typedef struct {
    int index;
    double weight[ML_SEARCH_MAX_MODELS];
    double density[ML_SEARCH_MAX_MODELS]; /* NAN when not searched */
    double loss[ML_SEARCH_MAX_DOMAINS];
    double objective;
    double seconds;
} ml_search_trial;

typedef struct {
    int trials;        /* total, including trial 0 (default 16) */
    uint64_t seed;
    int search_density; /* also search each model's density (methods that sparsify) */
    double weight_max;  /* weights drawn from [0, weight_max] (default 1) */
    int B, T, max_batches;
    int n_domains;
    ml_search_domain domains[ML_SEARCH_MAX_DOMAINS];
    /* called after each trial */
    void (*progress)(void *user, const ml_search_trial *t, int n_trials, const ml_search_trial *best, int n_models,
                     const char *const *models, int n_domains, const ml_search_domain *domains);
    void *user;
} ml_search_opts;

/* The models whose weights are searched: every source of a linear merge, the non-base sources
 * otherwise. Runs the search, leaves the best parameters set in the recipe (scalars on the model
 * entries), and returns every trial (malloc'd) and the best one's index. */
ml_status ml_merge_search(ml_merge_recipe *r, const ml_search_opts *o, ml_search_trial **trials, int *n_trials, int *best,
                          char ***models, int *n_models);

/* Write the trials as TSV (trial, weight:<model>..., density:<model>..., loss:<domain>..., objective, seconds). */
ml_status ml_search_write_tsv(const char *path, const ml_search_trial *t, int n, int n_models, const char *const *models,
                              int search_density, int n_domains, const ml_search_domain *domains);

#endif
