#include <math.h>
#include <stdio.h>

#include "cli/args.h"
#include "train/checkpoint.h"
#include "train/eval.h"

int ml_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL;
    ml_str_list data = {0};
    int B = 4, T = 256, max_batches = 0;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"data", ML_OPT_STR_LIST, &data, "token shards to score", 1, 0},
        {"batch", ML_OPT_INT, &B, "sequences per batch (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &T, "tokens per sequence (default 256)", 0, 0},
        {"max-batches", ML_OPT_INT, &max_batches, "stop after this many batches (default: one pass)", 0, 0},
    };
    int rc = ml_args_parse("eval", "--ckpt CKPT --data SHARD... [--batch B] [--seq T]", opts, 5, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (B < 1 || T < 1 || max_batches < 0) {
        fprintf(stderr, "mobilellm eval: --batch and --seq must be positive\n");
        return 2;
    }
    ml_model m;
    if (ml_checkpoint_load(ckpt, &m, NULL) != ML_OK) return ml_cli_fail("eval");
    ml_batch_reader *r = NULL;
    ml_batch_opts bo = {.B = B, .T = T, .pos_mode = ML_POS_ROW};
    double loss = 0;
    int64_t tokens = 0;
    ml_status s = ml_batch_reader_open(&r, data.items, data.count, &bo);
    if (s == ML_OK && ml_batch_reader_vocab_size(r) > (uint32_t)m.cfg.vocab_size)
        s = ml_fail(ML_ERR_CONFIG, "data vocabulary (%u) is larger than the model's (%d)", ml_batch_reader_vocab_size(r),
                    m.cfg.vocab_size);
    if (s == ML_OK) s = ml_model_reserve(&m, B, T, T);
    if (s == ML_OK) s = ml_eval_loss(&m, r, B, T, max_batches, &loss, &tokens);
    if (s == ML_OK)
        printf("{\"loss\":%.6f,\"perplexity\":%.4f,\"tokens\":%lld}\n", loss, exp(loss), (long long)tokens);
    ml_batch_reader_close(r);
    ml_model_free(&m);
    return s == ML_OK ? 0 : ml_cli_fail("eval");
}
