#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "mix/mixture_file.h"
#include "model/checkpoint.h"
#include "train/train_options.h"
#include "train/trainer.h"
#include "common/signals.h"

static void print_step(const ml_train_step_report *r, void *user) {
    const ml_train_args *a = user;
    if (!a->quiet) printf("%s\n", r->line);
}

/* whether --source was given on this command line */
static int given_sources(const ml_train_opt *rows, int n_rows, const int *given) {
    for (int i = 0; i < n_rows; i++)
        if (!strcmp(rows[i].flag, "source")) return given[i];
    return 0;
}

/* `train`, `distill` and `qat` share everything but the teacher and quantization options; all come from the table
 * in train/train_options.c (flags, defaults, help, what resume keeps). `qat` (cli/cmd_qat.c) is `distill` with the
 * quantization rows, its own defaults and usage (preset with qat set, usage: NULL for train and distill). */
int ml_train_cli_preset(const char *cmd, int argc, char **argv, int distill, const ml_train_args *preset,
                        const char *usage) {
    ml_train_args a;
    if (preset) a = *preset;
    else ml_train_args_defaults(&a);
    int n_rows;
    const ml_train_opt *rows = ml_train_options(&n_rows);
    const int command = (distill ? ML_CMD_DISTILL | ML_CMD_TRAIN : ML_CMD_TRAIN) | (a.qat ? ML_CMD_QAT : 0);
    /* the parser's table: one entry per row of this command; values arrive as strings */
    ml_opt opts[64];
    int row_of[64], n_opts = 0;
    const char *values[64] = {0};
    ml_str_list lists[64];
    char help[64][600];
    memset(lists, 0, sizeof lists);
    for (int i = 0; i < n_rows && n_opts < 64; i++) {
        if (!(rows[i].commands & command)) continue;
        ml_train_option_help(&rows[i], preset, help[n_opts], sizeof help[n_opts]);
        ml_opt_type type = rows[i].type == ML_TOPT_FLAG ? ML_OPT_FLAG : rows[i].type == ML_TOPT_STR_LIST ? ML_OPT_STR_LIST : ML_OPT_STR;
        static int flag_values[64];
        void *dest = type == ML_OPT_FLAG ? (void *)&flag_values[n_opts] : type == ML_OPT_STR_LIST ? (void *)&lists[n_opts] : (void *)&values[n_opts];
        opts[n_opts] = (ml_opt){rows[i].flag, type, dest, help[n_opts], rows[i].required, 0};
        row_of[n_opts++] = i;
    }
    /* accepted other spellings (the table's aliases) become the row's flag */
    char **args = malloc(sizeof *args * (size_t)(argc + 1));
    if (!args) return ml_cli_fail(cmd);
    for (int i = 0; i < argc; i++) {
        const ml_train_opt *r = i > 0 && !strncmp(argv[i], "--", 2) ? ml_train_option_find(argv[i] + 2) : NULL;
        static char canon[64][40];
        args[i] = argv[i];
        if (r && strcmp(r->flag, argv[i] + 2) != 0 && i < 64) {
            snprintf(canon[i], sizeof canon[i], "--%s", r->flag);
            args[i] = canon[i];
        }
    }
    args[argc] = NULL;
    argv = args;
    int rc = ml_args_parse(cmd,
                           usage ? usage : distill ? "(--teacher CKPT|HF_DIR | --cache CACHE.h5 [--tail renorm|bucket]) (--init CKPT | --config CFG | --resume CKPT) (--data SHARD... | --source SPEC...) "
                                     "--out DIR [--loss fkl|rkl|jsd] [--temperature T] [--ce-weight W] [train options]"
                                   : "(--config CFG | --init CKPT | --resume CKPT) (--data SHARD... | --source SHARD[,SHARD...]:WEIGHT[:DOMAIN]...) --out DIR [options]",
                           opts, n_opts, argc, argv);
    if (rc) {
        free(args);
        return rc > 0 ? 0 : 2;
    }
    int given[128] = {0};
    ml_status s = ML_OK;
    for (int k = 0; k < n_opts && s == ML_OK; k++) {
        if (!opts[k].seen) continue;
        const ml_train_opt *r = &rows[row_of[k]];
        given[row_of[k]] = 1;
        if (opts[k].type == ML_OPT_STR) s = ml_train_option_set(&a, r, values[k]);
        else if (opts[k].type == ML_OPT_FLAG) s = ml_train_option_set(&a, r, "1");
    }
    if (s != ML_OK) {
        fprintf(stderr, "mobilellm %s: %s\n", cmd, ml_last_error());
        free(args);
        return 2;
    }
    char *stored_strings = NULL;
    if (a.resume_ckpt) {
        /* A resumed run uses its stored arguments; options given now override them (the table says which). */
        char *json = NULL;
        if (ml_checkpoint_read_args(a.resume_ckpt, &json) != ML_OK) {
            free(args);
            return ml_cli_fail(cmd);
        }
        if (json) {
            s = ml_train_args_resume(&a, json, given, &stored_strings);
            free(json);
            if (s != ML_OK) {
                free(args);
                return ml_cli_fail(cmd);
            }
        }
    }
    /* lists given now: --data (manifests expanded) and --source */
    ml_str_list *data = NULL;
    int code = 0;
    for (int k = 0; k < n_opts && !code; k++) {
        if (opts[k].type != ML_OPT_STR_LIST || !opts[k].seen) continue;
        const ml_train_opt *r = &rows[row_of[k]];
        if (!strcmp(r->flag, "data")) {
            data = &lists[k];
            if (ml_expand_data_args(cmd, data) != 0) {
                data = NULL;
                code = 1;
                break;
            }
        }
        if ((size_t)lists[k].count > r->size) {
            fprintf(stderr, "mobilellm %s: at most %zu --%s values\n", cmd, r->size, r->flag);
            code = 2;
            break;
        }
        const char **items = (const char **)((char *)&a + r->offset);
        for (int i = 0; i < lists[k].count; i++) items[i] = lists[k].items[i];
        *(int *)((char *)&a + r->count_offset) = lists[k].count;
    }
    char **mix_specs = NULL;
    int n_mix = 0;
    if (!code && a.mixture && a.n_data == 0 && (a.n_sources == 0 || !a.resume_ckpt || given_sources(rows, n_rows, given))) {
        /* --mixture FILE: its domains become the sources (on resume, unless the checkpoint's are kept) */
        if (a.n_sources > 0 && !a.resume_ckpt) {
            fprintf(stderr, "mobilellm %s: give --mixture or --source, not both\n", cmd);
            code = 2;
        } else if (ml_mixture_file_specs(a.mixture, &mix_specs, &n_mix) != ML_OK) {
            code = ml_cli_fail(cmd);
        } else if (n_mix > (int)(sizeof a.sources / sizeof a.sources[0])) {
            fprintf(stderr, "mobilellm %s: %s has more than %zu domains\n", cmd, a.mixture, sizeof a.sources / sizeof a.sources[0]);
            code = 2;
        } else {
            for (int i = 0; i < n_mix; i++) a.sources[i] = mix_specs[i];
            a.n_sources = n_mix;
        }
    } else if (!code && a.mixture && a.n_data > 0 && !a.resume_ckpt) {
        fprintf(stderr, "mobilellm %s: give --mixture or --data, not both\n", cmd);
        code = 2;
    }
    if (!code && distill && !a.teacher && !a.cache && !a.qat) {
        fprintf(stderr, "mobilellm distill: missing --teacher or --cache (see --help)\n");
        code = 2;
    }
    if (!code) {
        a.callbacks = (ml_train_callbacks){.step = print_step, .user = &a};
        ml_signals_set_graceful(1); /* the trainer checkpoints and stops at the first Ctrl-C */
        s = ml_train(&a);
        code = s == ML_ERR_INTERRUPTED ? 130 : s != ML_OK ? ml_cli_fail(cmd) : 0;
    }
    if (data) ml_str_list_release(data);
    ml_mixture_specs_free(mix_specs, n_mix);
    free(stored_strings);
    free(args);
    return code;
}

int ml_train_cli(const char *cmd, int argc, char **argv, int distill) {
    return ml_train_cli_preset(cmd, argc, argv, distill, NULL, NULL);
}

int ml_cmd_train(int argc, char **argv) { return ml_train_cli("train", argc, argv, 0); }
