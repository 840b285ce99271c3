/* Native checkpoints (HDF5): parameters under their HF names, optimizer moments, step, tokens
 * seen, RNG state, data cursor, the resolved config and the run arguments. Written atomically.
 * Layout (readable with h5py):
 *   /                 attrs: format="mobilellm-checkpoint", version=1, step, tokens_seen,
 *                            config_json, args_json, optimizer, optimizer_step
 *   /params/<name>    float32 [shape]
 *   /optim/<state>/<name>  float32 optimizer state per tensor, when present: exp_avg and
 *                          exp_avg_sq (AdamW) or momentum_buffer (SGD), as torch names them
 *   /state/rng        uint64 [4]
 *   /state/cursor     int64  [n] data cursor
 *   /state/mixture    int64  [n] mixture loader state (data/mixture_loader.h), only for --source runs */
#ifndef ML_CHECKPOINT_H
#define ML_CHECKPOINT_H

#include <stdint.h>

#include "common/rng.h"
#include "model/model.h"

#define ML_CURSOR_WORDS 8

typedef struct {
    int64_t step, tokens_seen;
    ml_rng rng;
    int64_t cursor[ML_CURSOR_WORDS];
    int64_t *mixture;   /* mixture loader state words (owned), NULL when none */
    int64_t n_mixture;
    char *args_json;      /* run arguments (owned; freed by ml_train_state_free) */
    char optimizer[16];   /* "adamw", "sgd" or "" when no optimizer state is stored */
    int64_t optimizer_step;
    int n_optim_state;                 /* state tensors (0..2), laid out like the parameter arena */
    char optim_state_name[2][32];
    float *optim_state[2];
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
