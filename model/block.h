/* One block application of the network, forward: the code that training, evaluation, teachers and the
 * KV-cached decoder all run. Internal to the model layer (model.c, decoder.c). */
#ifndef ML_MODEL_BLOCK_H
#define ML_MODEL_BLOCK_H

#include "model/kv_cache.h"
#include "model/model.h"

typedef struct {
    int B, T;                         /* rows and tokens per row (N = B * T) */
    const int32_t *pos, *doc;         /* [N] or NULL (positions 0..T-1 per row; no document mask) */
    const float *rope_cos, *rope_sin; /* tables covering every position */
    float *attn_work;                 /* attention scratch (model/ops/ops.h), or NULL */
    ml_kv_cache *kv;                  /* NULL: the rows attend among themselves. Otherwise one row (B = 1) of
                                         new positions kv_start.. whose keys are appended to the block's slot,
                                         attending over everything the slot holds */
    int kv_start;
} ml_block_io;

/* Block application a from x->resid_in into out ([N, C]), filling x's saved activations. ffn_h [N, F] is
 * scratch. With to_output 0 it stops once everything the block's backward reads exists (gate and up):
 * the recomputation of a block during backward. */
void ml_block_forward(const ml_model *m, int a, const ml_block_io *io, ml_block_acts *x, float *out, float *ffn_h,
                      int to_output);

/* The attention window of block l (0 = full). */
static inline int ml_layer_window(const ml_config *c, int l) { return c->layer_sliding[l] ? c->sliding_window : 0; }

#endif
