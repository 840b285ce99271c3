/* How the CLI shows the library's progress reports (common/log.h). */
#include <stdio.h>
#include <unistd.h>

#include "cli/commands.h"

void ml_cli_progress_stdout(const ml_progress_report *r, void *user) {
    printf("%s\n", r->line);
    fflush(stdout);
}

void ml_cli_progress_stderr(const ml_progress_report *r, void *user) { fprintf(stderr, "%s\n", r->line); }

void ml_cli_progress_tty(const ml_progress_report *r, void *user) {
    int tty = isatty(2);
    fprintf(stderr, "%s%s%s", tty ? "\r" : "", r->line, tty && !r->final ? "" : "\n");
}

void ml_cli_progress_rewrite(const ml_progress_report *r, void *user) {
    if (r->final)
        fputc('\n', stderr);
    else
        fprintf(stderr, "\r%s   ", r->line);
}
