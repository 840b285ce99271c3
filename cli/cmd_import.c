#include <stdio.h>

#include "cli/args.h"
#include "interop/hf_checkpoint.h"
#include "model/checkpoint.h"

int ml_cmd_import(int argc, char **argv) {
    const char *from = NULL, *out = NULL;
    ml_opt opts[] = {
        {"from", ML_OPT_STR, &from, "Hugging Face model directory (config.json + safetensors)", 1, 0},
        {"out", ML_OPT_STR, &out, "checkpoint to write (.h5)", 1, 0},
    };
    int rc = ml_args_parse("import", "--from DIR --out CKPT", opts, 2, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    ml_model m;
    ml_st_dtype dt;
    if (ml_hf_import(&m, from, &dt) != ML_OK) return ml_cli_fail("import");
    ml_status s = ml_checkpoint_save(out, &m, NULL);
    if (s == ML_OK)
        printf("%s: %s, %lld parameters (weights were %s)\n", out, m.cfg.name, (long long)ml_config_num_params(&m.cfg),
               ml_st_dtype_name(dt));
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("import");
}
