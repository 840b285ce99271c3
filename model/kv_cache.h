/* Key/value cache for incremental decoding: one slot per block APPLICATION (a layer-shared block
 * applied twice has two slots). Full-attention slots hold max_len positions; sliding-window slots
 * are ring buffers of `sliding_window` positions (position p lives at row p % cap), so their memory
 * is bounded by the window whatever the sequence length. Keys are stored after RoPE and QK-norm,
 * values as projected; each row holds the KV heads only (GQA: never repeated per query head).
 * Everything is allocated once by ml_kv_cache_create (one arena). */
#ifndef ML_INFER_KV_CACHE_H
#define ML_INFER_KV_CACHE_H

#include <stddef.h>

#include "common/arena.h"
#include "common/status.h"
#include "model/config.h"

typedef struct {
    int n_slots;  /* block applications: num_layers * layer_repeat */
    int max_len;  /* positions the cache can reach */
    int kv_dim;   /* num_kv_heads * head_dim floats per row */
    int len;      /* positions written so far (the next token's position) */
    int *cap;     /* [n_slots] rows held: max_len, or min(sliding_window, max_len) */
    int *window;  /* [n_slots] attention window (0 = full) */
    float **k, **v; /* [n_slots] -> [cap, kv_dim] */
    ml_arena arena;
} ml_kv_cache;

ml_status ml_kv_cache_create(ml_kv_cache *c, const ml_config *cfg, int max_len);
void ml_kv_cache_free(ml_kv_cache *c);
/* Forget every position (no memory is released). */
static inline void ml_kv_cache_reset(ml_kv_cache *c) { c->len = 0; }
/* Row of position pos in slot s (valid for the last cap[s] positions written). */
static inline float *ml_kv_cache_k(const ml_kv_cache *c, int s, int pos) {
    return c->k[s] + (size_t)(pos % c->cap[s]) * (size_t)c->kv_dim;
}
static inline float *ml_kv_cache_v(const ml_kv_cache *c, int s, int pos) {
    return c->v[s] + (size_t)(pos % c->cap[s]) * (size_t)c->kv_dim;
}
/* Bytes held by the keys and values. */
size_t ml_kv_cache_bytes(const ml_kv_cache *c);

#endif
