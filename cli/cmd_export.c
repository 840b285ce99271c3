#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/args.h"
#include "io/hf_checkpoint.h"
#include "train/checkpoint.h"

int ml_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = "hf", *out = NULL, *dtype_name = NULL;
    int shard_mb = 0;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"format", ML_OPT_STR, &format, "hf (Hugging Face safetensors + config.json)", 0, 0},
        {"out", ML_OPT_STR, &out, "output directory", 1, 0},
        {"dtype", ML_OPT_STR, &dtype_name, "f32 | bf16 | f16 (default: the dtype the weights were imported in, else f32)", 0, 0},
        {"shard-mb", ML_OPT_INT, &shard_mb, "split into shards of at most this many MB (default: one file)", 0, 0},
    };
    int rc = ml_args_parse("export", "--ckpt CKPT --format hf --out DIR [--dtype f32|bf16|f16]", opts, 5, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcasecmp(format, "hf") != 0) {
        fprintf(stderr, "mobilellm export: unknown --format '%s' (supported: hf)\n", format);
        return 2;
    }
    if (shard_mb < 0) {
        fprintf(stderr, "mobilellm export: --shard-mb must not be negative\n");
        return 2;
    }
    ml_model m;
    if (ml_checkpoint_load(ckpt, &m, NULL) != ML_OK) return ml_cli_fail("export");
    const char *dn = dtype_name ? dtype_name : (m.source_dtype[0] ? m.source_dtype : "F32");
    ml_st_dtype dt = ML_ST_F32;
    if (!strcasecmp(dn, "f32")) dt = ML_ST_F32;
    else if (!strcasecmp(dn, "bf16")) dt = ML_ST_BF16;
    else if (!strcasecmp(dn, "f16")) dt = ML_ST_F16;
    else {
        fprintf(stderr, "mobilellm export: --dtype must be f32, bf16 or f16, not '%s'\n", dn);
        ml_model_free(&m);
        return 2;
    }
    ml_status s = ml_hf_export(&m, out, dt, (uint64_t)shard_mb * 1000000ull);
    if (s == ML_OK)
        printf("%s: %s, %lld parameters as %s (%s)\n", out, m.cfg.name, (long long)ml_config_num_params(&m.cfg),
               ml_st_dtype_name(dt), m.cfg.layer_repeat > 1 ? "shared blocks written once per application" : "HF layout");
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("export");
}
