#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>

ml_status ml_kv_cache_create(ml_kv_cache *c, const ml_config *cfg, int max_len, int max_chunk) {
    memset(c, 0, sizeof *c);
    if (max_len < 1) return ml_fail(ML_ERR_ARG, "KV cache: maximum length %d must be positive", max_len);
    if (max_chunk < 1) return ml_fail(ML_ERR_ARG, "KV cache: chunk of %d positions must be positive", max_chunk);
    const int A = ml_config_applied_layers(cfg);
    c->n_slots = A;
    c->max_len = max_len;
    c->max_chunk = max_chunk;
    c->kv_dim = cfg->num_kv_heads * cfg->head_dim;
    c->rows = calloc((size_t)A, sizeof(int));
    c->base = calloc((size_t)A, sizeof(int));
    c->window = calloc((size_t)A, sizeof(int));
    c->k = calloc((size_t)A, sizeof(float *));
    c->v = calloc((size_t)A, sizeof(float *));
    size_t *off = calloc((size_t)A * 2, sizeof(size_t));
    if (!c->rows || !c->base || !c->window || !c->k || !c->v || !off) {
        free(off);
        ml_kv_cache_free(c);
        return ml_fail(ML_ERR_NOMEM, "out of memory for the KV cache table");
    }
    for (int a = 0; a < A; a++) {
        const int l = a / cfg->layer_repeat;
        const int w = cfg->layer_sliding[l] ? cfg->sliding_window : 0;
        const int64_t sliding_rows = 2 * (int64_t)w + max_chunk;
        c->window[a] = w;
        c->rows[a] = (w > 0 && sliding_rows < max_len) ? (int)sliding_rows : max_len;
        off[2 * a] = ml_arena_reserve(&c->arena, (size_t)c->rows[a] * c->kv_dim);
        off[2 * a + 1] = ml_arena_reserve(&c->arena, (size_t)c->rows[a] * c->kv_dim);
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
    free(c->rows);
    free(c->base);
    free(c->window);
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void ml_kv_cache_reset(ml_kv_cache *c) {
    c->len = 0;
    for (int a = 0; a < c->n_slots; a++) c->base[a] = 0;
}

void ml_kv_cache_append(ml_kv_cache *c, int s, int start, int n, const float *k, const float *v, int *first) {
    const size_t row = (size_t)c->kv_dim;
    if (start + n - c->base[s] > c->rows[s]) {
        /* only sliding slots get here: keep the window - 1 positions the chunk's first query still sees */
        int keep_from = start - c->window[s] + 1;
        if (keep_from < c->base[s]) keep_from = c->base[s];
        const size_t from = (size_t)(keep_from - c->base[s]), count = (size_t)(start - keep_from);
        memmove(c->k[s], c->k[s] + from * row, count * row * sizeof(float));
        memmove(c->v[s], c->v[s] + from * row, count * row * sizeof(float));
        c->base[s] = keep_from;
    }
    const size_t at = (size_t)(start - c->base[s]);
    memcpy(c->k[s] + at * row, k, (size_t)n * row * sizeof(float));
    memcpy(c->v[s] + at * row, v, (size_t)n * row * sizeof(float));
    *first = c->base[s];
}

int ml_kv_cache_can_rewind(const ml_kv_cache *c, int len) {
    if (len < 0 || len > c->len) return 0;
    for (int a = 0; a < c->n_slots; a++) {
        int need = c->window[a] > 0 ? len - c->window[a] + 1 : 0; /* oldest key the next position sees */
        if (need < 0) need = 0;
        if (c->base[a] > need) return 0;
    }
    return 1;
}

size_t ml_kv_cache_bytes(const ml_kv_cache *c) {
    size_t rows = 0;
    for (int a = 0; a < c->n_slots; a++) rows += (size_t)c->rows[a];
    return rows * 2 * (size_t)c->kv_dim * sizeof(float);
}
