/* The merge methods on one tensor, with mergekit's semantics (mergekit 0.1.5: merge_methods/linear.py,
 * slerp.py, generalized_task_arithmetic.py, sparsify.py). Arithmetic is float32 like mergekit with
 * `dtype: float32` (sums of norms in double). */
#ifndef ML_MERGE_METHODS_H
#define ML_MERGE_METHODS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "merge/recipe.h"

/* Per-input parameters (weight for every input of linear, the rest for non-base inputs). */
typedef struct {
    double weight, density, gamma;
} ml_merge_in_params;

/* Parameters shared by the inputs of one tensor. */
typedef struct {
    int normalize, rescale;
    double lambda, t;
} ml_merge_shared_params;

/* Defaults of a method (normalize, rescale, lambda 1, density 1, gamma 0.01). */
void ml_merge_defaults(ml_merge_method m, ml_merge_shared_params *sh, ml_merge_in_params *in);

/* linear: out = sum_i w_i x_i (/ sum_i w_i when normalize). */
void ml_merge_linear(float *out, const float *const *x, const double *w, int n, size_t len, int normalize);

/* slerp between a (t = 0) and b (t = 1) over the whole tensor; linear when |cos| > 0.9995. */
void ml_merge_slerp(float *out, const float *a, const float *b, size_t len, double t);

/* Sparsifiers, in place. magnitude keeps the max(1, floor(density*len)) largest
 * |x|; outliers drops the floor(gamma*len) largest, then keeps floor(density*len) of the rest from the
 * top (ties at a threshold broken by index; ranks found by a parallel radix selection, no copy); random
 * keeps each element with probability density (a seeded xoshiro stream). With rescale, the kept elements
 * are scaled so that the L1 norm is unchanged (mergekit's rescale_norm l1). Return the number of elements
 * kept (SIZE_MAX: out of memory for the selection's histograms). */
size_t ml_sparsify_magnitude(float *x, size_t len, double density, int rescale);
size_t ml_sparsify_outliers(float *x, size_t len, double density, double gamma, int rescale);
size_t ml_sparsify_random(float *x, size_t len, double density, int rescale, uint64_t seed);

/* The task-arithmetic family on one tensor. x[0..n) are the inputs, modified in place (they become the
 * deltas); x[base] is the base. seed: the random sparsifier's, mixed with the input's index. */
ml_status ml_merge_task(ml_merge_method m, float *out, float *const *x, int n, int base, const ml_merge_in_params *in,
                        const ml_merge_shared_params *sh, size_t len, uint64_t seed);

#endif
