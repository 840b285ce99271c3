#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>

ml_status ml_kv_cache_create(ml_kv_cache *c, const ml_config *cfg, int max_len) {
    memset(c, 0, sizeof *c);
    if (max_len < 1) return ml_fail(ML_ERR_ARG, "KV cache: maximum length %d must be positive", max_len);
    const int A = ml_config_applied_layers(cfg);
    c->n_slots = A;
    c->max_len = max_len;
    c->kv_dim = cfg->num_kv_heads * cfg->head_dim;
    c->cap = calloc((size_t)A, sizeof(int));
    c->window = calloc((size_t)A, sizeof(int));
    c->k = calloc((size_t)A, sizeof(float *));
    c->v = calloc((size_t)A, sizeof(float *));
    size_t *off = calloc((size_t)A * 2, sizeof(size_t));
    if (!c->cap || !c->window || !c->k || !c->v || !off) {
        free(off);
        ml_kv_cache_free(c);
        return ml_fail(ML_ERR_NOMEM, "out of memory for the KV cache table");
    }
    for (int a = 0; a < A; a++) {
        const int l = a / cfg->layer_repeat;
        const int w = cfg->layer_sliding[l] ? cfg->sliding_window : 0;
        c->window[a] = w;
        c->cap[a] = (w > 0 && w < max_len) ? w : max_len;
        off[2 * a] = ml_arena_reserve(&c->arena, (size_t)c->cap[a] * c->kv_dim);
        off[2 * a + 1] = ml_arena_reserve(&c->arena, (size_t)c->cap[a] * c->kv_dim);
    }
    ml_status s = ml_arena_commit(&c->arena, "KV cache");
    if (s != ML_OK) {
        free(off);
        ml_kv_cache_free(c);
        return ml_fail_context(s, "KV cache for %d positions", max_len);
    }
    for (int a = 0; a < A; a++) {
        c->k[a] = c->arena.base + off[2 * a];
        c->v[a] = c->arena.base + off[2 * a + 1];
    }
    free(off);
    return ML_OK;
}

void ml_kv_cache_free(ml_kv_cache *c) {
    ml_arena_free(&c->arena);
    free(c->cap);
    free(c->window);
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

size_t ml_kv_cache_bytes(const ml_kv_cache *c) {
    size_t rows = 0;
    for (int a = 0; a < c->n_slots; a++) rows += (size_t)c->cap[a];
    return rows * 2 * (size_t)c->kv_dim * sizeof(float);
}
