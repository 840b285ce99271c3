/* Key/value cache for incremental decoding: one slot per block APPLICATION (a layer-shared block
 * applied twice has two slots). Keys are stored after RoPE and QK-norm, values as projected; each row
 * holds the KV heads only (GQA: never repeated per query head).
 * A slot holds consecutive positions [base, len) in rows 0.. so that attention reads it as one
 * contiguous key block (the same kernel as training, ml_attention_forward with q_start). Full-attention
 * slots have max_len rows and base 0. Sliding-window slots have 2 * window + max_chunk rows (bounded by
 * the window, whatever the sequence length); when an append would overflow, the last window - 1
 * positions are moved to the front, so each position is copied at most about once more on average.
 * Everything is allocated once by ml_kv_cache_create (one arena). */
#ifndef ML_MODEL_KV_CACHE_H
#define ML_MODEL_KV_CACHE_H

#include <stddef.h>

#include "common/arena.h"
#include "common/status.h"
#include "model/config.h"

typedef struct {
    int n_slots;  /* block applications: num_layers * layer_repeat */
    int max_len;  /* positions the cache can reach */
    int max_chunk; /* most positions appended at once */
    int kv_dim;   /* num_kv_heads * head_dim floats per row */
    int len;      /* positions written so far (the next token's position) */
    int *rows;    /* [n_slots] rows allocated */
    int *base;    /* [n_slots] position held in row 0 */
    int *window;  /* [n_slots] attention window (0 = full) */
    float **k, **v; /* [n_slots] -> [rows, kv_dim] */
    ml_arena arena;
} ml_kv_cache;

ml_status ml_kv_cache_create(ml_kv_cache *c, const ml_config *cfg, int max_len, int max_chunk);
void ml_kv_cache_free(ml_kv_cache *c);
/* Forget every position (no memory is released). */
void ml_kv_cache_reset(ml_kv_cache *c);
/* Append the keys and values of positions [start, start + n) (start = c->len, n <= max_chunk) to slot s,
 * first moving older rows out if needed. *first receives the position held in row 0 afterwards. Does
 * not advance len (every slot of the chunk appends before len moves). */
void ml_kv_cache_append(ml_kv_cache *c, int s, int start, int n, const float *k, const float *v, int *first);
/* Can the cache go back to position len (every slot still holds the keys positions >= len would see)? */
int ml_kv_cache_can_rewind(const ml_kv_cache *c, int len);
/* Bytes held by the keys and values. */
size_t ml_kv_cache_bytes(const ml_kv_cache *c);

#endif
