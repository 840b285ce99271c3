/* Gradient norm, clipping and the finiteness check the trainer uses to skip bad steps.
 *
 * The norm is summed in double over a fixed blocking of the array (ML_CLIP_BLOCKS blocks whose
 * bounds depend only on n, each summed in a fixed lane order, the block sums added in index
 * order), so it is bit-identical for every OpenMP thread count. Squares of floats are exact in
 * double, so the only rounding is in the additions. */
#ifndef ML_CLIP_H
#define ML_CLIP_H

#include <stddef.h>

#define ML_CLIP_BLOCKS 256

/* Global L2 norm of g[0..n) (sqrt of the sum of squares). Not finite if any element is not. */
double ml_grad_norm(const float *g, size_t n);

/* torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)). */
double ml_clip_scale(double norm, double max_norm);

/* Compute the norm of g, and if it is finite, max_norm > 0 and the factor is below 1, scale g by
 * it in place. Returns the norm before clipping (as torch does). max_norm <= 0 means "no
 * clipping, just the norm". A non-finite norm leaves g untouched: the caller should skip the step. */
double ml_clip_grad_norm(float *g, size_t n, double max_norm);

/* 1 if every element of x[0..n) is finite (no NaN, no +-inf), else 0. */
int ml_all_finite(const float *x, size_t n);

#endif
