#include "model/linear.h"

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/arena.h"

#include "model/ops/gemm_bf16.h"
#include "model/ops/gemm_int8.h"
#include "model/ops/ops.h"

typedef struct {
    const float *w; /* used weight */
    float *g;       /* gradient of the used weight */
    int in, out;
} linear;

ml_gemm_engine ml_linear_engine(const ml_model *m) {
    return m->precision == ML_PRECISION_BF16 ? m->gemm_engine : ML_GEMM_OPENBLAS;
}

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

/* Index of the matrix `kind` of block `layer` in the parameter table (the embedding for a tied head). */
static int param_index(const ml_model *m, ml_param_kind kind, int layer) {
    if (kind == ML_P_LM_HEAD && m->cfg.tie_word_embeddings) kind = ML_P_EMBED;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].kind == kind && m->params[i].layer == layer) return i;
    return -1;
}

/* The bf16 copy of the matrix the products read (NULL when the model keeps none). */
static const uint16_t *weight16(const ml_model *m, ml_param_kind kind, int l) {
    if (!m->w16 || m->precision != ML_PRECISION_BF16) return NULL;
    const int i = param_index(m, kind, l);
    return i >= 0 ? m->w16 + m->params[i].offset : NULL;
}

static const ml_act_transform *act_of(const ml_model *m, ml_param_kind kind, int layer, const ml_param **p) {
    if (!m->act_transforms) return NULL;
    const int i = param_index(m, kind, layer);
    if (i < 0 || !m->act_transforms[i]) return NULL;
    *p = &m->params[i];
    return m->act_transforms[i];
}

/* The used weight as an operand: fp32, and its bf16 copy where the model keeps one. */
static ml_gemm_operand weight_operand(const ml_model *m, ml_param_kind kind, int layer, const linear *L) {
    return (ml_gemm_operand){L->w, weight16(m, kind, layer), L->in};
}

/* fp32 buffers of the calling thread, kept between calls: 0 a widened input, 1 an output or a widened output
 * gradient, 2 an input gradient to be rounded. */
static _Thread_local ml_scratch buffers[3];

static float *buffer(int i, size_t n) { return ml_scratch_get(&buffers[i], n * sizeof(float)); }

/* x's fp32 values for what needs them (activation transforms, observers) when only its bf16 bits were kept:
 * widened into buffer 0; NULL without memory. */
static const float *input_f32(ml_gemm_operand x, int N, int in) {
    if (x.f32) return x.f32;
    float *w = buffer(0, (size_t)N * in);
    if (w) ml_bf16_widen(w, x.b16, (size_t)N * in);
    return w;
}

void ml_linear_forward(const ml_model *m, ml_param_kind kind, int layer, float *y, const float *x, int N) {
    ml_linear_forward_in(m, kind, layer, y, ml_gemm_f32(x, lookup(m, kind, layer).in), N);
}

void ml_linear_forward_in(const ml_model *m, ml_param_kind kind, int layer, float *y, ml_gemm_operand x, int N) {
    const linear L = lookup(m, kind, layer);
    const ml_param *p = NULL;
    const ml_act_transform *at = act_of(m, kind, layer, &p);
    if (at && !(x.f32 = input_f32(x, N, L.in))) return;
    if (at && m->w8 && m->w8[p - m->params].N > 0 && (size_t)N <= m->x8_rows) { /* the integer product */
        const int xg = at->int8_group(at->ctx, p, L.in);
        at->int8_codes(at->ctx, p, m->x8, m->x8_scale, m->x8_offset, x.f32, N, L.in);
        ml_gemm_q8(y, m->x8, m->x8_scale, xg, m->x8_offset, &m->w8[p - m->params], N);
        return;
    }
    if (at && (size_t)N <= m->act_scratch_rows) {
        at->forward(at->ctx, p, m->act_scratch, x.f32, N, L.in);
        x = ml_gemm_f32(m->act_scratch, L.in);
    }
    ml_matmul_forward_on(ml_linear_engine(m), y, x, weight_operand(m, kind, layer, &L), N, L.in, L.out);
}

