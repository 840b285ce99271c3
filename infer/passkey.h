/* Pass-key retrieval: a needle ("The pass key is NNNNN. Remember it. NNNNN is the pass key.") hidden
 * at a depth inside filler text of a target length, followed by "What is the pass key? The pass key
 * is"; a sample counts as retrieved when greedy decoding produces the key (checked teacher-forced
 * along the answer's candidate tokenizations: the argmax at each answer position is its next token). This is the
 * long-context probe of implicit positional distillation: a student pre-trained at short context
 * scores near 0 beyond its training length; a good teacher near 100%. */
#ifndef ML_PASSKEY_H
#define ML_PASSKEY_H

#include "common/log.h"
#include "data/tokenizer.h"
#include "model/model.h"

typedef struct {
    int length;     /* target prompt length in tokens */
    int samples;    /* prompts evaluated at this length */
    int correct;    /* retrieved */
    int skipped;    /* prompts no answer tokenization fitted (not counted) */
    double mean_tokens;
    /* mean over the samples of the negative log-likelihood (nats per token) of the answer " NNNNN" as the
     * prompt + answer tokenize together, teacher-forced: a graded signal where accuracy is still 0 (a model
     * that ignores the needle pays about ln(10) per digit). NaN when no sample had that tokenization. */
    double answer_nll;
    int nll_samples;
} ml_passkey_result;

typedef struct {
    int samples;            /* per length; depths spread evenly over [0, 1) */
    uint64_t seed;          /* pass keys */
    const char *filler;     /* filler text (sentences are repeated); NULL = a built-in neutral filler */
    int key_digits;         /* digits of each pass key, 1-9 (0: 5, NNNNN) */
    ml_progress progress;   /* a report per prompt (task "passkey", units: prompts) and a final one */
} ml_passkey_opts;

/* The model must not be reserved smaller than max(lengths) + 8 tokens: this function reserves it. */
ml_status ml_passkey_eval(ml_model *m, const ml_tokenizer *tok, const int *lengths, int n_lengths,
                          const ml_passkey_opts *o, ml_passkey_result *out);

/* Synthetic pass-key training rows (the template the evaluation above asks, and the one the 28M teacher in
 * ../shared was trained with): a span of `filler` starting at a random sentence start, min_bytes..max_bytes
 * long (uniform, cut at a sentence end), with "The pass key is NNNNN. Remember it. NNNNN is the pass key. "
 * inserted at a uniformly random sentence boundary, then "What is the pass key? The pass key is NNNNN".
 * Written as JSON Lines, one {"text": ROW} per row (tokenize --jsonl-field text), atomically. The same
 * options give the same file. filler NULL: the evaluation's built-in filler, repeated as needed (rows whose
 * only unpredictable tokens are the key: the densest retrieval signal per token). */
typedef struct {
    int rows;
    int min_bytes, max_bytes; /* filler bytes per row, before the needle and the question */
    int key_digits;           /* digits of each pass key, 1-9 (0: 5) */
    uint64_t seed;
} ml_passkey_rows_opts;

ml_status ml_passkey_write_rows(const char *path, const char *filler, size_t filler_n, const ml_passkey_rows_opts *o);

#endif
