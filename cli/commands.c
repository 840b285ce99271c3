/* The table of subcommands (one line per cli/cmd_<name>.c). */
#include "cli/commands.h"

#define ML_DECLARE(n) int ml_cmd_##n(int argc, char **argv);
ML_DECLARE(version)
#undef ML_DECLARE

const ml_command ml_commands[] = {
    {"version", ml_cmd_version, "print the version and the BLAS kernel in use"},
};
const int ml_num_commands = sizeof ml_commands / sizeof ml_commands[0];
