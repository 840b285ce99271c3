/* `mobilellm mix`: domain weights from simulated training and influence (mix/mix.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "mix/mix.h"

/* "NAME=SHARD[,SHARD...]" (targets: "NAME=SHARDS[:WEIGHT]"), manifests expanded; shard strings are kept
 * in `keep` (released by the caller). */
static int parse_set(const char *what, const char *spec, int weighted, ml_mix_set *set, ml_str_list *keep) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof set->name || !eq[1]) {
        fprintf(stderr, "mobilellm mix: %s '%s' must be NAME=SHARD[,SHARD...]%s\n", what, spec, weighted ? "[:WEIGHT]" : "");
        return 2;
    }
    memset(set, 0, sizeof *set);
    snprintf(set->name, sizeof set->name, "%.*s", (int)(eq - spec), spec);
    set->weight = 1.0;
    char *list = strdup(eq + 1);
    if (!list) return 1;
    char *colon = weighted ? strrchr(list, ':') : NULL;
    if (colon) {
        char *end;
        double w = strtod(colon + 1, &end);
        if (*end || !(w > 0)) {
            fprintf(stderr, "mobilellm mix: %s '%s': weight '%s' must be a number > 0\n", what, set->name, colon + 1);
            free(list);
            return 2;
        }
        set->weight = w, *colon = 0;
    }
    const char *items[ML_MIX_MAX_SHARDS + 1];
    int n = 0;
    for (char *sv = NULL, *t = strtok_r(list, ",", &sv); t && n < ML_MIX_MAX_SHARDS; t = strtok_r(NULL, ",", &sv)) items[n++] = t;
    *keep = (ml_str_list){.items = items, .count = n};
    int rc = ml_expand_data_args("mix", keep) != 0 ? 1 : 0;
    if (!rc && keep->count > ML_MIX_MAX_SHARDS) {
        fprintf(stderr, "mobilellm mix: %s '%s': too many shards\n", what, set->name);
        rc = 2;
    }
    for (int i = 0; !rc && i < keep->count; i++) set->shards[set->n_shards++] = strdup(keep->items[i]);
    ml_str_list_release(keep);
    free(list);
    return rc;
}

static void free_set(ml_mix_set *set) {
    for (int i = 0; i < set->n_shards; i++) free((char *)set->shards[i]);
    set->n_shards = 0;
}

