/* One aligned allocation carved into tensors before the training loop starts, so a step never
 * allocates. Usage: plan sizes with ml_arena_reserve (returns offsets), then ml_arena_commit. */
#ifndef ML_ARENA_H
#define ML_ARENA_H

#include <stddef.h>

#include "common/status.h"

#define ML_ALIGN 64 /* bytes: one cache line, one AVX-512 vector */

typedef struct {
    float *base;
    size_t used;     /* floats planned so far (each reservation rounded up to ML_ALIGN) */
    size_t capacity; /* floats allocated */
} ml_arena;

/* Reserve n floats; returns the offset in floats from base. */
size_t ml_arena_reserve(ml_arena *a, size_t n);
/* Allocate everything reserved, zero-filled. */
ml_status ml_arena_commit(ml_arena *a, const char *what);
static inline float *ml_arena_at(const ml_arena *a, size_t offset) { return a->base + offset; }
void ml_arena_free(ml_arena *a);

/* Aligned zeroed allocation for long-lived buffers outside an arena. */
void *ml_aligned_calloc(size_t bytes);

/* A buffer kept by one thread between calls and grown as needed (declare it `static _Thread_local`): the scratch of
 * kernels that take no caller's arena. The first step sizes it, so later steps allocate nothing. */
typedef struct {
    void *p;
    size_t bytes;
} ml_scratch;
/* At least `bytes`, ML_ALIGN-aligned (contents not kept when it grows); NULL without memory. */
void *ml_scratch_get(ml_scratch *s, size_t bytes);

#endif
