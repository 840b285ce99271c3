/* Byte-level BPE training, written out as a Hugging Face tokenizer.json.
 *
 * Text is pre-tokenized with Llama-3's regex (after replacing ill-formed UTF-8 by U+FFFD, as
 * encoding does); the distinct pieces are counted. Ids 0..255 are the bytes (id = byte value).
 * Each step merges the most frequent adjacent pair (ties: the smaller left id, then the smaller
 * right id) in every word, with incremental pair counts (only the words holding the pair are
 * touched) and a lazy max-heap, until the vocabulary is full or the best pair occurs fewer than
 * min_frequency times. Special tokens follow the merges.
 *
 * The tokenizer.json: model BPE (vocab in GPT-2 byte-level strings, merges as "a b",
 * ignore_merges false), pre_tokenizer Sequence[Split(Llama-3 regex, Isolated),
 * ByteLevel(add_prefix_space=false, use_regex=false)], decoder ByteLevel, the specials as
 * added_tokens. Loaded back (data/tokenizer_hf.h), it segments every training piece exactly as
 * training did. */
#ifndef ML_DATA_BPE_TRAIN_H
#define ML_DATA_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/status.h"

typedef struct ml_bpe_trainer ml_bpe_trainer;

typedef struct {
    uint32_t vocab_size;    /* total: 256 bytes + merges + specials */
    uint64_t min_frequency; /* stop when the best pair occurs fewer times (default 2 when 0) */
    const char *const *specials; /* NULL: <|begin_of_text|>, <|end_of_text|> */
    int n_specials;
    int verbose; /* report progress every 1000 merges ... */
    ml_progress on_progress; /* ... to this callback (task "bpe-train", units: merges) */
} ml_bpe_train_opts;

ml_status ml_bpe_trainer_new(ml_bpe_trainer **out);
void ml_bpe_trainer_free(ml_bpe_trainer *t);
/* Pre-tokenize text and count its pieces (before training). */
ml_status ml_bpe_trainer_add_text(ml_bpe_trainer *t, const char *text, size_t len);
ml_status ml_bpe_trainer_train(ml_bpe_trainer *t, const ml_bpe_train_opts *o);
/* Write tokenizer.json (atomically). */
ml_status ml_bpe_trainer_write_json(const ml_bpe_trainer *t, const char *path);

/* After training: counts, and the training-time segmentation of distinct piece i. */
size_t ml_bpe_trainer_n_words(const ml_bpe_trainer *t);
uint32_t ml_bpe_trainer_n_merges(const ml_bpe_trainer *t);
uint32_t ml_bpe_trainer_vocab_size(const ml_bpe_trainer *t);
const uint8_t *ml_bpe_trainer_word(const ml_bpe_trainer *t, size_t i, size_t *len, uint64_t *count,
                                   const uint32_t **ids, size_t *n_ids);

#endif