int ml_cmd_mix(int argc, char **argv) {
    ml_mix_args *a = calloc(1, sizeof *a);
    if (!a) return 1;
    ml_mix_args_defaults(a);
    ml_str_list src = {0}, tgt = {0}, ck = {0};
    const char *method = "influence";
    int samples = a->samples, T = a->n_checkpoints, tb = a->target_batches, runs = a->runs, heldout = a->heldout,
        fw = 0, loo = 0, filter = 0;
    int64_t steps = a->steps, sim_steps = a->sim_steps, warmup = a->warmup, seed = (int64_t)a->seed;
    float lr = a->lr, floor_ = (float)a->floor, temp = (float)a->temperature, alpha = (float)a->alpha;
    ml_opt opts[] = {
        {"source", ML_OPT_STR_LIST, &src, "domains: NAME=SHARD[,SHARD...] each (shards or manifests)", 1, 0},
        {"target", ML_OPT_STR_LIST, &tgt, "targets: NAME=SHARD[,SHARD...][:WEIGHT] each (held-out mixes, probe sets)", 1, 0},
        {"method", ML_OPT_STR, &method, "influence (default) | simulate", 0, 0},
        {"config", ML_OPT_STR, &a->config_path, "the proxy: a config trained from --seed", 0, 0},
        {"init", ML_OPT_STR, &a->init_ckpt, "or the proxy's initial weights (a checkpoint)", 0, 0},
        {"ckpts", ML_OPT_STR_LIST, &ck, "influence: score these finished checkpoints (training order) instead of training a proxy", 0, 0},
        {"out", ML_OPT_STR, &a->out_dir, "output folder: mixture.json, runs (kept for restarts)", 1, 0},
        {"batch", ML_OPT_INT, &a->batch, "rows per batch (default 8)", 0, 0},
        {"seq", ML_OPT_INT, &a->seq, "tokens per row (default 128)", 0, 0},
        {"lr", ML_OPT_FLOAT, &lr, "peak learning rate of proxy runs (default 2e-3)", 0, 0},
        {"warmup", ML_OPT_I64, &warmup, "warmup steps of proxy runs (default 10)", 0, 0},
        {"steps", ML_OPT_I64, &steps, "proxy budget in steps (influence, --loo; default 200)", 0, 0},
        {"checkpoints", ML_OPT_INT, &T, "T evenly spaced proxy checkpoints scored (default 4)", 0, 0},
        {"samples", ML_OPT_INT, &samples, "windows scored per domain (default 64)", 0, 0},
        {"target-batches", ML_OPT_INT, &tb, "batches of each target for its gradient and loss (default 4)", 0, 0},
        {"tensors", ML_OPT_STR, &a->tensors, "scored matrices: embed, head, last:K, block:I, all or names (default embed,head,last:1)", 0, 0},
        {"floor", ML_OPT_FLOAT, &floor_, "least weight of a domain (default 0.01)", 0, 0},
        {"temperature", ML_OPT_FLOAT, &temp, "weights ~ utility^(1/temperature) (default 1)", 0, 0},
        {"runs", ML_OPT_INT, &runs, "simulate: K runs (default 12)", 0, 0},
        {"sim-steps", ML_OPT_I64, &sim_steps, "simulate: steps per run (default 60)", 0, 0},
        {"alpha", ML_OPT_FLOAT, &alpha, "simulate: Dirichlet concentration per domain (default 1)", 0, 0},
        {"heldout", ML_OPT_INT, &heldout, "simulate: runs held out to report the regression's fit (default 3)", 0, 0},
        {"loo", ML_OPT_FLAG, &loo, "leave-one-domain-out impact on each target (Eq. 1)", 0, 0},
        {"filter", ML_OPT_FLAG, &filter, "write each domain's positive-influence windows as new shards (Eq. 7)", 0, 0},
        {"filter-windows", ML_OPT_INT, &fw, "windows per domain the filter scans (default all)", 0, 0},
        {"seed", ML_OPT_I64, &seed, "seed of proxy runs, samples and Dirichlet draws (default 1)", 0, 0},
    };
    int rc = ml_args_parse("mix",
                           "--source NAME=SHARDS... --target NAME=SHARDS[:W]... (--config CFG | --init CKPT | --ckpts CKPT...) "
                           "--out DIR [--method influence|simulate] [--loo] [--filter] [options]",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) {
        free(a);
        return rc > 0 ? 0 : 2;
    }
    int code = 0;
    ml_str_list keep[2 * ML_MIX_MAX_DOMAINS] = {{0}};
    int nkeep = 0;
    if (src.count > ML_MIX_MAX_DOMAINS || tgt.count > ML_MIX_MAX_DOMAINS || ck.count > ML_MIX_MAX_CKPTS) {
        fprintf(stderr, "mobilellm mix: at most %d sources and targets, %d checkpoints\n", ML_MIX_MAX_DOMAINS, ML_MIX_MAX_CKPTS);
        code = 2;
    }
    for (int i = 0; !code && i < src.count; i++) code = parse_set("--source", src.items[i], 0, &a->domains[a->n_domains++], &keep[nkeep++]);
    for (int i = 0; !code && i < tgt.count; i++) code = parse_set("--target", tgt.items[i], 1, &a->targets[a->n_targets++], &keep[nkeep++]);
    for (int i = 0; i < ck.count && i < ML_MIX_MAX_CKPTS; i++) a->ckpts[a->n_ckpts++] = ck.items[i];
    if (!code) {
        snprintf(a->method, sizeof a->method, "%s", method);
        a->samples = samples, a->n_checkpoints = T, a->target_batches = tb, a->runs = runs, a->heldout = heldout;
        a->filter_windows = fw, a->loo = loo, a->filter = filter;
        a->steps = steps, a->sim_steps = sim_steps, a->warmup = warmup, a->seed = (uint64_t)seed;
        a->lr = lr, a->floor = floor_, a->temperature = temp, a->alpha = alpha;
        a->progress = (ml_progress){.report = ml_cli_progress_tty};
        code = ml_mix(a) == ML_OK ? 0 : ml_cli_fail("mix");
    }
    for (int i = 0; i < a->n_domains; i++) free_set(&a->domains[i]);
    for (int i = 0; i < a->n_targets; i++) free_set(&a->targets[i]);
    free(a);
    return code;
}
