/* `qat`: quantization-aware fine-tuning (quant/quant.h) with self-distillation. Everything of `distill` and
 * `train` applies; this file adds the recipe options and the fine-tuning defaults. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"

#define QAT_USAGE                                                                                                  \
    "(--init CKPT --scheme SCHEME | --resume CKPT) (--data SHARD... | --source SPEC...) --out DIR\n"                \
    "       [--embedding none|q8_0|q4_0|int8|int4-g32] [--act none|q8_0|int8-token] [--no-self-distill]\n"          \
    "       [--teacher CKPT|HF_DIR | --cache CACHE.h5] [--temperature T] [--ce-weight W] [train options]"

static void qat_help(void) {
    printf("mobilellm qat: fine-tune with fake-quantized weights (latent fp32 weights trained)\n\n"
           "  --scheme SCHEME          q4_0 | q8_0 | int4-g32 | int4-g64 | int4-g128 | int4-g256 | int4-channel-lsq\n"
           "                           (linear layers; q4_0/q8_0 are llama.cpp's GGUF blocks, int4-* torchao's grid)\n"
           "  --embedding GRID         none | q8_0 | q4_0 | int8 | int4-g32 for the embedding (tied: also the head;\n"
           "                           default none)\n"
           "  --act GRID               none | q8_0 (llama.cpp's activation rounding) | int8-token (ExecuTorch 8da4w)\n"
           "                           (default none)\n"
           "  --no-self-distill        plain cross-entropy; by default the full-precision --init model is an online\n"
           "                           teacher on the same batches (forward KL, --temperature, --ce-weight)\n"
           "Fine-tuning defaults (other than train's): --lr 1e-4, --weight-decay 0, --warmup 0, cosine to 0.1x,\n"
           "temperature 1, ce weight 0 (pure self-distillation). The checkpoints keep the latent weights under their\n"
           "usual names, the recipe, and any learned scales; resume is bit-exact.\n\n");
}

int ml_cmd_qat(int argc, char **argv) {
    ml_train_args a;
    ml_train_args_defaults(&a);
    a.lr = 1e-4f;
    a.weight_decay = 0.0f;
    a.qat = 1;
    a.self_distill = 1;
    /* take out qat's own options, pass the rest to the train/distill parser */
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) return 1;
    int n = 0, help = 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **dst = !strcmp(s, "--scheme") ? &a.quant_scheme
                           : !strcmp(s, "--embedding") ? &a.quant_embedding
                           : !strcmp(s, "--act") ? &a.quant_act : NULL;
        if (i > 0 && dst) {
            if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)) {
                fprintf(stderr, "mobilellm qat: %s needs a value\n", s);
                free(rest);
                return 2;
            }
            *dst = argv[++i];
            continue;
        }
        if (i > 0 && !strcmp(s, "--no-self-distill")) {
            a.self_distill = 0;
            continue;
        }
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) help = 1;
        rest[n++] = argv[i];
    }
    rest[n] = NULL;
    if (help) qat_help();
    int rc = ml_train_cli_preset("qat", n, rest, 1, &a, QAT_USAGE);
    free(rest);
    return rc;
}
