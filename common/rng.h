/* Deterministic RNG (xoshiro256**): the whole state is four words, stored in checkpoints so a
 * resumed run draws exactly the numbers the uninterrupted run would have drawn. */
#ifndef ML_RNG_H
#define ML_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} ml_rng;

void ml_rng_seed(ml_rng *r, uint64_t seed);
uint64_t ml_rng_u64(ml_rng *r);
/* Uniform in [0, 1) with 24 bits (exactly representable as float). */
float ml_rng_uniform(ml_rng *r);
/* Uniform integer in [0, n). */
uint64_t ml_rng_below(ml_rng *r, uint64_t n);
/* Standard normal (Box-Muller on doubles, one value per call). */
double ml_rng_normal(ml_rng *r);

#endif
