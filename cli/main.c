/* mobilellm: the command-line front end. Only dispatches; the work is in the library. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/signals.h"

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
    for (int i = 0; i < ml_num_commands; i++)
        if (!strcmp(argv[1], ml_commands[i].name)) return ml_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mobilellm: unknown command '%s' (see mobilellm --help)\n", argv[1]);
    return 2;
}
