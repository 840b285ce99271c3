#include "infer/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops/ops.h"

ml_status ml_decoder_create(ml_decoder *d, const ml_model *m, int max_len, int max_chunk) {
    memset(d, 0, sizeof *d);
    const ml_config *c = &m->cfg;
    if (max_chunk < 1) return ml_fail(ML_ERR_ARG, "decoder: chunk of %d tokens must be positive", max_chunk);
    if (max_chunk > max_len) max_chunk = max_len;
    d->m = m;
    d->max_chunk = max_chunk;
    ML_TRY(ml_kv_cache_create(&d->kv, c, max_len));
    const size_t N = (size_t)max_chunk, C = c->hidden_size, F = c->intermediate_size,
                 qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim;
    ml_arena *a = &d->arena;
    size_t o_x = ml_arena_reserve(a, N * C), o_mid = ml_arena_reserve(a, N * C), o_ln = ml_arena_reserve(a, N * C),
           o_rstd = ml_arena_reserve(a, N), o_q = ml_arena_reserve(a, N * qd), o_k = ml_arena_reserve(a, N * kvd),
           o_v = ml_arena_reserve(a, N * kvd), o_qr = ml_arena_reserve(a, N * c->num_heads),
           o_kr = ml_arena_reserve(a, N * c->num_kv_heads), o_att = ml_arena_reserve(a, N * qd),
           o_gate = ml_arena_reserve(a, N * F), o_up = ml_arena_reserve(a, N * F), o_h = ml_arena_reserve(a, N * F),
           o_logits = ml_arena_reserve(a, (size_t)c->vocab_size),
           o_cos = ml_arena_reserve(a, (size_t)max_len * (c->head_dim / 2)),
           o_sin = ml_arena_reserve(a, (size_t)max_len * (c->head_dim / 2));
    ml_status s = ml_arena_commit(a, "decoder scratch");
    d->pos = malloc(sizeof(int32_t) * N);
    if (s == ML_OK && !d->pos) s = ml_fail(ML_ERR_NOMEM, "out of memory for decoder positions");
    if (s != ML_OK) {
        ml_decoder_free(d);
        return s;
    }
    float *b = a->base;
    d->x = b + o_x, d->mid = b + o_mid, d->ln = b + o_ln, d->rstd = b + o_rstd, d->q = b + o_q, d->k = b + o_k;
    d->v = b + o_v, d->q_rstd = b + o_qr, d->k_rstd = b + o_kr, d->att = b + o_att, d->gate = b + o_gate;
    d->up = b + o_up, d->h = b + o_h, d->logits = b + o_logits, d->rope_cos = b + o_cos, d->rope_sin = b + o_sin;
    ml_rope_table(d->rope_cos, d->rope_sin, max_len, c->head_dim, c->rope_theta);
    return ML_OK;
}

void ml_decoder_free(ml_decoder *d) {
    ml_kv_cache_free(&d->kv);
    ml_arena_free(&d->arena);
    free(d->pos);
    memset(d, 0, sizeof *d);
}

ml_status ml_decoder_rewind(ml_decoder *d, int len) {
    const ml_kv_cache *kv = &d->kv;
    if (len < 0 || len > kv->len)
        return ml_fail(ML_ERR_ARG, "decoder rewind to %d: the sequence holds %d tokens", len, kv->len);
    /* position q >= len overwrote position q - cap, which len still needs when q - cap >= len - cap,
     * i.e. always once q >= cap: a rewind is possible if no slot wrapped after len */
    for (int s = 0; s < kv->n_slots; s++)
        if (kv->cap[s] < kv->max_len && len < kv->len && kv->len > kv->cap[s])
            return ml_fail(ML_ERR_UNSUPPORTED,
                           "decoder rewind to %d: the sliding-window cache (%d rows) no longer holds its keys",
                           len, kv->cap[s]);
    d->kv.len = len;
    return ML_OK;
}

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Attention of n chunk queries (positions start..start+n-1) over the cached positions before start
 * (slot s) and the chunk's own keys. Same online softmax and key order as ml_attention_forward. */
static void chunk_attention(float *out, const float *q, const float *k, const float *v, const ml_kv_cache *kv,
                            int s, int start, int n, int H, int KV, int hd) {
    const int group = H / KV, window = kv->window[s];
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            const int p = start + t, kvh = h / group;
            const float *qr = q + (int64_t)t * qs + (int64_t)h * hd;
            float *o = out + (int64_t)t * qs + (int64_t)h * hd;
            float mx = -INFINITY, sum = 0.0f;
            for (int i = 0; i < hd; i++) o[i] = 0.0f;
            int lo = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
            for (int j = lo; j <= p; j++) {
                const float *kr, *vr;
                if (j >= start) {
                    kr = k + (int64_t)(j - start) * ks + (int64_t)kvh * hd;
                    vr = v + (int64_t)(j - start) * ks + (int64_t)kvh * hd;
                } else {
                    kr = ml_kv_cache_k(kv, s, j) + (int64_t)kvh * hd;
                    vr = ml_kv_cache_v(kv, s, j) + (int64_t)kvh * hd;
                }
                float sc = dot(qr, kr, hd) * scale;
                if (sc > mx) {
                    float c = expf(mx - sc);
                    sum *= c;
#pragma omp simd
                    for (int i = 0; i < hd; i++) o[i] *= c;
                    mx = sc;
                }
                float e = expf(sc - mx);
                sum += e;
#pragma omp simd
                for (int i = 0; i < hd; i++) o[i] += e * vr[i];
            }
            float inv = 1.0f / sum;
            for (int i = 0; i < hd; i++) o[i] *= inv;
        }
}

