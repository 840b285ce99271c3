/* `teacher-logits`: a teacher's top-K log-probabilities over the training batches, for offline
 * distillation (`distill --cache`). */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "distill/teacher_logits.h"
#include "common/signals.h"

int ml_cmd_teacher_logits(int argc, char **argv) {
    ml_teacher_logits_args a = {.B = 4, .T = 256, .K = 64};
    ml_str_list data = {0};
    ml_opt opts[] = {
        {"teacher", ML_OPT_STR, &a.teacher, "teacher checkpoint or HF directory", 1, 0},
        {"data", ML_OPT_STR_LIST, &data, "training token shards, in the order the student will read them", 1, 0},
        {"batch", ML_OPT_INT, &a.B, "sequences per batch, as the student's --batch (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &a.T, "tokens per sequence, as the student's --seq (default 256)", 0, 0},
        {"topk", ML_OPT_INT, &a.K, "tokens kept per position (default 64)", 0, 0},
        {"batches", ML_OPT_I64, &a.batches, "batches to cache (default: one pass over the data)", 0, 0},
        {"out", ML_OPT_STR, &a.out, "the cache (.h5), written atomically", 1, 0},
        {"quiet", ML_OPT_FLAG, &a.quiet, "no per-batch progress lines", 0, 0},
    };
    int rc = ml_args_parse("teacher-logits",
                           "--teacher CKPT|HF_DIR --data SHARD... --batch B --seq T --topk K --out CACHE.h5 [--batches N]",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    a.data = (const char *const *)data.items;
    a.n_data = data.count;
    a.progress = (ml_progress){ml_cli_progress_stdout, NULL};
    ml_signals_set_graceful(1); /* stops between batches, writing nothing */
    ml_status s = ml_teacher_logits(&a);
    if (s == ML_ERR_INTERRUPTED) {
        ml_cli_fail("teacher-logits");
        return 130;
    }
    return s == ML_OK ? 0 : ml_cli_fail("teacher-logits");
}
