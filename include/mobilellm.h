/* mobilellm.h: the stable C API of mobilellm.c.
 *
 * Train, run and export MobileLLM-family language models on the CPU. This header is self-contained (only
 * standard headers) and is all a program needs: link the static library with
 *     cc prog.c $(pkg-config --static --cflags --libs mobilellm)
 *
 * Conventions
 *   - Every function that can fail returns a mobilellm_status; MOBILELLM_OK is 0. On failure,
 *     mobilellm_last_error() is one line saying what and where (per thread).
 *   - Objects are opaque handles made by a *_new / *_init / *_load / *_open function and released by their
 *     *_free function (NULL is fine). Arrays returned to the caller are released with mobilellm_free().
 *   - The library prints nothing. Its log lines (what a run is doing, warnings) go to the sink installed
 *     with mobilellm_set_log; without one they are dropped.
 *   - A model handle is not thread-safe; use one per thread. Work inside one call is parallel (OpenMP:
 *     OMP_NUM_THREADS sets the threads).
 *
 * Example (examples/train_tiny.c):
 *     mobilellm_model *m;
 *     mobilellm_model_init(&m, "tiny-v1.json", 1);
 *     mobilellm_train_opts o; mobilellm_train_opts_default(&o); o.batch = 2; o.seq = 32;
 *     mobilellm_trainer *t; mobilellm_trainer_new(&t, m, &o);
 *     double loss; mobilellm_train_step(t, tokens, targets, &loss);
 */
#ifndef MOBILELLM_H
#define MOBILELLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOBILELLM_VERSION "0.1.0"
#define MOBILELLM_API_VERSION 1 /* raised on an incompatible change of this header */

typedef enum {
    MOBILELLM_OK = 0,
    MOBILELLM_ERR_ARG,         /* bad argument or option value */
    MOBILELLM_ERR_IO,          /* open/read/write/rename failed */
    MOBILELLM_ERR_FORMAT,      /* a file is not what it claims to be */
    MOBILELLM_ERR_CONFIG,      /* invalid or inconsistent model configuration */
    MOBILELLM_ERR_RANGE,       /* a value out of range (token id, position, size) */
    MOBILELLM_ERR_NOMEM,       /* allocation failed */
    MOBILELLM_ERR_UNSUPPORTED, /* valid input the library cannot handle (the message says why) */
    MOBILELLM_ERR_INTERRUPTED, /* stopped by a signal */
} mobilellm_status;

/* "0.1.0" (the library's version, which may be newer than the header's MOBILELLM_VERSION). */
const char *mobilellm_version(void);
/* The message of this thread's last failure ("" if none). */
const char *mobilellm_last_error(void);
/* Release an array the library returned (token ids, text). */
void mobilellm_free(void *p);

/* ------------------------------------------------------------------ log lines */
typedef enum { MOBILELLM_LOG_DEBUG = 0, MOBILELLM_LOG_INFO, MOBILELLM_LOG_WARN, MOBILELLM_LOG_ERROR } mobilellm_log_level;
typedef void (*mobilellm_log_fn)(mobilellm_log_level level, const char *line, void *user);
/* Install the process's log sink (NULL: drop lines) and the lowest level it receives. */
void mobilellm_set_log(mobilellm_log_fn fn, void *user, mobilellm_log_level min_level);

/* ------------------------------------------------------------------ models */
typedef struct mobilellm_model mobilellm_model;

/* A fresh model from an HF-style config (a config.json path, or its JSON text when it starts with '{'),
 * initialised as MobileLLM does from `seed`. */
mobilellm_status mobilellm_model_init(mobilellm_model **out, const char *config, uint64_t seed);
/* A model from a native checkpoint (.h5) or a Hugging Face directory (config.json + safetensors). */
mobilellm_status mobilellm_model_load(mobilellm_model **out, const char *path);
/* Write the weights as a native checkpoint (atomically). */
mobilellm_status mobilellm_model_save(const mobilellm_model *m, const char *path);
void mobilellm_model_free(mobilellm_model *m);

