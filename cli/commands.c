/* The table of subcommands (one line per cli/cmd_<name>.c). */
#include "cli/commands.h"

#define ML_DECLARE(n) int ml_cmd_##n(int argc, char **argv);
ML_DECLARE(version)
ML_DECLARE(tokenize)
ML_DECLARE(data)
#undef ML_DECLARE

const ml_command ml_commands[] = {
    {"version", ml_cmd_version, "print the version and the BLAS kernel in use"},
    {"tokenize", ml_cmd_tokenize, "text files -> token shard (byte tokenizer)"},
    {"data", ml_cmd_data, "inspect token shards: info, dump"},
};
const int ml_num_commands = sizeof ml_commands / sizeof ml_commands[0];
