/* mobilellm tokenizer train: byte-level BPE from text files -> tokenizer.json.
 * The sub-verb of `mobilellm tokenizer` (wired in cli/cmd_tokenizer.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "common/atomic_file.h"
#include "common/status.h"
#include "data/bpe_train.h"

int ml_tokenizer_train_main(int argc, char **argv);

static ml_status run(const ml_str_list *inputs, int vocab, int64_t min_freq, const char *out, int verbose) {
    if (vocab <= 0) return ml_fail(ML_ERR_ARG, "--vocab must be positive, got %d", vocab);
    if (min_freq < 1) return ml_fail(ML_ERR_ARG, "--min-frequency must be at least 1, got %lld", (long long)min_freq);
    if (inputs->count == 0) return ml_fail(ML_ERR_ARG, "--input needs at least one file");
    ml_bpe_trainer *t = NULL;
    ML_TRY(ml_bpe_trainer_new(&t));
    ml_status s = ML_OK;
    uint64_t bytes = 0;
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < inputs->count && s == ML_OK; i++) {
        char *data = NULL;
        size_t n = 0;
        s = ml_read_file(inputs->items[i], &data, &n);
        if (s == ML_OK) s = ml_bpe_trainer_add_text(t, data, n);
        bytes += n;
        free(data);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ml_bpe_train_opts o = {.vocab_size = (uint32_t)vocab, .min_frequency = (uint64_t)min_freq, .verbose = verbose,
                          .on_progress = {ml_cli_progress_stderr, NULL}};
    if (s == ML_OK) s = ml_bpe_trainer_train(t, &o);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    if (s == ML_OK) s = ml_bpe_trainer_write_json(t, out);
    if (s == ML_OK) {
        double pre = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        double tr = (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec);
        printf("{\"out\": \"%s\", \"bytes\": %llu, \"distinct_pieces\": %zu, \"merges\": %u, \"vocab\": %u, "
               "\"pretokenize_s\": %.2f, \"train_s\": %.2f}\n",
               out, (unsigned long long)bytes, ml_bpe_trainer_n_words(t), ml_bpe_trainer_n_merges(t),
               ml_bpe_trainer_vocab_size(t), pre, tr);
        if ((uint32_t)vocab > ml_bpe_trainer_vocab_size(t))
            fprintf(stderr, "note: stopped at %u tokens: no pair occurs %lld times or more\n",
                    ml_bpe_trainer_vocab_size(t), (long long)min_freq);
    }
    ml_bpe_trainer_free(t);
    return s;
}

int ml_tokenizer_train_main(int argc, char **argv) {
    int vocab = 0, verbose = 0;
    int64_t min_freq = 2;
    const char *out = NULL;
    ml_str_list inputs = {0};
    ml_opt opts[] = {
        {"vocab", ML_OPT_INT, &vocab, "vocabulary size: 256 bytes + merges + 2 specials", 1, 0},
        {"input", ML_OPT_STR_LIST, &inputs, "training text files", 1, 0},
        {"out", ML_OPT_STR, &out, "the tokenizer.json to write", 1, 0},
        {"min-frequency", ML_OPT_I64, &min_freq, "stop when the best pair is rarer (default 2)", 0, 0},
        {"verbose", ML_OPT_FLAG, &verbose, "progress every 1000 merges", 0, 0},
    };
    int r = ml_args_parse("tokenizer train", "mobilellm tokenizer train --vocab N --input FILE... --out tokenizer.json", opts,
                          (int)(sizeof opts / sizeof opts[0]), argc, argv);
    if (r) return r < 0 ? 2 : 0;
    return run(&inputs, vocab, min_freq, out, verbose) == ML_OK ? 0 : ml_cli_fail("tokenizer train");
}