int64_t mobilellm_model_num_params(const mobilellm_model *m);
int mobilellm_model_vocab_size(const mobilellm_model *m);
/* The config's name ("mobilellm-125m", ...). */
const char *mobilellm_model_name(const mobilellm_model *m);

/* Logits of one sequence: tokens[n] -> logits[n * vocab_size] (row i predicts token i + 1). */
mobilellm_status mobilellm_model_logits(mobilellm_model *m, const int32_t *tokens, int n, float *logits);
/* Mean cross-entropy of batch rows tokens[batch * seq] against targets[batch * seq] (a target < 0 is not
 * scored), without touching the weights. */
mobilellm_status mobilellm_model_loss(mobilellm_model *m, const int32_t *tokens, const int32_t *targets, int batch,
                                      int seq, double *loss);

/* Export: a Hugging Face directory (safetensors + config.json; dtype "f32", "bf16" or "f16", NULL: the dtype
 * the weights were imported in, else f32), or a GGUF file for llama.cpp (type "f32", "f16", "q8_0" or "q4_0",
 * NULL: f32; tokenizer: NULL or "bytes" for the byte vocabulary, or a SentencePiece .model). */
mobilellm_status mobilellm_export_hf(const mobilellm_model *m, const char *dir, const char *dtype);
mobilellm_status mobilellm_export_gguf(const mobilellm_model *m, const char *path, const char *type,
                                       const char *tokenizer);

/* ------------------------------------------------------------------ training steps */
typedef struct mobilellm_trainer mobilellm_trainer;

typedef struct {
    const char *optimizer; /* "adamw" (default) or "sgd" */
    float lr;              /* learning rate of each step (default 2e-3; change with mobilellm_trainer_set_lr) */
    float weight_decay;    /* NaN (default): the optimizer's own (0.1 decoupled for adamw, 0 for sgd, L2) */
    float beta1, beta2, eps; /* AdamW (0.9, 0.95, 1e-8) */
    float momentum;        /* SGD (0) */
    float clip;            /* global gradient-norm clip, 0 = off (default 1.0) */
    int batch, seq;        /* the shape of every step's batch (default 4 x 256) */
} mobilellm_train_opts;

void mobilellm_train_opts_default(mobilellm_train_opts *o);
/* A trainer of model m (which must outlive it) with its optimizer state. */
mobilellm_status mobilellm_trainer_new(mobilellm_trainer **out, mobilellm_model *m, const mobilellm_train_opts *o);
/* One optimizer step on a batch: tokens and targets [batch * seq] (a target < 0 is not scored). *loss: the
 * mean cross-entropy before the update. A step whose loss or gradient is not finite changes nothing and
 * fails with MOBILELLM_ERR_RANGE. */
mobilellm_status mobilellm_train_step(mobilellm_trainer *t, const int32_t *tokens, const int32_t *targets,
                                      double *loss);
void mobilellm_trainer_set_lr(mobilellm_trainer *t, float lr);
int64_t mobilellm_trainer_steps(const mobilellm_trainer *t);
void mobilellm_trainer_free(mobilellm_trainer *t);

/* ------------------------------------------------------------------ tokenizers */
typedef struct mobilellm_tokenizer mobilellm_tokenizer;

/* "bytes" (256 byte tokens + BOS, EOS, PAD) or a tokenizer file, as `mobilellm tokenize --tokenizer` takes
 * (a SentencePiece .model, ...). */
mobilellm_status mobilellm_tokenizer_open(mobilellm_tokenizer **out, const char *spec);
void mobilellm_tokenizer_free(mobilellm_tokenizer *t);
int mobilellm_tokenizer_vocab_size(const mobilellm_tokenizer *t);
/* text[len] -> *ids[*n] (release with mobilellm_free), with BOS first when add_bos. */
mobilellm_status mobilellm_encode(const mobilellm_tokenizer *t, const char *text, size_t len, int add_bos,
                                  int32_t **ids, size_t *n);
/* ids[n] -> *text[*len] plus a terminating NUL (release with mobilellm_free); special tokens give no text. */
mobilellm_status mobilellm_decode(const mobilellm_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                  size_t *len);

#ifdef __cplusplus
}
#endif

#endif
