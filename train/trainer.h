/* The training loop: data -> forward/loss/backward -> clip -> optimizer, with progress lines,
 * periodic evaluation, a metrics JSONL file, atomic checkpoints (the last K kept, one on Ctrl-C)
 * and bit-exact resume. */
#ifndef ML_TRAINER_H
#define ML_TRAINER_H

#include <stdint.h>

#include "common/status.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "optim/optimizer.h"

#define ML_MAX_DATA_FILES 256
#define ML_MAX_SOURCES 64

/* One training step, as reported to the program (the trainer prints nothing itself). */
typedef struct {
    int64_t step, steps;     /* the step just taken (1-based) of the run's total */
    double loss;             /* mean loss per scored token */
    int has_kd;              /* distillation: kd and ce are the mean divergence and cross-entropy */
    double kd, ce;
    float lr;
    double grad_norm;
    int skipped;             /* loss or gradient not finite: no update */
    int64_t tokens;          /* tokens seen so far */
    double tokens_per_s, gflops, eta_s;
    const char *line;        /* the step's progress line, as `mobilellm train` prints it */
} ml_train_step_report;

typedef struct {
    void (*step)(const ml_train_step_report *r, void *user);          /* after every step (NULL: none) */
    void (*eval)(int64_t step, double val_loss, void *user);          /* after each evaluation (NULL: none) */
    void *user;
} ml_train_callbacks;

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
    const char *mixture; /* a mixture.json (mix/mixture_file.h): the CLI turns it into sources; stored for the record */
    const char *val; /* held-out shard (optional) */
    int batch, seq;
    int64_t steps; /* total steps of the run: the schedule's horizon (resume continues up to this) */
    int64_t stop_after; /* stop (with a checkpoint) after this step, e.g. to split a run; 0 = run to the end */
    int grad_accum;
    char optim[16];    /* a registered optimizer (optim/optimizer.h): adamw | sgd */
    char schedule[16]; /* constant | linear | cosine | wsd */
    char precision[8]; /* fp32 | bf16: arithmetic of the student's GEMMs (model/model.h); state stays fp32 */
    char gemm_engine[16]; /* auto | openblas | bf16 | onednn: engine of the bf16 GEMMs (model/ops/gemm.h) */
    /* weight_decay NaN (the default): the optimizer's own default (0.1 decoupled for adamw, 0 for sgd) */
    float lr, min_lr_ratio, weight_decay, clip, beta1, beta2, eps, momentum, wsd_decay_fraction;
    int64_t warmup;
    uint64_t seed;
    const char *out_dir;
    int keep;             /* checkpoints kept */
    int64_t ckpt_every;   /* steps between checkpoints (0: only at the end) */
    int64_t eval_every;   /* steps between evaluations (0: only at the end) */
    int eval_batches;     /* batches per evaluation */
    int quiet;            /* the CLI prints no per-step progress lines (reports still go to callbacks) */
    /* packing of documents into windows: positions restart at each document (else they continue
     * across the window, as implicit positional distillation wants), and an optional document mask */
    int doc_positions, doc_mask;
    int recompute; /* keep only block inputs; backward re-runs each block (memory for long windows) */
    float rope_theta; /* > 0: set RoPE theta at the start of this run (phase-wise RoPE scaling for IPD) */
    /* distillation (online teacher): loss = (1 - ce_weight) tau^2 D(teacher, student) + ce_weight CE */
    const char *teacher;  /* checkpoint or HF directory; NULL = plain cross-entropy training */
    const char *cache;    /* or a teacher-logit cache (distill/logit_cache.h) of the same data, B and T */
    char kd_tail[8];      /* with a cache: renorm | bucket (distill/kd_loss.h) */
    char kd_loss[8];      /* a registered loss (distill/kd_loss.h): fkl | rkl | jsd */
    float temperature, kd_beta, ce_weight;
    int teacher_latent; /* load the teacher checkpoint's latent (full-precision) weights, without its quantization:
                           QAT self-distillation from the --init model */
    /* quantization-aware training (quant/quant.h): the recipe to install on the student. NULL scheme: none, unless
     * the --init / --resume checkpoint is quantized already (then its recipe; a different one is refused). */
    const char *quant_scheme, *quant_embedding, *quant_act;
    int qat;          /* a QAT run: a recipe is required (from quant_scheme or the checkpoint) */
    int no_self_distill; /* qat trains on cross-entropy alone; otherwise, with no --teacher and no --cache, the --init
                            checkpoint's full-precision weights are an online teacher on the same batches (stored as
                            teacher + teacher_latent for resume) */
    /* data parallelism over MPI ranks (common/dist.h; `mpirun -np N mobilellm train ...`): each rank runs
     * --grad-accum micro-batches per step, rank r the r-th group of the step's N x grad-accum; gradients are
     * summed over ranks in buckets started during backward */
    int deterministic_reduce; /* sum micro-batch gradients in a fixed order (bit-identical to one process) */
    float bucket_mb;          /* all-reduce bucket size, MiB of gradients */
    int zero1;                /* ZeRO-1: each rank keeps the optimizer state of its shard of the parameters */
    float dist_timeout;       /* seconds a rank waits for the others before failing */
    /* not options: where reports go */
    ml_train_callbacks callbacks;
} ml_train_args;

/* The defaults of every option of the table in train/train_options.c (MobileLLM's: AdamW
 * 0.9/0.95/1e-8, the optimizer's weight decay, cosine to 0.1x, clip 1.0). */
void ml_train_args_defaults(ml_train_args *a);
/* Serialise the run arguments (stored in checkpoints) as the table says. Reading them back on resume:
 * ml_train_args_resume (train/train_options.h). */
ml_status ml_train_args_to_json(const ml_train_args *a, char **json);

/* An optimizer over the model's parameter table (weight decay on matrices and the embedding). */
ml_status ml_optimizer_for_model(ml_optimizer *o, const ml_model *m, const ml_optim_config *cfg);


/* Copy a checkpoint's optimizer state into a fresh optimizer of the same configuration. Fails with one
 * line when the checkpoint holds none, names an optimizer the registry does not know, another optimizer
 * than o's, or state groups other than those the registry lists for o's configuration. */
ml_status ml_optimizer_restore(ml_optimizer *o, ml_train_state *st, const char *path);

/* The whole run. Progress lines go to a->callbacks, the rest to the log sink (common/log.h). */
ml_status ml_train(const ml_train_args *a);

#endif
