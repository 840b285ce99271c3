/* Native checkpoints (HDF5): parameters under their HF names, optimizer moments, step, tokens
 * seen, RNG state, data cursor, the resolved config and the run arguments. Written atomically.
 * Layout (readable with h5py):
 *   /                 attrs: format="mobilellm-checkpoint", version=1, step, tokens_seen,
 *                            config_json, args_json, optimizer, optimizer_step,
 *                            optimizer_state ("exp_avg,exp_avg_sq": the state groups, in order)
 *   /params/<name>    float32 [shape]
 *   /optim/<state>/<name>  float32 optimizer state per tensor, one group per name that
 *                          optimizer_state lists (the optimizer registry's names, optim/optimizer.h:
 *                          exp_avg and exp_avg_sq for AdamW, momentum_buffer for SGD, as torch names
 *                          them). Checkpoints written before optimizer_state existed are read by
 *                          looking for those three groups.
 *   /state/rng        uint64 [4]
 *   /state/cursor     int64  [n] data cursor
 *   /state/mixture    int64  [n] mixture loader state (data/mixture_loader.h), only for --source runs */
#ifndef ML_CHECKPOINT_H
#define ML_CHECKPOINT_H

#include <stdint.h>

#include "common/rng.h"
#include "model/model.h"

#define ML_CURSOR_WORDS 8
#define ML_CKPT_MAX_OPTIM_STATE 8

typedef struct {
    int64_t step, tokens_seen;
    ml_rng rng;
    int64_t cursor[ML_CURSOR_WORDS];
    int64_t *mixture;   /* mixture loader state words (owned), NULL when none */
    int64_t n_mixture;
    char *args_json;      /* run arguments (owned; freed by ml_train_state_free) */
    char optimizer[32];   /* the optimizer's registry name ("adamw", "sgd"), "" when none is stored */
    int64_t optimizer_step;
    int n_optim_state;                 /* state groups, each laid out like the parameter arena */
    char optim_state_name[ML_CKPT_MAX_OPTIM_STATE][32];
    float *optim_state[ML_CKPT_MAX_OPTIM_STATE];
    int owns_optim_state;              /* 1 when loaded (freed with the state), 0 when borrowed */
} ml_train_state;

void ml_train_state_free(ml_train_state *st);

/* st may be NULL (weights only, e.g. `init`). */
ml_status ml_checkpoint_save(const char *path, const ml_model *m, const ml_train_state *st);
/* Read the config stored in a checkpoint. */
ml_status ml_checkpoint_read_config(const char *path, ml_config *c);
/* Read the run arguments stored in a checkpoint (malloc'd JSON; NULL if none). */
ml_status ml_checkpoint_read_args(const char *path, char **args_json);
/* Create the model from the checkpoint's config and load its parameters. With st, also load the
 * training state (moments are allocated here when present). */
ml_status ml_checkpoint_load(const char *path, ml_model *m, ml_train_state *st);

/* Streaming access for tools that handle one tensor at a time (merge). The parameters live at
 * "params/<HF name>" (ml_h5_read_f32 / ml_h5_write_f32 with the group prefix below). */
#define ML_CKPT_PARAMS_GROUP "params"
struct ml_h5;
/* Open a checkpoint (checked like ml_checkpoint_load) and read its config; close with ml_h5_close. */
ml_status ml_checkpoint_open(const char *path, struct ml_h5 **f, ml_config *c);
/* Write the root attributes of a weights-only checkpoint (format, version, config) into a file created
 * with ml_h5_create; source_dtype ("BF16", ...) may be NULL or "". The caller then writes every
 * parameter under ML_CKPT_PARAMS_GROUP. */
ml_status ml_checkpoint_write_header(struct ml_h5 *f, const ml_config *c, const char *source_dtype);

#endif
