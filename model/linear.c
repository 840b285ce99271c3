#include "model/linear.h"

#include <stdlib.h>
#include <string.h>

#include "model/ops/gemm_bf16.h"
#include "model/ops/ops.h"

typedef struct {
    const float *w; /* used weight */
    float *g;       /* gradient of the used weight */
    int in, out;
} linear;

static linear lookup(const ml_model *m, ml_param_kind kind, int l) {
    const ml_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, qd = c->num_heads * c->head_dim,
              kvd = c->num_kv_heads * c->head_dim;
    switch (kind) {
    case ML_P_WQ: return (linear){m->u.layer[l].wq, m->g.layer[l].wq, C, qd};
    case ML_P_WK: return (linear){m->u.layer[l].wk, m->g.layer[l].wk, C, kvd};
    case ML_P_WV: return (linear){m->u.layer[l].wv, m->g.layer[l].wv, C, kvd};
    case ML_P_WO: return (linear){m->u.layer[l].wo, m->g.layer[l].wo, qd, C};
    case ML_P_WGATE: return (linear){m->u.layer[l].wgate, m->g.layer[l].wgate, C, F};
    case ML_P_WUP: return (linear){m->u.layer[l].wup, m->g.layer[l].wup, C, F};
    case ML_P_WDOWN: return (linear){m->u.layer[l].wdown, m->g.layer[l].wdown, F, C};
    case ML_P_LM_HEAD: return (linear){m->u.lm_head, m->g.lm_head, C, c->vocab_size};
    default: return (linear){NULL, NULL, 0, 0}; /* not a matrix of a linear layer */
    }
}

void ml_linear_forward(const ml_model *m, ml_param_kind kind, int layer, float *y, const float *x, int N) {
    const linear L = lookup(m, kind, layer);
    if (m->precision == ML_PRECISION_BF16)
        ml_matmul_forward_bf16(y, x, L.w, N, L.in, L.out);
    else
        ml_matmul_forward(y, x, L.w, N, L.in, L.out);
}

void ml_linear_backward(ml_model *m, ml_param_kind kind, int layer, float *dx, const float *dy, const float *x, int N,
                        int accumulate_dx) {
    const linear L = lookup(m, kind, layer);
    if (m->observer) m->observer(m->observer_ctx, m, kind, layer, dy, x, NULL, N);
    if (m->precision == ML_PRECISION_BF16)
        ml_matmul_backward_bf16(dx, L.g, dy, x, L.w, N, L.in, L.out, accumulate_dx);
    else
        ml_matmul_backward(dx, L.g, dy, x, L.w, N, L.in, L.out, accumulate_dx);
}

void ml_embed_forward(const ml_model *m, float *out, const int32_t *tokens, int N) {
    ml_embedding_forward(out, tokens, m->u.embed, N, m->cfg.hidden_size);
}

void ml_embed_backward(ml_model *m, const float *dout, const int32_t *tokens, int N) {
    if (m->observer) m->observer(m->observer_ctx, m, ML_P_EMBED, -1, dout, NULL, tokens, N);
    ml_embedding_backward(m->g.embed, dout, tokens, N, m->cfg.hidden_size);
}

/* ---------------------------------------------------------------- weight transforms */

static int is_matrix(const ml_param *p) { return p->ndim == 2; }

/* Point every used tensor at its latent weight, or at its slot in the used arena when transformed. */
static void bind_used(ml_model *m) {
    ml_tensors *u = &m->u;
    *u = m->w;
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        if (!m->transforms || !m->transforms[i]) continue;
        float *x = m->used_arena.base + p->offset;
        switch (p->kind) {
        case ML_P_EMBED: u->embed = x; break;
        case ML_P_LM_HEAD: u->lm_head = x; break;
        case ML_P_WQ: u->layer[p->layer].wq = x; break;
        case ML_P_WK: u->layer[p->layer].wk = x; break;
        case ML_P_WV: u->layer[p->layer].wv = x; break;
        case ML_P_WO: u->layer[p->layer].wo = x; break;
        case ML_P_WGATE: u->layer[p->layer].wgate = x; break;
        case ML_P_WUP: u->layer[p->layer].wup = x; break;
        case ML_P_WDOWN: u->layer[p->layer].wdown = x; break;
        default: break;
        }
    }
    if (m->cfg.tie_word_embeddings) u->lm_head = u->embed; /* one table: transformed once, used twice */
}

ml_status ml_model_set_transform(ml_model *m, const ml_param *p, const ml_weight_transform *t) {
    const int i = (int)(p - m->params);
    if (i < 0 || i >= m->n_params) return ml_fail(ML_ERR_ARG, "weight transform: not a parameter of this model");
    if (t && !is_matrix(p))
        return ml_fail(ML_ERR_ARG, "weight transform '%s' on %s: only matrices are transformed", t->name, p->name);
    if (!m->transforms) {
        if (!t) return ML_OK;
        m->transforms = calloc((size_t)m->n_params, sizeof *m->transforms);
        if (!m->transforms) return ml_fail(ML_ERR_NOMEM, "out of memory for the weight-transform table");
    }
    if (t && !m->used_arena.base) {
        /* same offsets as the parameter arena; only transformed tensors are ever written */
        m->used_arena.used = m->param_arena.used;
        ML_TRY(ml_arena_commit(&m->used_arena, "transformed weights"));
    }
    m->transforms[i] = t;
    bind_used(m);
    m->weights_stale = 1;
    return ML_OK;
}

ml_status ml_model_refresh_weights(ml_model *m) {
    if (!m->weights_stale) return ML_OK;
    if (m->transforms) {
        ml_status s = ML_OK;
        for (int i = 0; i < m->n_params && s == ML_OK; i++) {
            const ml_weight_transform *t = m->transforms[i];
            if (!t) continue;
            const ml_param *p = &m->params[i];
            s = t->forward(t->ctx, p, m->used_arena.base + p->offset, ml_param_data(m, p));
            if (s != ML_OK) s = ml_fail_context(s, "weight transform '%s' of %s", t->name, p->name);
        }
        ML_TRY(s);
    }
    m->weights_stale = 0;
    return ML_OK;
}

void ml_model_grads_to_latent(ml_model *m) {
    if (!m->transforms) return;
    for (int i = 0; i < m->n_params; i++) {
        const ml_weight_transform *t = m->transforms[i];
        if (!t || !t->backward) continue;
        const ml_param *p = &m->params[i];
        t->backward(t->ctx, p, ml_param_grad(m, p), ml_param_data(m, p));
    }
}
