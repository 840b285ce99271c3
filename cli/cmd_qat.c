/* `qat`: quantization-aware fine-tuning (quant/quant.h) with self-distillation. Everything of `distill` and
 * `train` applies; the recipe options are rows of the same table (train/train_options.c, ML_CMD_QAT); this file
 * sets the fine-tuning defaults. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

#define QAT_USAGE                                                                                                  \
    "(--init CKPT --scheme SCHEME | --resume CKPT) (--data SHARD... | --source SPEC...) --out DIR\n"                \
    "       [--embedding none|q8_0|q4_0|int8|int4-g32] [--act none|q8_0|int8-token] [--no-self-distill]\n"          \
    "       [--teacher CKPT|HF_DIR | --cache CACHE.h5] [--temperature T] [--ce-weight W] [train options]"

int ml_cmd_qat(int argc, char **argv) {
    ml_train_args a;
    ml_train_args_defaults(&a);
    a.lr = 1e-4f;
    a.weight_decay = 0.0f;
    a.qat = 1; /* also selects the table's quantization rows (--scheme, --embedding, --act, --no-self-distill) */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("mobilellm qat: fine-tune with fake-quantized weights (latent fp32 weights trained)\n\n"
                   "Fine-tuning defaults (other than train's): --lr 1e-4, --weight-decay 0, --warmup 0, cosine to "
                   "0.1x,\ntemperature 1, ce weight 0 (pure self-distillation). The checkpoints keep the latent weights "
                   "under\ntheir usual names, the recipe, and any learned scales; resume is bit-exact.\n\n");
            break;
        }
    return ml_train_cli_preset("qat", argc, argv, 1, &a, QAT_USAGE);
}
