/* Utility-driven data mixing: domain weights estimated from simulated training and influence, not set
 * by hand (MobileLLM-R1 §5 Eqs. 1, 5-7; MobileLLM-Pro's simulation-driven mixing).
 *
 *   influence (default)  train a proxy on the uniform mixture for a budget, keeping T evenly spaced
 *                        checkpoints (or take given ones); at each checkpoint score `samples` random
 *                        windows of every domain by <g_i, ḡ_c> with each target's mean gradient
 *                        (mix/influence.h); Eq. 5 joins checkpoints (α_t ∝ t) and targets (their
 *                        weights); Eq. 6 averages per domain (token-weighted) into utilities ρ_g; the
 *                        weights are ρ⁺^(1/τ) normalised, then mixed with a floor:
 *                        w_g = floor + (1 - G·floor)·p_g.
 *   simulate             K short runs from one init on mixtures drawn from Dirichlet(α·1), each
 *                        measured on the targets; a ridge regression L ≈ a + Σ_g β_g log(w_g + ε) per
 *                        target (fit reported on the last `heldout` runs, then refit on all); the
 *                        weights minimise the targets' weighted predicted loss over the simplex with
 *                        the floor (exponentiated gradient). Finished runs are kept: a rerun resumes.
 *   loo                  Eq. 1: ΔL(D_j, c) = L_c(θ_{-j}) - L_c(θ) from a uniform run and one run per
 *                        left-out domain, the proxy's budget each (positive = domain j helps target c).
 *   filter               Eq. 7 at the last checkpoint: the windows of every domain with joint influence
 *                        > 0 become documents of new shards (out/filtered/NAME.shard), all or nothing.
 * Output: out/mixture.json (written atomically; format in docs/mix.md), read back by
 * mix/mixture_file.h for `train --mixture`. */
#ifndef ML_MIX_MIX_H
#define ML_MIX_MIX_H

#include <stdint.h>

#include "common/log.h"
#include "common/status.h"

#define ML_MIX_MAX_DOMAINS 32
#define ML_MIX_MAX_SHARDS 256
#define ML_MIX_MAX_CKPTS 64

typedef struct {
    char name[64];
    const char *shards[ML_MIX_MAX_SHARDS];
    int n_shards;
    double weight; /* targets: relative weight (> 0) */
} ml_mix_set;

typedef struct {
    ml_mix_set domains[ML_MIX_MAX_DOMAINS];
    int n_domains;
    ml_mix_set targets[ML_MIX_MAX_DOMAINS];
    int n_targets;
    /* the proxy: a config to train from (seeded by `seed`) or an init checkpoint; influence may instead
     * take finished checkpoints (in training order) */
    const char *config_path, *init_ckpt;
    const char *ckpts[ML_MIX_MAX_CKPTS];
    int n_ckpts;
    char method[16]; /* influence | simulate */
    int batch, seq;
    float lr;
    int64_t warmup;
    int64_t steps;       /* proxy budget (influence, loo) */
    int n_checkpoints;   /* T: evenly spaced proxy checkpoints scored */
    int samples;         /* scored windows per domain */
    int target_batches;  /* batches of each target for its mean gradient and its loss */
    const char *tensors; /* selection (mix/influence.h); default "embed,head,last:1" */
    double floor, temperature;
    int runs;            /* simulate: K */
    int64_t sim_steps;
    double alpha;        /* Dirichlet concentration per domain (1: uniform over the simplex) */
    int heldout;         /* runs kept out of the fit that reports it */
    int loo, filter;
    int filter_windows;  /* windows per domain scanned by the filter (0: all) */
    uint64_t seed;
    const char *out_dir;
    ml_progress progress;
} ml_mix_args;

void ml_mix_args_defaults(ml_mix_args *a);
ml_status ml_mix(const ml_mix_args *a);

/* Eq. 5: joint[i] = Σ_c λ_c Σ_t α_t scores[(t*n + i)*C + c], α_t = t / Σ_t' t' (t = 1..T),
 * λ_c = target_w[c] / Σ target_w (NULL: uniform). */
void ml_mix_joint_influence(const double *scores, int T, int n, int C, const double *target_w, double *joint);
/* Eq. 6: rho[g] = Σ_{i∈g} joint[i]·len[i] / Σ_{i∈g} len[i]; then p_g ∝ max(rho_g, 0)^(1/temperature)
 * (uniform when no rho is positive: returns 1 in *collapsed), w_g = floor + (1 - G·floor)·p_g. */
ml_status ml_mix_domain_weights(const double *joint, const int *domain, const double *len, int n, int G, double floor,
                                double temperature, double *rho, double *w, int *collapsed);

#endif
