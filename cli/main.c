/* mobilellm: the command-line front end. Only dispatches; the work is in the library. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/log.h"
#include "common/signals.h"

/* The library's log lines: what it is doing on stdout, warnings and errors on stderr. */
static void log_sink(ml_log_level level, const char *line, void *user) {
    FILE *out = level >= ML_LOG_WARN ? stderr : stdout;
    fputs(line, out);
    fputc('\n', out);
    if (level >= ML_LOG_WARN) fflush(out);
}

static void usage(void) {
    printf("mobilellm: train, distill and export MobileLLM-family models on the CPU\n\n"
           "usage: mobilellm <command> [options]   (mobilellm <command> --help for its options)\n\ncommands:\n");
    for (int i = 0; i < ml_num_commands; i++) printf("  %-14s %s\n", ml_commands[i].name, ml_commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    ml_signals_install();
    ml_log_set_sink(log_sink, NULL, ML_LOG_INFO);
    for (int i = 0; i < ml_num_commands; i++)
        if (!strcmp(argv[1], ml_commands[i].name)) return ml_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mobilellm: unknown command '%s' (see mobilellm --help)\n", argv[1]);
    return 2;
}