/* One chunk of n <= max_chunk tokens at positions kv.len ... */
static void feed_chunk(ml_decoder *d, const int32_t *tokens, int n, int rows_from, float *logits) {
    const ml_model *m = d->m;
    const ml_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, H = c->num_heads, KV = c->num_kv_heads,
              hd = c->head_dim, A = ml_config_applied_layers(c), V = c->vocab_size;
    const int half_split = c->rope_pairing == ML_ROPE_HALF_SPLIT, start = d->kv.len;
    const int64_t NC = (int64_t)n * C, kvd = (int64_t)KV * hd;
    for (int t = 0; t < n; t++) d->pos[t] = start + t;
    ml_embedding_forward(d->x, tokens, m->w.embed, n, C);
    for (int a = 0; a < A; a++) {
        const int l = a / c->layer_repeat;
        ml_rmsnorm_forward(d->ln, d->rstd, d->x, m->w.layer[l].attn_norm, n, C, c->rms_norm_eps);
        ml_matmul_forward(d->q, d->ln, m->w.layer[l].wq, n, C, H * hd);
        ml_matmul_forward(d->k, d->ln, m->w.layer[l].wk, n, C, KV * hd);
        ml_matmul_forward(d->v, d->ln, m->w.layer[l].wv, n, C, KV * hd);
        if (c->layer_rope[l]) {
            ml_rope_apply(d->q, d->pos, d->rope_cos, d->rope_sin, n, n, H, hd, half_split, 0);
            ml_rope_apply(d->k, d->pos, d->rope_cos, d->rope_sin, n, n, KV, hd, half_split, 0);
            if (c->use_qk_norm) {
                ml_headnorm_forward(d->q, d->q_rstd, n, H, hd, c->rms_norm_eps);
                ml_headnorm_forward(d->k, d->k_rstd, n, KV, hd, c->rms_norm_eps);
            }
        }
        chunk_attention(d->att, d->q, d->k, d->v, &d->kv, a, start, n, H, KV, hd);
        /* store after attention: in a ring buffer the chunk's keys overwrite rows its own earlier
         * queries may still read; only the last cap positions survive */
        const int cap = d->kv.cap[a], first = n > cap ? n - cap : 0;
        for (int t = first; t < n; t++) {
            memcpy(ml_kv_cache_k(&d->kv, a, start + t), d->k + t * kvd, sizeof(float) * (size_t)kvd);
            memcpy(ml_kv_cache_v(&d->kv, a, start + t), d->v + t * kvd, sizeof(float) * (size_t)kvd);
        }
        ml_matmul_forward(d->mid, d->att, m->w.layer[l].wo, n, H * hd, C);
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < NC; i++) d->mid[i] += d->x[i];
        ml_rmsnorm_forward(d->ln, d->rstd, d->mid, m->w.layer[l].mlp_norm, n, C, c->rms_norm_eps);
        ml_matmul_forward(d->gate, d->ln, m->w.layer[l].wgate, n, C, F);
        ml_matmul_forward(d->up, d->ln, m->w.layer[l].wup, n, C, F);
        ml_swiglu_forward(d->h, d->gate, d->up, (int64_t)n * F);
        ml_matmul_forward(d->x, d->h, m->w.layer[l].wdown, n, F, C);
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < NC; i++) d->x[i] += d->mid[i];
    }
    ml_rmsnorm_forward(d->ln, d->rstd, d->x, m->w.final_norm, n, C, c->rms_norm_eps);
    if (logits && rows_from < n) {
        float *dst = logits;
        ml_matmul_forward(dst, d->ln + (int64_t)rows_from * C, m->w.lm_head, n - rows_from, C, V);
        memcpy(d->logits, dst + (int64_t)(n - 1 - rows_from) * V, sizeof(float) * (size_t)V);
    } else {
        ml_matmul_forward(d->logits, d->ln + (int64_t)(n - 1) * C, m->w.lm_head, 1, C, V);
    }
    d->kv.len = start + n;
}

ml_status ml_decoder_feed(ml_decoder *d, const int32_t *tokens, int n, int logits_from, float *logits) {
    const int V = d->m->cfg.vocab_size;
    if (n < 1) return ml_fail(ML_ERR_ARG, "decoder: no tokens to feed");
    if (logits && (logits_from < 0 || logits_from >= n))
        return ml_fail(ML_ERR_ARG, "decoder: logits from token %d of %d", logits_from, n);
    if (n > d->kv.max_len - d->kv.len)
        return ml_fail(ML_ERR_RANGE, "decoder: %d tokens after %d pass the maximum length %d", n, d->kv.len,
                       d->kv.max_len);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return ml_fail(ML_ERR_RANGE, "token id %d at position %d is outside the vocabulary [0, %d)", tokens[i],
                           d->kv.len + i, V);
    for (int i0 = 0; i0 < n; i0 += d->max_chunk) {
        int len = n - i0 < d->max_chunk ? n - i0 : d->max_chunk;
        int from = 0;
        float *dst = NULL;
        if (logits && logits_from < i0 + len) {
            from = logits_from > i0 ? logits_from - i0 : 0;
            dst = logits + (int64_t)(i0 + from - logits_from) * V;
        }
        feed_chunk(d, tokens + i0, len, from, dst);
    }
    return ML_OK;
}
