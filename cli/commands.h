/* Every subcommand: int ml_cmd_<name>(int argc, char **argv), argv[0] being the subcommand.
 * Each lives in cli/cmd_<name>.c, parses its options with cli/args.h and calls the library. */
#ifndef ML_CLI_COMMANDS_H
#define ML_CLI_COMMANDS_H

#include "common/log.h"
#include "train/trainer.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} ml_command;

extern const ml_command ml_commands[];
extern const int ml_num_commands;

/* Printers of the library's progress reports (cli/progress.c): a line on stdout; a line on stderr;
 * a line on stderr rewritten in place on a terminal; a line on stderr always rewritten in place
 * ("\r"), ended by the final report. */
void ml_cli_progress_stdout(const ml_progress_report *r, void *user);
void ml_cli_progress_stderr(const ml_progress_report *r, void *user);
void ml_cli_progress_tty(const ml_progress_report *r, void *user);
void ml_cli_progress_rewrite(const ml_progress_report *r, void *user);

/* `train` and `distill` share one implementation (cli/cmd_train.c). */
int ml_train_cli(const char *cmd, int argc, char **argv, int distill);
/* The same with other defaults and usage line (`qat`, cli/cmd_qat.c). */
int ml_train_cli_preset(const char *cmd, int argc, char **argv, int distill, const ml_train_args *preset,
                        const char *usage);

#endif
