/* mixture.json, as `mobilellm mix` writes it, read back for training (`train`/`distill --mixture`).
 *   {"format": "mobilellm-mixture", "version": 1, "method": ..., "domains": [{"name": N, "weight": W,
 *    "shards": [paths relative to the file's folder, or absolute], ...}, ...], ...}
 * Weights need not be normalised; each must be finite and >= 0 and their sum > 0. A domain of weight 0
 * is left out. Shard paths come back resolved (absolute, no symlinks): a shard that does not exist is an
 * error here. Errors are one line naming the file. */
#ifndef ML_MIX_MIXTURE_FILE_H
#define ML_MIX_MIXTURE_FILE_H

#include <stddef.h>

#include "common/status.h"

/* Source specs "SHARD[,SHARD...]:WEIGHT:DOMAIN" (data/mixture_loader.h) of a mixture file: *specs is a
 * malloc'd array of malloc'd strings. */
ml_status ml_mixture_file_specs(const char *path, char ***specs, int *n);
void ml_mixture_specs_free(char **specs, int n);

/* A path relative to the folder `base_dir` (both made absolute first) into buf. */
ml_status ml_mix_relpath(const char *path, const char *base_dir, char *buf, size_t n);

#endif
