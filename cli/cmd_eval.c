#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "interop/model_load.h"
#include "common/sysinfo.h"
#include "data/tokenizer.h"
#include "infer/eval_loss.h"
#include "infer/mc_eval.h"
#include "model/checkpoint.h"
#include "common/signals.h"

typedef struct {
    double t0, last;
    int open; /* a progress line is drawn and not yet ended */
} progress_state;

/* one stderr line, redrawn: bar, items, items/s, tokens/s, ETA */
static void progress(void *user, int done, int total, long long tokens) {
    progress_state *p = user;
    double now = ml_now_seconds();
    if (done < total && now - p->last < 0.2) return;
    p->last = now;
    double el = now - p->t0, rate = el > 0 ? done / el : 0, eta = rate > 0 ? (total - done) / rate : 0;
    char bar[31];
    int fill = (int)(30.0 * done / total);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %d/%d  %.1f items/s  %.0f tokens/s  ETA %dm%02ds ", bar, done, total, rate,
            el > 0 ? tokens / el : 0.0, (int)eta / 60, (int)eta % 60);
    p->open = done < total;
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

static int eval_mc(const char *ckpt, const char *task_name, const char *tok_spec, const char *dir, int limit,
                   int bos, int max_len, const char *json) {
    ml_mc_task task;
    if (ml_mc_task_parse(task_name, &task) != ML_OK) return ml_cli_fail("eval");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, ml_mc_task_file(task));
    ml_model m;
    memset(&m, 0, sizeof m);
    ml_tokenizer *tok = NULL;
    ml_mc_set set = {0};
    ml_mc_result res = {0};
    progress_state ps = {ml_now_seconds(), 0, 0};
    ml_mc_opts o = {.add_bos = bos, .max_len = max_len, .progress = progress, .progress_user = &ps};
    ml_status s = ml_mc_load(&set, task, path, limit);
    if (s == ML_OK) s = ml_tokenizer_open(&tok, tok_spec);
    if (s == ML_OK) s = ml_model_load_any(ckpt, &m);
    ml_signals_set_graceful(1); /* stops between items, writing nothing */
    if (s == ML_OK) s = ml_mc_evaluate(&m, tok, &set, &o, &res);
    if (s == ML_OK && json) s = ml_mc_write_json(json, &set, &res);
    if (s == ML_OK)
        printf("{\"task\":\"%s\",\"items\":%d,\"acc\":%.4f,\"acc_norm\":%.4f,\"seconds\":%.1f}\n", task_name, res.n,
               res.acc, res.acc_norm, res.seconds);
    ml_mc_result_free(&res);
    ml_mc_free(&set);
    ml_tokenizer_free(tok);
    if (m.params) ml_model_free(&m);
    if (s != ML_OK && ps.open) fputc('\n', stderr); /* the error goes on a line of its own */
    if (s == ML_ERR_INTERRUPTED) return ml_cli_fail("eval"), 130;
    return s == ML_OK ? 0 : ml_cli_fail("eval");
}

int ml_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *task = NULL, *tok = "bytes", *dir = ML_SOURCE_DIR "/../shared/data/eval", *json = NULL;
    ml_str_list data = {0};
    int B = 4, T = 256, max_batches = 0, limit = 0, bos = 0, max_len = 0;
    ml_opt opts[] = {
        {"ckpt", ML_OPT_STR, &ckpt, "checkpoint (.h5)", 1, 0},
        {"data", ML_OPT_STR_LIST, &data, "token shards to score (loss and perplexity)", 0, 0},
        {"batch", ML_OPT_INT, &B, "sequences per batch (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &T, "tokens per sequence (default 256)", 0, 0},
        {"max-batches", ML_OPT_INT, &max_batches, "stop after this many batches (default: one pass)", 0, 0},
        {"task", ML_OPT_STR, &task, "zero-shot multiple choice: hellaswag, piqa, arc_easy, arc_challenge", 0, 0},
        {"tokenizer", ML_OPT_STR, &tok, "tokenizer for --task: bytes (default) or a tokenizer file", 0, 0},
        {"eval-dir", ML_OPT_STR, &dir, "folder of the task files (default ../shared/data/eval)", 0, 0},
        {"limit", ML_OPT_INT, &limit, "score only the first N items of --task (default: all)", 0, 0},
        {"bos", ML_OPT_FLAG, &bos, "begin every --task context with BOS (the harness does not)", 0, 0},
        {"json", ML_OPT_STR, &json, "also write the --task results with per-item scores to this file", 0, 0},
        {"max-len", ML_OPT_INT, &max_len,
         "--task window in tokens (default: the config's max_position_embeddings); longer inputs lose their start", 0, 0},
    };
    int rc = ml_args_parse("eval",
                           "--ckpt CKPT (--data SHARD... [--batch B] [--seq T] | --task TASK [--tokenizer bytes|PATH] "
                           "[--limit N] [--max-len N] [--json FILE])",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if ((task != NULL) == (data.count > 0)) {
        fprintf(stderr, "mobilellm eval: give either --data SHARD... or --task TASK\n");
        return 2;
    }
    if (task) {
        if (limit < 0) {
            fprintf(stderr, "mobilellm eval: --limit %d must be >= 0\n", limit);
            return 2;
        }
        if (max_len < 0) {
            fprintf(stderr, "mobilellm eval: --max-len %d must be >= 0\n", max_len);
            return 2;
        }
        return eval_mc(ckpt, task, tok, dir, limit, bos, max_len, json);
    }
    if (B < 1 || T < 1 || max_batches < 0) {
        fprintf(stderr, "mobilellm eval: --batch and --seq must be positive\n");
        return 2;
    }
    if (ml_expand_data_args("eval", &data) != 0) return 1;
    ml_model m;
    if (ml_model_load_any(ckpt, &m) != ML_OK) {
        ml_str_list_release(&data);
        return ml_cli_fail("eval");
    }
    m.recompute = 1; /* forward only: blocks share one set of buffers */
    ml_domain_loss dl[ML_EVAL_MAX_DOMAINS];
    int nd = 0;
    ml_status s = ml_eval_loss_by_domain(&m, data.items, data.count, B, T, max_batches, dl, &nd);
    if (s == ML_OK) {
        /* one line per domain when the shards carry several, then the token-weighted total */
        double sum = 0;
        int64_t tokens = 0;
        for (int g = 0; g < nd; g++) {
            if (nd > 1)
                printf("{\"domain\":\"%s\",\"loss\":%.6f,\"perplexity\":%.4f,\"tokens\":%lld}\n", dl[g].domain,
                       dl[g].loss, exp(dl[g].loss), (long long)dl[g].tokens);
            sum += dl[g].loss * (double)dl[g].tokens;
            tokens += dl[g].tokens;
        }
        double loss = tokens ? sum / (double)tokens : 0.0;
        printf("{\"loss\":%.6f,\"perplexity\":%.4f,\"tokens\":%lld}\n", loss, exp(loss), (long long)tokens);
    }
    ml_model_free(&m);
    ml_str_list_release(&data);
    return s == ML_OK ? 0 : ml_cli_fail("eval");
}