void ml_linear_forward_to_bf16(const ml_model *m, ml_param_kind kind, int layer, uint16_t *y16, ml_gemm_operand x,
                               int N) {
    const linear L = lookup(m, kind, layer);
    const ml_param *p = NULL;
    if (!act_of(m, kind, layer, &p)) {
        ml_gemm_ops_to_bf16(ml_linear_engine(m), 0, 1, N, L.out, L.in, x, weight_operand(m, kind, layer, &L), y16);
        return;
    }
    float *y = buffer(1, (size_t)N * L.out); /* a transformed input: the fp32 route, then rounded */
    if (!y) return;
    ml_linear_forward_in(m, kind, layer, y, x, N);
    ml_bf16_convert(y16, y, N, L.out, L.out);
}

void ml_linear_backward(ml_model *m, ml_param_kind kind, int layer, float *dx, const float *dy, const float *x, int N,
                        int accumulate_dx) {
    const linear L = lookup(m, kind, layer);
    ml_linear_backward_in(m, kind, layer, dx, ml_gemm_f32(dy, L.out), ml_gemm_f32(x, L.in), N, accumulate_dx);
}

void ml_linear_backward_in(ml_model *m, ml_param_kind kind, int layer, float *dx, ml_gemm_operand dy,
                           ml_gemm_operand x, int N, int accumulate_dx) {
    const linear L = lookup(m, kind, layer);
    const ml_param *p = NULL;
    const ml_act_transform *at = act_of(m, kind, layer, &p);
    const ml_gemm_operand w = weight_operand(m, kind, layer, &L);
    if ((at || m->observer) && !(x.f32 = input_f32(x, N, L.in))) return;
    if (m->observer && !dy.f32) { /* the observer reads fp32: widen a bf16-only gradient */
        float *d = buffer(1, (size_t)N * L.out);
        if (!d) return;
        ml_bf16_widen(d, dy.b16, (size_t)N * L.out);
        dy.f32 = d;
    }
    if (at && (size_t)N <= m->act_scratch_rows) {
        /* dW from the transformed input; dx = mask(dy W), added when accumulating */
        float *xq = m->act_scratch, *tmp = m->act_scratch + m->act_scratch_rows * (size_t)m->act_scratch_cols;
        at->forward(at->ctx, p, xq, x.f32, N, L.in);
        if (m->observer) m->observer(m->observer_ctx, m, kind, layer, dy.f32, xq, NULL, N); /* the input dW sees */
        float *d = dx ? (accumulate_dx && at->backward ? tmp : dx) : NULL;
        const int acc = d == dx ? accumulate_dx : 0;
        ml_matmul_backward_on(ml_linear_engine(m), d, L.g, dy, ml_gemm_f32(xq, L.in), w, N, L.in, L.out, acc,
                              ml_model_grad_accumulates(m, param_index(m, kind, layer)));
        if (dx && at->backward) {
            at->backward(at->ctx, p, d, x.f32, N, L.in);
            if (d != dx) {
                const size_t n = (size_t)N * L.in;
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < n; i++) dx[i] += d[i];
            }
        }
        return;
    }
    if (m->observer) m->observer(m->observer_ctx, m, kind, layer, dy.f32, x.f32, NULL, N);
    ml_matmul_backward_on(ml_linear_engine(m), dx, L.g, dy, x, w, N, L.in, L.out, accumulate_dx,
                          ml_model_grad_accumulates(m, param_index(m, kind, layer)));
}

