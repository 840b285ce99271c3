/* `distill`: training with a teacher's logits as the target (see distill/kd_loss.h). */
#include "cli/commands.h"

int ml_cmd_distill(int argc, char **argv) { return ml_train_cli("distill", argc, argv, 1); }
