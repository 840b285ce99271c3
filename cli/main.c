/* mobilellm: the command-line front end. Only dispatches; the work is in the library. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/dist.h"
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
    /* under mpirun: rank 0 prints what the run does; the other ranks only their own warnings and errors */
    if (ml_dist_init() != ML_OK) {
        fprintf(stderr, "mobilellm: %s\n", ml_last_error());
        return 1;
    }
    ml_log_set_sink(log_sink, NULL, ml_dist_rank() == 0 ? ML_LOG_INFO : ML_LOG_WARN);
    for (int i = 0; i < ml_num_commands; i++)
        if (!strcmp(argv[1], ml_commands[i].name)) {
            int rc = ml_commands[i].run(argc - 1, argv + 1);
            /* a failure all ranks agreed on ends each cleanly; any other failure ends the whole job */
            if (rc != 0 && rc != 130 && ml_dist_size() > 1 && !ml_dist_failure_agreed()) ml_dist_abort(rc);
            ml_dist_finalize();
            return rc;
        }
    fprintf(stderr, "mobilellm: unknown command '%s' (see mobilellm --help)\n", argv[1]);
    return 2;
}
