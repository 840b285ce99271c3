#include "model/decoder.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "model/linear.h"
#include "model/ops/ops.h"

ml_status ml_decoder_create(ml_decoder *d, ml_model *m, int max_len, int max_chunk) {
    memset(d, 0, sizeof *d);
    const ml_config *c = &m->cfg;
    if (max_chunk < 1) return ml_fail(ML_ERR_ARG, "decoder: chunk of %d tokens must be positive", max_chunk);
    if (max_chunk > max_len) max_chunk = max_len;
    ML_TRY(ml_model_refresh_weights(m));
    ML_TRY(ml_model_act_scratch_reserve(m, (size_t)max_chunk)); /* activation transforms, if any */
    d->m = m;
    d->max_chunk = max_chunk;
    ML_TRY(ml_kv_cache_create(&d->kv, c, max_len, max_chunk));
    const size_t N = (size_t)max_chunk, C = c->hidden_size, F = c->intermediate_size,
                 qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim;
    const int threads = omp_get_max_threads();
    ml_arena *a = &d->arena;
    size_t o_in = ml_arena_reserve(a, N * C), o_out = ml_arena_reserve(a, N * C), o_ln1 = ml_arena_reserve(a, N * C),
           o_rstd1 = ml_arena_reserve(a, N), o_q = ml_arena_reserve(a, N * qd), o_k = ml_arena_reserve(a, N * kvd),
           o_v = ml_arena_reserve(a, N * kvd), o_qr = ml_arena_reserve(a, N * c->num_heads),
           o_kr = ml_arena_reserve(a, N * c->num_kv_heads), o_att = ml_arena_reserve(a, N * qd),
           o_lse = ml_arena_reserve(a, N * c->num_heads), o_mid = ml_arena_reserve(a, N * C),
           o_ln2 = ml_arena_reserve(a, N * C), o_rstd2 = ml_arena_reserve(a, N), o_gate = ml_arena_reserve(a, N * F),
           o_up = ml_arena_reserve(a, N * F), o_h = ml_arena_reserve(a, N * F), o_lnf = ml_arena_reserve(a, N * C),
           o_rstdf = ml_arena_reserve(a, N), o_logits = ml_arena_reserve(a, (size_t)c->vocab_size),
           o_cos = ml_arena_reserve(a, (size_t)max_len * (c->head_dim / 2)),
           o_sin = ml_arena_reserve(a, (size_t)max_len * (c->head_dim / 2)),
           o_work = ml_arena_reserve(a, ml_attention_work_floats(1, max_len, c->num_heads, c->num_kv_heads,
                                                                 c->head_dim, threads));
    ml_status s = ml_arena_commit(a, "decoder scratch");
    d->pos = malloc(sizeof(int32_t) * N);
    if (s == ML_OK && !d->pos) s = ml_fail(ML_ERR_NOMEM, "out of memory for decoder positions");
    if (s != ML_OK) {
        ml_decoder_free(d);
        return s;
    }
    float *b = a->base;
    ml_block_acts *x = &d->acts;
    x->resid_in = b + o_in, x->ln1 = b + o_ln1, x->rstd1 = b + o_rstd1, x->q = b + o_q, x->k = b + o_k;
    x->v = b + o_v, x->q_rstd = b + o_qr, x->k_rstd = b + o_kr, x->att = b + o_att, x->lse = b + o_lse;
    x->resid_mid = b + o_mid, x->ln2 = b + o_ln2, x->rstd2 = b + o_rstd2, x->gate = b + o_gate, x->up = b + o_up;
    d->out = b + o_out, d->ffn_h = b + o_h, d->ln_f = b + o_lnf, d->rstd_f = b + o_rstdf;
    d->logits = b + o_logits, d->rope_cos = b + o_cos, d->rope_sin = b + o_sin, d->attn_work = b + o_work;
    ml_attention_work_init(d->attn_work, threads);
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
    if (len < 0 || len > d->kv.len)
        return ml_fail(ML_ERR_ARG, "decoder rewind to %d: the sequence holds %d tokens", len, d->kv.len);
    if (!ml_kv_cache_can_rewind(&d->kv, len))
        return ml_fail(ML_ERR_UNSUPPORTED,
                       "decoder rewind to %d: a sliding-window cache no longer holds the keys it would need", len);
    d->kv.len = len;
    return ML_OK;
}

/* One chunk of n <= max_chunk tokens at positions kv.len ... through the model's block code. */
static void feed_chunk(ml_decoder *d, const int32_t *tokens, int n, int rows_from, float *logits) {
    ml_model *m = d->m;
    const ml_config *c = &m->cfg;
    const int C = c->hidden_size, A = ml_config_applied_layers(c), V = c->vocab_size, start = d->kv.len;
    for (int t = 0; t < n; t++) d->pos[t] = start + t;
    const ml_block_io io = {1, n, d->pos, NULL, d->rope_cos, d->rope_sin, d->attn_work, &d->kv, start};
    ml_block_acts *x = &d->acts;
    ml_embed_forward(m, x->resid_in, tokens, n);
    for (int a = 0; a < A; a++) {
        ml_block_forward(m, a, &io, x, d->out, d->ffn_h, 1);
        float *t = x->resid_in; /* the block's output is the next block's input */
        x->resid_in = d->out;
        d->out = t;
    }
    ml_rmsnorm_forward(d->ln_f, d->rstd_f, x->resid_in, m->w.final_norm, n, C, c->rms_norm_eps);
    if (logits && rows_from < n) {
        ml_linear_forward(m, ML_P_LM_HEAD, -1, logits, d->ln_f + (int64_t)rows_from * C, n - rows_from);
        memcpy(d->logits, logits + (int64_t)(n - 1 - rows_from) * V, sizeof(float) * (size_t)V);
    } else {
        ml_linear_forward(m, ML_P_LM_HEAD, -1, d->logits, d->ln_f + (int64_t)(n - 1) * C, 1);
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
