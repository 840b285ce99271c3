/* The one argument parser every subcommand uses: long options only ("--name value" or
 * "--flag"), declared in a table, with --help generated from it. Errors are one line. */
#ifndef ML_CLI_ARGS_H
#define ML_CLI_ARGS_H

#include <stdint.h>

typedef enum { ML_OPT_STR, ML_OPT_INT, ML_OPT_I64, ML_OPT_FLOAT, ML_OPT_FLAG, ML_OPT_STR_LIST } ml_opt_type;

typedef struct {
    const char *name;  /* without the leading "--" */
    ml_opt_type type;
    void *dest;        /* const char** | int* | int64_t* | float* | int* (flag) | ml_str_list* */
    const char *help;
    int required;
    int seen;          /* set by the parser */
} ml_opt;

typedef struct {
    const char **items;
    int count;
    void *owned; /* set by ml_expand_data_args; release with ml_str_list_release */
} ml_str_list;

/* Parse argv[1..] (argv[0] is the subcommand name). Returns 0 on success, 1 if --help was
 * printed, -1 on error (message printed as "mobilellm <cmd>: ..."). STR_LIST options take all
 * following arguments up to the next "--option". */
int ml_args_parse(const char *cmd, const char *usage, ml_opt *opts, int n_opts, int argc, char **argv);

/* Replace every "*.manifest.json" item of a shard list (--data) by the shard paths the manifest
 * lists (data/ingest.h), in place and in order. Returns 0, or prints
 * "mobilellm <cmd>: <error>" and returns 1. Call ml_str_list_release(l) when done with it. */
int ml_expand_data_args(const char *cmd, ml_str_list *l);
void ml_str_list_release(ml_str_list *l);

/* Whether option `name` was given on the command line. */
int ml_args_seen(const ml_opt *opts, int n_opts, const char *name);

/* Print "mobilellm: <what>: <last library error>" and return the exit code 1. */
int ml_cli_fail(const char *cmd);

#endif
