/* `quantize`: post-training quantization, round to nearest on the recipe's grid (quant/quant.h). The output is a
 * checkpoint of the same form as a QAT run's: the latent weights under their usual names, the recipe, and (for
 * int4-channel-lsq) the scales initialised from the weights; every command that loads it computes with the
 * quantized weights, `qat --init` can fine-tune it, and `export` writes its blocks. */
#include <stdio.h>

#include "cli/args.h"
#include "model/checkpoint.h"
#include "quant/quant.h"

int ml_cmd_quantize(int argc, char **argv) {
    const char *ckpt = NULL, *scheme = NULL, *embedding = NULL, *act = NULL, *out = NULL;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5) to quantize", 1, 0},
        {"scheme", ML_OPT_STR, &scheme, "q4_0 | q8_0 | int4-g32 | int4-g64 | int4-g128 | int4-g256 | int4-channel-lsq", 1, 0},
        {"embedding", ML_OPT_STR, &embedding, "none | q8_0 | q4_0 | int8 | int4-g32 (default none)", 0, 0},
        {"act", ML_OPT_STR, &act, "none | q8_0 | int8-token: activation rounding at use (default none)", 0, 0},
        {"out", ML_OPT_STR, &out, "quantized checkpoint (.h5)", 1, 0},
    };
    int rc = ml_args_parse("quantize", "--ckpt CKPT --scheme SCHEME [--embedding GRID] [--act GRID] --out QCKPT", opts,
                           5, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    ml_quant_recipe r;
    if (ml_quant_recipe_parse(&r, scheme, embedding, act) != ML_OK) return ml_cli_fail("quantize");
    ml_model m;
    if (ml_checkpoint_load(ckpt, &m, NULL) != ML_OK) return ml_cli_fail("quantize");
    ml_status s = ml_quant_prepare(&m, scheme, embedding, act, ckpt);
    if (s == ML_OK) s = ml_checkpoint_save(out, &m, NULL);
    if (s == ML_OK)
        printf("%s: %s quantized (%s), %d learned scale tensors\n", out, m.cfg.name, m.quant, ml_quant_num_scales(&m));
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("quantize");
}