void ml_linear_backward_to_bf16(ml_model *m, ml_param_kind kind, int layer, uint16_t *dx16, ml_gemm_operand dy,
                                ml_gemm_operand x, int N) {
    const linear L = lookup(m, kind, layer);
    const ml_param *p = NULL;
    if (act_of(m, kind, layer, &p) || m->observer) { /* the fp32 route (masked input gradient, observer), rounded */
        float *dx = buffer(2, (size_t)N * L.in);
        if (!dx) return;
        ml_linear_backward_in(m, kind, layer, dx, dy, x, N, 0);
        ml_bf16_convert(dx16, dx, N, L.in, L.in);
        return;
    }
    ml_matmul_backward_to_bf16_on(ml_linear_engine(m), dx16, L.g, dy, x, weight_operand(m, kind, layer, &L), N, L.in, L.out,
                                  ml_model_grad_accumulates(m, param_index(m, kind, layer)));
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
void ml_model_rebind_used(ml_model *m) {
    ml_tensors *u = &m->u;
    *u = m->w;
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        if (!m->transforms || !m->transforms[i]) continue;
        float **slot = ml_tensors_slot(u, p);
        if (slot) *slot = m->used_arena.base + p->offset;
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
    ml_model_rebind_used(m);
    ml_model_weights_changed(m);
    return m->act_scratch_rows ? ml_model_int8_plan(m) : ML_OK;
}

/* Whether parameter i's product keeps the plain form for oneDNN (one scale per weight row and per input row). */
static int int8_plain(const ml_model *m, int i) {
    const ml_param *p = &m->params[i];
    const ml_weight_transform *t = m->transforms[i];
    const ml_act_transform *a = m->act_transforms[i];
    const int K = (int)p->shape[1];
    return ml_gemm_int8_onednn() && t->int8_group(t->ctx, p) == K && a->int8_group(a->ctx, p, K) == K;
}

/* The int8 engine's codes of parameter i's used weight, packed; with `used`, also the used copy as code * scale (the
 * fake-quantized value, a -0 aside: one rounding pass instead of two). One parallel region per matrix, panel by panel
 * (a region costs a scheduler slice when the cores are shared). */
static void int8_pack(ml_model *m, int i, float *used) {
    const ml_param *p = &m->params[i];
    const ml_weight_transform *t = m->transforms[i];
    ml_int8_matrix *w = &m->w8[i];
    const int wg = t->int8_group(t->ctx, p), rows = (int)p->shape[0], cols = (int)p->shape[1], wgroups = cols / wg;
    const int panels = (rows + ML_INT8_PANEL - 1) / ML_INT8_PANEL;
    const float *latent = ml_param_data(m, p);
    ml_int8_layout(w, w->q, rows, cols, w->group, int8_plain(m, i));
#pragma omp parallel num_threads(m->w8_threads) /* at most the threads the scratch was planned for */
    {
        const int tid = omp_get_thread_num();
        int8_t *codes = m->w8_codes + (size_t)tid * m->w8_panel_bytes;
        float *scales = m->w8_scales + (size_t)tid * m->w8_panel_scales;
#pragma omp for schedule(static)
        for (int pn = 0; pn < panels; pn++) {
            const int r0 = pn * ML_INT8_PANEL, r1 = r0 + ML_INT8_PANEL < rows ? r0 + ML_INT8_PANEL : rows;
            t->int8_codes(t->ctx, p, codes, scales, latent, r0, r1);
            ml_int8_pack_panel(w, pn, codes, scales, wg);
            for (int r = r0; used && r < r1; r++)
                for (int g = 0; g < wgroups; g++) {
                    const float s = scales[(size_t)(r - r0) * wgroups + g];
                    const int8_t *qg = codes + (size_t)(r - r0) * cols + (size_t)g * wg;
                    float *u = used + (size_t)r * cols + (size_t)g * wg;
#pragma omp simd
                    for (int k = 0; k < wg; k++) u[k] = (float)qg[k] * s;
                }
        }
    }
}

/* Every packed product's codes (when the plan changes). */
static void int8_pack_all(ml_model *m) {
    for (int i = 0; m->w8 && i < m->n_params; i++)
        if (m->w8[i].N > 0) int8_pack(m, i, NULL);
}

uint16_t *ml_model_bf16_mirror(const ml_model *m) {
    return m->w16 && !m->transforms && m->w16_numel >= m->param_arena.used ? m->w16 : NULL;
}

ml_status ml_model_refresh_weights(ml_model *m) {
    if (!m->weights_stale) return ML_OK;
    if (m->transforms) {
        ml_status s = ML_OK;
        for (int i = 0; i < m->n_params && s == ML_OK; i++) {
            const ml_weight_transform *t = m->transforms[i];
            if (!t) continue;
            const ml_param *p = &m->params[i];
            if (m->w8 && m->w8[i].N > 0) { /* codes for the int8 engine, the used copy from them */
                int8_pack(m, i, m->used_arena.base + p->offset);
                continue;
            }
            s = t->forward(t->ctx, p, m->used_arena.base + p->offset, ml_param_data(m, p));
            if (s != ML_OK) s = ml_fail_context(s, "weight transform '%s' of %s", t->name, p->name);
        }
        ML_TRY(s);
    }
    if (m->w16 && !m->w16_current) /* the bf16 copies of what the products read: used weights, the latent ones where
                                      untransformed (unless the optimizer step wrote them) */
        for (int i = 0; i < m->n_params; i++) {
            const ml_param *p = &m->params[i];
            if (!is_matrix(p) || p->kind == ML_P_AUX || p->offset + p->numel > m->w16_numel) continue;
            const float *src = m->transforms && m->transforms[i] ? m->used_arena.base + p->offset : ml_param_data(m, p);
            ml_bf16_convert(m->w16 + p->offset, src, (int)p->shape[0], (int)p->shape[1], (int)p->shape[1]);
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

/* ---------------------------------------------------------------- activation transforms */

/* Widest input of any product (the scratch row length). */
static size_t max_in(const ml_model *m) {
    const ml_config *c = &m->cfg;
    size_t w = (size_t)c->hidden_size;
    if ((size_t)c->intermediate_size > w) w = (size_t)c->intermediate_size;
    if ((size_t)c->num_heads * c->head_dim > w) w = (size_t)c->num_heads * c->head_dim;
    return w;
}

ml_status ml_model_act_scratch_reserve(ml_model *m, size_t rows) {
    if (!m->act_transforms || rows <= m->act_scratch_rows) return ml_model_int8_plan(m);
    const size_t cols = max_in(m);
    float *s = ml_aligned_calloc(2 * rows * cols * sizeof(float)); /* transformed input + gradient */
    if (!s) return ml_fail(ML_ERR_NOMEM, "out of memory for the activation-transform scratch");
    free(m->act_scratch);
    m->act_scratch = s;
    m->act_scratch_rows = rows;
    m->act_scratch_cols = cols;
    return ml_model_int8_plan(m);
}

/* ---------------------------------------------------------------- the int8 engine's operands */

/* The kernel group of parameter i's product when both its transforms have integer forms the kernel takes, else 0. */
static int int8_product(const ml_model *m, int i) {
    const ml_param *p = &m->params[i];
    const ml_weight_transform *t = m->transforms ? m->transforms[i] : NULL;
    const ml_act_transform *a = m->act_transforms ? m->act_transforms[i] : NULL;
    if (!t || !a || !t->int8_group || !t->int8_codes || !a->int8_group || !a->int8_codes || p->ndim != 2) return 0;
    const int K = (int)p->shape[1], wg = t->int8_group(t->ctx, p), xg = a->int8_group(a->ctx, p, K);
    return wg > 0 && xg > 0 ? ml_int8_group(K, wg, xg) : 0;
}

static void int8_release(ml_model *m) {
    free(m->w8), free(m->w8_mem), free(m->w8_codes), free(m->w8_scales);
    free(m->x8), free(m->x8_scale), free(m->x8_offset);
    m->w8 = NULL, m->w8_mem = NULL, m->w8_codes = NULL, m->w8_scales = NULL;
    m->x8 = NULL, m->x8_scale = NULL, m->x8_offset = NULL;
    m->x8_rows = 0;
}

ml_status ml_model_int8_plan(ml_model *m) {
    const int on = ml_gemm_int8_forward(m->gemm_engine); /* fp32 auto resolves to auto, forced engines to themselves */
    size_t bytes = 0, max_cols = 0;
    uint64_t key = 1469598103934665603ull; /* FNV-1a over what the plan depends on */
    int any = 0;
    for (int i = 0; on && m->act_scratch_rows && i < m->n_params; i++) {
        const int g = int8_product(m, i);
        if (!g) continue;
        const ml_param *p = &m->params[i];
        bytes += ml_int8_matrix_bytes((int)p->shape[0], (int)p->shape[1], g, int8_plain(m, i));
        if ((size_t)p->shape[1] > max_cols) max_cols = (size_t)p->shape[1];
        key = (key ^ (uint64_t)i) * 1099511628211ull, key = (key ^ (uint64_t)g) * 1099511628211ull;
        any = 1;
    }
    key = (key ^ (uint64_t)m->act_scratch_rows) * 1099511628211ull;
    if (any && m->w8 && key == m->w8_plan) return ML_OK; /* unchanged: keep the packed codes */
    int8_release(m);
    if (!any) return ML_OK;
    const size_t rows = m->act_scratch_rows, cols = max_in(m);
    m->w8 = calloc((size_t)m->n_params, sizeof *m->w8);
    m->w8_mem = ml_aligned_calloc(bytes);
    m->w8_threads = omp_get_max_threads();
    m->w8_panel_bytes = (size_t)ML_INT8_PANEL * max_cols;
    m->w8_panel_scales = (size_t)ML_INT8_PANEL * (max_cols / 4); /* groups have at least 4 columns */
    m->w8_codes = malloc((size_t)m->w8_threads * m->w8_panel_bytes);
    m->w8_scales = malloc((size_t)m->w8_threads * m->w8_panel_scales * sizeof(float));
    m->x8 = malloc(rows * cols);
    m->x8_scale = malloc(rows * (cols / 4 + 1) * sizeof(float));
    m->x8_offset = malloc(rows * sizeof(int32_t));
    if (!m->w8 || !m->w8_mem || !m->w8_codes || !m->w8_scales || !m->x8 || !m->x8_scale || !m->x8_offset) {
        int8_release(m);
        return ml_fail(ML_ERR_NOMEM, "out of memory for the int8 engine's operands");
    }
    m->x8_rows = rows;
    char *mem = m->w8_mem;
    for (int i = 0; i < m->n_params; i++) {
        const int g = int8_product(m, i);
        if (!g) continue;
        const ml_param *p = &m->params[i];
        m->w8[i] = (ml_int8_matrix){.N = (int)p->shape[0], .K = (int)p->shape[1], .group = g, .q = (int8_t *)mem};
        mem += ml_int8_matrix_bytes((int)p->shape[0], (int)p->shape[1], g, int8_plain(m, i));
    }
    m->w8_plan = key;
    int8_pack_all(m); /* now: a decoder refreshes before it reserves */
    return ML_OK;
}

ml_status ml_model_set_act_transform(ml_model *m, const ml_param *p, const ml_act_transform *t) {
    const int i = (int)(p - m->params);
    if (i < 0 || i >= m->n_params) return ml_fail(ML_ERR_ARG, "activation transform: not a parameter of this model");
    if (t && !is_matrix(p))
        return ml_fail(ML_ERR_ARG, "activation transform '%s' on %s: only matrices have products", t->name, p->name);
    if (!m->act_transforms) {
        if (!t) return ML_OK;
        m->act_transforms = calloc((size_t)m->n_params, sizeof *m->act_transforms);
        if (!m->act_transforms) return ml_fail(ML_ERR_NOMEM, "out of memory for the activation-transform table");
    }
    m->act_transforms[i] = t;
    if (m->B > 0) { /* already reserved: size the scratch for the reserved batch and the head chunks */
        size_t rows = (size_t)m->B * m->T;
        if ((size_t)m->head_chunk > rows) rows = (size_t)m->head_chunk;
        ML_TRY(ml_model_act_scratch_reserve(m, rows));
    }
    ML_TRY(ml_model_sync_act16(m)); /* activation transforms read fp32 inputs */
    return m->act_scratch_rows ? ml_model_int8_plan(m) : ML_OK;
}

void ml_model_set_transform_owner(ml_model *m, void *owner, void (*free_fn)(void *owner)) {
    if (m->transform_owner_free && m->transform_owner != owner) m->transform_owner_free(m->transform_owner);
    m->transform_owner = owner;
    m->transform_owner_free = free_fn;
}
