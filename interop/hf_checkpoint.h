/* Hugging Face checkpoint directories <-> the model: config.json (in the variant's dialect),
 * model.safetensors (or shards + model.safetensors.index.json), generation_config.json. */
#ifndef ML_HF_CHECKPOINT_H
#define ML_HF_CHECKPOINT_H

#include <stdint.h>

#include "formats/safetensors.h"
#include "model/model.h"

/* Write `m` into directory `dir` (created if needed) with tensors stored as `dtype` (F32, F16 or
 * BF16). A layer-shared model is written with each shared block repeated as many times as it runs,
 * since transformers' classes cannot express sharing; it then loads and computes the same logits.
 * max_shard_bytes 0 means one file. */
ml_status ml_hf_export(const ml_model *m, const char *dir, ml_st_dtype dtype, uint64_t max_shard_bytes);

/* Build a model from an HF directory: config.json in any supported dialect and the weights (one
 * file or shards; F32/F16/BF16). *source_dtype (optional) receives the dtype the weights were
 * stored in, so an export can reproduce them bit for bit. */
ml_status ml_hf_import(ml_model *m, const char *dir, ml_st_dtype *source_dtype);

#endif
