/* Checkpoint merging, tensor by tensor.
 *
 * A plan opens every model a recipe names (native .h5 checkpoints and Hugging Face directories, mixed
 * freely), checks that they share one architecture and vocabulary (else one line naming the two files),
 * and maps each output tensor to its input tensors (slices pick layer ranges; gradients interpolate
 * over the layer index within a slice, as mergekit does). Writing streams: per output tensor the inputs
 * are read, merged and written before the next, so memory stays near (inputs + 1) x the largest tensor (the inputs' copies and the output).
 *
 *   ml_merge_plan *p;  ml_merge_plan_open(&p, &recipe);
 *   ml_merge_write(p, "out.h5", 0, progress, user);          // or a directory with hf = 1
 *
 * The search (merge/search.h) instead preloads the inputs and merges into a model in memory. */
#ifndef ML_MERGE_H
#define ML_MERGE_H

#include <stdint.h>

#include "merge/recipe.h"
#include "model/model.h"

typedef struct ml_merge_plan ml_merge_plan;

/* done of total tensors merged; bytes: input bytes read so far. */
typedef void (*ml_merge_progress_fn)(void *user, int done, int total, const char *tensor, uint64_t bytes);

/* Open the recipe's models and plan the merge; every parameter of every tensor is resolved and checked
 * here (missing weight, density outside (0, 1], ...), so a bad recipe fails before any output. The
 * plan keeps a pointer to the recipe: after changing its parameters, call ml_merge_plan_check. */
ml_status ml_merge_plan_open(ml_merge_plan **p, ml_merge_recipe *r);
ml_status ml_merge_plan_check(ml_merge_plan *p);
void ml_merge_plan_free(ml_merge_plan *p);

/* The merged model's config (layer count from the slices). */
const ml_config *ml_merge_plan_config(const ml_merge_plan *p);
int ml_merge_plan_n_tensors(const ml_merge_plan *p);
int ml_merge_plan_n_models(const ml_merge_plan *p);
const char *ml_merge_plan_model(const ml_merge_plan *p, int i);
/* Elements of the largest tensor. */
uint64_t ml_merge_plan_max_numel(const ml_merge_plan *p);

/* Stream the merge into `out`: a native checkpoint (hf = 0; weights only, the recipe in the root
 * attribute merge_recipe) or a Hugging Face directory (hf = 1: config.json, generation_config.json,
 * model.safetensors with the recipe in its metadata, mergekit_config.yml, and the tokenizer files of
 * the first Hugging Face input that has them). Written atomically; nothing is left on failure. */
ml_status ml_merge_write(ml_merge_plan *p, const char *out, int hf, ml_merge_progress_fn progress, void *user);

/* Read every input fully into memory (for repeated merges), closing the files. */
ml_status ml_merge_plan_preload(ml_merge_plan *p);
/* Merge into m, created by the caller from ml_merge_plan_config (same parameter table). */
ml_status ml_merge_into_model(ml_merge_plan *p, ml_model *m);

#endif
