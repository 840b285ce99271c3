#include <stdio.h>

#include "cli/args.h"
#include "model/checkpoint.h"

int ml_cmd_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    int64_t seed = 1;
    ml_opt opts[] = {
        {"config", ML_OPT_STR, &config, "HF-style config.json (see configs/)", 1, 0},
        {"seed", ML_OPT_I64, &seed, "initialisation seed (default 1)", 0, 0},
        {"out", ML_OPT_STR, &out, "checkpoint to write (.h5)", 1, 0},
    };
    int rc = ml_args_parse("init", "--config CFG [--seed S] --out CKPT", opts, 3, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    ml_config cfg;
    ml_model m;
    if (ml_config_load(&cfg, config) != ML_OK || ml_model_create(&m, &cfg) != ML_OK) return ml_cli_fail("init");
    ml_model_init_weights(&m, (uint64_t)seed);
    ml_status s = ml_checkpoint_save(out, &m, NULL);
    if (s == ML_OK) printf("%s: %s, %lld parameters, seed %lld\n", out, m.cfg.name, (long long)ml_config_num_params(&m.cfg), (long long)seed);
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("init");
}
