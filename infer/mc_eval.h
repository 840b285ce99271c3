/* Zero-shot multiple-choice evaluation (HellaSwag, PIQA, ARC-Easy, ARC-Challenge) as
 * lm-evaluation-harness scores it:
 *   hellaswag   context = preprocess(ctx), choices = preprocess(ending)  (preprocess: strip,
 *               " [title]" -> ". ", drop "[...]", "  " -> " "). The shared file already holds
 *               "activity_label: ctx" with klosax's / llama.cpp's preprocessing; the harness's
 *               ctx_b.capitalize() cannot be redone because ctx_a and ctx_b are not kept apart.
 *   piqa        context = "Question: " goal "\nAnswer:", choices = sol1, sol2
 *   arc_*       context = "Question: " question "\nAnswer:", choices = choice texts,
 *               gold = index of answerKey among the choice labels
 * Continuation = " " + choice. Tokens as the harness's _encode_pair: trailing spaces of the context
 * move to the continuation; whole = encode(context + continuation), ctx = encode(context),
 * continuation tokens = whole[len(ctx):]; the model reads (ctx + cont)[-(max_len + 1):][:-1].
 * Score = sum of the continuation tokens' log-probabilities. acc: argmax of the score; acc_norm:
 * argmax of score / length of the choice text in characters (code points, as Python's len);
 * first maximum on ties, as numpy.argmax. */
#ifndef ML_INFER_MC_EVAL_H
#define ML_INFER_MC_EVAL_H

#include "data/tokenizer.h"
#include "model/model.h"

#define ML_MC_MAX_CHOICES 8

typedef enum { ML_MC_HELLASWAG = 0, ML_MC_PIQA, ML_MC_ARC_EASY, ML_MC_ARC_CHALLENGE } ml_mc_task;

typedef struct {
    char *context;
    int n_choices, label;
    char *choices[ML_MC_MAX_CHOICES]; /* without the leading space */
} ml_mc_item;

typedef struct {
    ml_mc_task task;
    int n;
    ml_mc_item *items;
} ml_mc_set;

/* "hellaswag", "piqa", "arc_easy", "arc_challenge" */
ml_status ml_mc_task_parse(const char *name, ml_mc_task *t);
const char *ml_mc_task_name(ml_mc_task t);
/* File name of the task in the shared eval folder ("hellaswag_val.jsonl", ...). */
const char *ml_mc_task_file(ml_mc_task t);

/* Read up to `limit` items (0: all) of a task's JSON Lines file; errors name file and line. */
ml_status ml_mc_load(ml_mc_set *s, ml_mc_task t, const char *path, int limit);
void ml_mc_free(ml_mc_set *s);

typedef struct {
    int label, n_choices, pred, pred_norm;
    double ll[ML_MC_MAX_CHOICES];
    int n_tokens[ML_MC_MAX_CHOICES]; /* continuation tokens scored */
    int n_chars[ML_MC_MAX_CHOICES];  /* acc_norm's length */
} ml_mc_score;

typedef struct {
    int n, correct, correct_norm;
    double acc, acc_norm, seconds;
    long long tokens; /* tokens run through the model */
    ml_mc_score *items;
} ml_mc_result;

typedef struct {
    int add_bos;  /* begin every context with the tokenizer's BOS (the harness does not by default) */
    int max_len;  /* model window for truncation (0: the config's max_position_embeddings) */
    void (*progress)(void *user, int done, int total, long long tokens);
    void *progress_user;
} ml_mc_opts;

/* Stops between items with ML_ERR_INTERRUPTED once a stop is requested (common/signals.h). */
ml_status ml_mc_evaluate(ml_model *m, const ml_tokenizer *tok, const ml_mc_set *s, const ml_mc_opts *o,
                         ml_mc_result *r);
void ml_mc_result_free(ml_mc_result *r);
/* {"task", "items", "acc", "acc_norm", "seconds", "scores": [{"label", "pred", "pred_norm", "ll": [...],
 * "tokens": [...], "chars": [...]}, ...]}, written atomically. */
ml_status ml_mc_write_json(const char *path, const ml_mc_set *s, const ml_mc_result *r);

#endif
