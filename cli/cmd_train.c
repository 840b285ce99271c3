#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "train/trainer.h"

/* `train` and `distill` share everything but the teacher options; `qat` (cli/cmd_qat.c) is `distill` with its own
 * defaults and usage (preset, usage: NULL for train and distill). */
int ml_train_cli_preset(const char *cmd, int argc, char **argv, int distill, const ml_train_args *preset,
                        const char *usage) {
    ml_train_args a;
    if (preset) a = *preset;
    else ml_train_args_defaults(&a);
    const char *optim = "adamw", *schedule = "cosine", *precision = "fp32", *kd_loss = "fkl", *kd_tail = "renorm";
    ml_str_list data = {0}, sources = {0};
    int64_t seed = (int64_t)a.seed;
    ml_opt opts[] = {
        {"config", ML_OPT_STR, &a.config_path, "fresh model from an HF-style config.json (see configs/)", 0, 0},
        {"init", ML_OPT_STR, &a.init_ckpt, "start from the weights of a checkpoint", 0, 0},
        {"resume", ML_OPT_STR, &a.resume_ckpt, "continue a run from its checkpoint (bit-exact)", 0, 0},
        {"data", ML_OPT_STR_LIST, &data, "training token shards", 0, 0},
        {"source", ML_OPT_STR_LIST, &sources, "or a mixture: SHARD[,SHARD...]:WEIGHT[:DOMAIN] per source, drawn per row", 0, 0},
        {"shuffle-rows", ML_OPT_INT, &a.shuffle_rows, "with --source: shuffle buffer of this many rows (default 0 = off)", 0, 0},
        {"val", ML_OPT_STR, &a.val, "held-out shard for periodic evaluation", 0, 0},
        {"batch", ML_OPT_INT, &a.batch, "sequences per micro-batch (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &a.seq, "tokens per sequence (default 256)", 0, 0},
        {"steps", ML_OPT_I64, &a.steps, "total optimizer steps of the run (default 100)", 0, 0},
        {"stop-after", ML_OPT_I64, &a.stop_after, "stop with a checkpoint after this step (same schedule as --steps)", 0, 0},
        {"grad-accum", ML_OPT_INT, &a.grad_accum, "micro-batches per step (default 1)", 0, 0},
        {"optim", ML_OPT_STR, &optim, "adamw | sgd (default adamw)", 0, 0},
        {"lr", ML_OPT_FLOAT, &a.lr, "peak learning rate (default 2e-3)", 0, 0},
        {"schedule", ML_OPT_STR, &schedule, "constant | linear | cosine | wsd (default cosine)", 0, 0},
        {"min-lr-ratio", ML_OPT_FLOAT, &a.min_lr_ratio, "final lr as a fraction of the peak (default 0.1)", 0, 0},
        {"warmup", ML_OPT_I64, &a.warmup, "linear warmup steps (default 0)", 0, 0},
        {"wsd-decay", ML_OPT_FLOAT, &a.wsd_decay_fraction, "wsd: fraction of steps in the decay (default 0.2)", 0, 0},
        {"weight-decay", ML_OPT_FLOAT, &a.weight_decay, "decoupled weight decay, not on norms (default 0.1)", 0, 0},
        {"beta1", ML_OPT_FLOAT, &a.beta1, "AdamW beta1 (default 0.9)", 0, 0},
        {"beta2", ML_OPT_FLOAT, &a.beta2, "AdamW beta2 (default 0.95)", 0, 0},
        {"adam-eps", ML_OPT_FLOAT, &a.eps, "AdamW epsilon (default 1e-8)", 0, 0},
        {"momentum", ML_OPT_FLOAT, &a.momentum, "SGD momentum (default 0)", 0, 0},
        {"clip", ML_OPT_FLOAT, &a.clip, "global gradient-norm clip, 0 = off (default 1.0)", 0, 0},
        {"seed", ML_OPT_I64, &seed, "seed for initialisation and data order (default 1)", 0, 0},
        {"out", ML_OPT_STR, &a.out_dir, "run directory: checkpoints and metrics.jsonl", 1, 0},
        {"keep", ML_OPT_INT, &a.keep, "checkpoints kept (default 3)", 0, 0},
        {"ckpt-every", ML_OPT_I64, &a.ckpt_every, "steps between checkpoints (default: at the end only)", 0, 0},
        {"eval-every", ML_OPT_I64, &a.eval_every, "steps between evaluations on --val (default: at the end)", 0, 0},
        {"eval-batches", ML_OPT_INT, &a.eval_batches, "batches per evaluation (default 8)", 0, 0},
        {"quiet", ML_OPT_FLAG, &a.quiet, "no per-step progress lines", 0, 0},
        {"doc-positions", ML_OPT_FLAG, &a.doc_positions, "positions restart at each document (default: continue)", 0, 0},
        {"doc-mask", ML_OPT_FLAG, &a.doc_mask, "attend only within each document of a packed window", 0, 0},
        {"recompute", ML_OPT_FLAG, &a.recompute,
         "keep only each block's input; backward recomputes the block (long windows in less memory)", 0, 0},
        {"precision", ML_OPT_STR, &precision, "fp32 | bf16: GEMMs on bf16 inputs, fp32 accumulation and state (default fp32)", 0, 0},
        {"rope-theta", ML_OPT_FLOAT, &a.rope_theta, "set RoPE theta for this run (e.g. raised for context extension)", 0, 0},
        /* distill only (kept last) */
        {"teacher", ML_OPT_STR, &a.teacher, "teacher checkpoint or HF directory (same tokenizer)", 0, 0},
        {"cache", ML_OPT_STR, &a.cache, "or a teacher-logit cache of this data, B and T (teacher-logits)", 0, 0},
        {"tail", ML_OPT_STR, &kd_tail, "with --cache: renorm | bucket (default renorm)", 0, 0},
        {"loss", ML_OPT_STR, &kd_loss, "fkl | rkl | jsd (default fkl)", 0, 0},
        {"temperature", ML_OPT_FLOAT, &a.temperature, "distillation temperature (default 1)", 0, 0},
        {"beta", ML_OPT_FLOAT, &a.kd_beta, "JSD mixing weight (default 0.5)", 0, 0},
        {"ce-weight", ML_OPT_FLOAT, &a.ce_weight, "weight of the hard-label cross-entropy (default 0)", 0, 0},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]) - (distill ? 0 : 7);
    int rc = ml_args_parse(cmd,
                           usage ? usage : distill ? "(--teacher CKPT|HF_DIR | --cache CACHE.h5 [--tail renorm|bucket]) (--init CKPT | --config CFG | --resume CKPT) (--data SHARD... | --source SPEC...) "
                                     "--out DIR [--loss fkl|rkl|jsd] [--temperature T] [--ce-weight W] [train options]"
                                   : "(--config CFG | --init CKPT | --resume CKPT) (--data SHARD... | --source SHARD[,SHARD...]:WEIGHT[:DOMAIN]...) --out DIR [options]",
                           opts, n_opts, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    char *stored_strings = NULL, *stored_teacher = NULL, *stored_cache = NULL;
    if (a.resume_ckpt) {
        /* A resumed run uses its stored arguments; options given now override them. */
        char *json = NULL;
        if (ml_checkpoint_read_args(a.resume_ckpt, &json) != ML_OK) return ml_cli_fail(cmd);
        if (json) {
            const char *keep[64];
            int n_keep = 0;
            for (int i = 0; i < n_opts; i++)
                if (opts[i].seen) {
                    static char names[64][32];
                    snprintf(names[n_keep], sizeof names[n_keep], "%s", opts[i].name);
                    for (char *p = names[n_keep]; *p; p++)
                        if (*p == '-') *p = '_';
                    if (!strcmp(names[n_keep], "adam_eps")) snprintf(names[n_keep], 32, "eps");
                    if (!strcmp(names[n_keep], "wsd_decay")) snprintf(names[n_keep], 32, "wsd_decay_fraction");
                    keep[n_keep] = names[n_keep];
                    n_keep++;
                }
            ml_status s = ml_train_args_from_json(&a, json, keep, n_keep, &stored_strings);
            if (s == ML_OK && !a.teacher && !a.cache) s = ml_train_args_stored_teacher(json, &stored_teacher);
            if (s == ML_OK && !a.teacher && !a.cache) s = ml_train_args_stored_str(json, "cache", &stored_cache);
            free(json);
            if (s != ML_OK) return ml_cli_fail(cmd);
            static char stored_kd[8];
            snprintf(stored_kd, sizeof stored_kd, "%s", a.kd_loss);
            if (!ml_args_seen(opts, n_opts, "loss")) kd_loss = stored_kd;
            if (stored_teacher) a.teacher = stored_teacher;
            if (stored_cache) a.cache = stored_cache;
            static char stored_tail[8];
            snprintf(stored_tail, sizeof stored_tail, "%s", a.kd_tail);
            if (!ml_args_seen(opts, n_opts, "tail")) kd_tail = stored_tail;
            static char stored_schedule[16], stored_optim[16], stored_precision[8];
            snprintf(stored_schedule, sizeof stored_schedule, "%s", a.schedule);
            snprintf(stored_optim, sizeof stored_optim, "%s", a.optim);
            snprintf(stored_precision, sizeof stored_precision, "%s", a.precision);
            if (!ml_args_seen(opts, n_opts, "precision")) precision = stored_precision;
            if (!ml_args_seen(opts, n_opts, "schedule")) schedule = stored_schedule;
            if (!ml_args_seen(opts, n_opts, "optim")) optim = stored_optim;
            if (!ml_args_seen(opts, n_opts, "seed")) seed = (int64_t)a.seed;
        }
    }
    if (ml_expand_data_args(cmd, &data) != 0) {
        free(stored_strings);
        free(stored_teacher);
        free(stored_cache);
        return 1;
    }
    if (data.count > ML_MAX_DATA_FILES) {
        fprintf(stderr, "mobilellm %s: at most %d --data files\n", cmd, ML_MAX_DATA_FILES);
        ml_str_list_release(&data);
        return 2;
    }
    if (sources.count > ML_MAX_SOURCES) {
        fprintf(stderr, "mobilellm %s: at most %d --source specs\n", cmd, ML_MAX_SOURCES);
        free(stored_strings);
        return 2;
    }
    if (data.count) {
        a.n_data = data.count;
        for (int i = 0; i < data.count; i++) a.data[i] = data.items[i];
    }
    if (sources.count) {
        a.n_sources = sources.count;
        for (int i = 0; i < sources.count; i++) a.sources[i] = sources.items[i];
    }
    snprintf(a.optim, sizeof a.optim, "%s", optim);
    snprintf(a.schedule, sizeof a.schedule, "%s", schedule);
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) {
        fprintf(stderr, "mobilellm %s: --precision must be fp32 or bf16, not '%s'\n", cmd, precision);
        ml_str_list_release(&data);
        free(stored_strings);
        free(stored_teacher);
        free(stored_cache);
        return 2;
    }
    snprintf(a.precision, sizeof a.precision, "%s", precision);
    snprintf(a.kd_loss, sizeof a.kd_loss, "%s", kd_loss);
    snprintf(a.kd_tail, sizeof a.kd_tail, "%s", kd_tail);
    if (distill && !a.teacher && !a.cache && !a.qat) {
        fprintf(stderr, "mobilellm distill: missing --teacher or --cache (see --help)\n");
        ml_str_list_release(&data);
        free(stored_strings);
        free(stored_cache);
        return 2;
    }
    a.seed = (uint64_t)seed;
    ml_status s = ml_train(&a);
    ml_str_list_release(&data);
    free(stored_strings);
    free(stored_teacher);
    free(stored_cache);
    if (s == ML_ERR_INTERRUPTED) return 130;
    if (s != ML_OK) return ml_cli_fail(cmd);
    return 0;
}

int ml_train_cli(const char *cmd, int argc, char **argv, int distill) {
    return ml_train_cli_preset(cmd, argc, argv, distill, NULL, NULL);
}

int ml_cmd_train(int argc, char **argv) { return ml_train_cli("train", argc, argv, 0); }
