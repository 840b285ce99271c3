/* mobilellm tokenizer train: stub until data/bpe_train lands */
#include <stdio.h>
int ml_tokenizer_train_main(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "mobilellm tokenizer train: not yet\n"); return 1; }
