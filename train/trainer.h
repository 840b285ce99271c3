/* The training loop: data -> forward/loss/backward -> clip -> optimizer, with progress lines,
 * periodic evaluation, a metrics JSONL file, atomic checkpoints (the last K kept, one on Ctrl-C)
 * and bit-exact resume. */
#ifndef ML_TRAINER_H
#define ML_TRAINER_H

#include <stdint.h>

#include "common/status.h"
#include "model/model.h"
#include "optim/optimizer.h"

#define ML_MAX_DATA_FILES 256
#define ML_MAX_SOURCES 64

typedef struct {
    /* where the model comes from: exactly one of these */
    const char *config_path; /* fresh model from an HF-style config.json (initialised from seed) */
    const char *init_ckpt;   /* weights from a checkpoint; fresh optimizer and step 0 */
    const char *resume_ckpt; /* everything: weights, optimizer, step, data cursor, RNG */
    const char *data[ML_MAX_DATA_FILES];
    int n_data;
    /* or a mixture (data/mixture_loader.h): "SHARD[,SHARD...]:WEIGHT[:DOMAIN]" each, drawn per row */
    const char *sources[ML_MAX_SOURCES];
    int n_sources;
    int shuffle_rows; /* mixture shuffle buffer rows (0 = off) */
    const char *val; /* held-out shard (optional) */
    int batch, seq;
    int64_t steps; /* total steps of the run: the schedule's horizon (resume continues up to this) */
    int64_t stop_after; /* stop (with a checkpoint) after this step, e.g. to split a run; 0 = run to the end */
    int grad_accum;
    char optim[16];    /* adamw | sgd */
    char schedule[16]; /* constant | linear | cosine | wsd */
    char precision[8]; /* fp32 | bf16: arithmetic of the student's GEMMs (model/model.h); state stays fp32 */
    float lr, min_lr_ratio, weight_decay, clip, beta1, beta2, eps, momentum, wsd_decay_fraction;
    int64_t warmup;
    uint64_t seed;
    const char *out_dir;
    int keep;             /* checkpoints kept */
    int64_t ckpt_every;   /* steps between checkpoints (0: only at the end) */
    int64_t eval_every;   /* steps between evaluations (0: only at the end) */
    int eval_batches;     /* batches per evaluation */
    int quiet;            /* no per-step progress lines */
    /* packing of documents into windows: positions restart at each document (else they continue
     * across the window, as implicit positional distillation wants), and an optional document mask */
    int doc_positions, doc_mask;
    int recompute; /* keep only block inputs; backward re-runs each block (memory for long windows) */
    float rope_theta; /* > 0: set RoPE theta at the start of this run (phase-wise RoPE scaling for IPD) */
    /* distillation (online teacher): loss = (1 - ce_weight) tau^2 D(teacher, student) + ce_weight CE */
    const char *teacher;  /* checkpoint or HF directory; NULL = plain cross-entropy training */
    const char *cache;    /* or a teacher-logit cache (distill/logit_cache.h) of the same data, B and T */
    char kd_tail[8];      /* with a cache: renorm | bucket (distill/kd_loss.h) */
    char kd_loss[8];      /* fkl | rkl | jsd */
    float temperature, kd_beta, ce_weight;
    int teacher_latent; /* load the teacher checkpoint's latent (full-precision) weights, without its quantization:
                           QAT self-distillation from the --init model */
    /* quantization-aware training (quant/quant.h): the recipe to install on the student. NULL scheme: none, unless
     * the --init / --resume checkpoint is quantized already (then its recipe; a different one is refused). */
    const char *quant_scheme, *quant_embedding, *quant_act;
    int qat;          /* a QAT run: a recipe is required (from quant_scheme or the checkpoint) */
    int self_distill; /* with qat, no --teacher and no --cache: the --init checkpoint's full-precision weights are an
                         online teacher on the same batches (stored as teacher + teacher_latent for resume) */
} ml_train_args;

/* MobileLLM defaults (AdamW 0.9/0.95/1e-8, wd 0.1, cosine to 0.1x, clip 1.0). */
void ml_train_args_defaults(ml_train_args *a);
/* Serialise / parse the run arguments (stored in checkpoints). Strings point into `owner`. */
ml_status ml_train_args_to_json(const ml_train_args *a, char **json);
/* Fill `a` from JSON written by ml_train_args_to_json, except fields whose name is listed in
 * `keep` (options the user gave explicitly). Strings are copied into `strings` (freed by caller). */
ml_status ml_train_args_from_json(ml_train_args *a, const char *json, const char *const *keep, int n_keep,
                                  char **strings);

/* An optimizer over the model's parameter table (weight decay on matrices and the embedding). */
ml_status ml_optimizer_for_model(ml_optimizer *o, const ml_model *m, const ml_optim_config *cfg);

/* The teacher path stored in run arguments (malloc'd, NULL if none). */
ml_status ml_train_args_stored_teacher(const char *json, char **teacher);
/* Any stored string argument ("teacher", "cache") (malloc'd, NULL if none). */
ml_status ml_train_args_stored_str(const char *json, const char *key, char **value);

ml_status ml_train(const ml_train_args *a);

#endif
