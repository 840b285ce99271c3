#include "model/model.h"

#include "common/sysinfo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/prof.h"
#include "common/rng.h"
#include "model/block.h"
#include "model/linear.h"
#include "model/ops/gemm.h"
#include "model/ops/ops.h"

/* ---------------------------------------------------------------- parameter table */

static void add_param(ml_model *m, int *count, ml_param_kind kind, int layer, const char *name, int64_t d0,
                      int64_t d1, int decay) {
    if (m->params) {
        ml_param *p = &m->params[*count];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->kind = kind;
        p->layer = layer;
        p->ndim = d1 > 0 ? 2 : 1;
        p->shape[0] = d0;
        p->shape[1] = d1 > 0 ? d1 : 0;
        p->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
        p->weight_decay = decay;
    }
    (*count)++;
}

/* Walk the network's tensors in a fixed order (embedding, blocks, final norm, head). Called twice:
 * once to count, once to fill. */
static void build_table(ml_model *m, int *count) {
    const ml_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, qd = c->num_heads * c->head_dim,
              kvd = c->num_kv_heads * c->head_dim;
    const char *ffn = c->dialect == ML_DIALECT_LLAMA4_TEXT ? "feed_forward" : "mlp";
    char n[96];
    *count = 0;
    add_param(m, count, ML_P_EMBED, -1, "model.embed_tokens.weight", c->vocab_size, C, 1);
    for (int l = 0; l < c->num_layers; l++) {
#define P(kind, fmt, d0, d1, decay)                       \
    snprintf(n, sizeof n, "model.layers.%d." fmt, l, ffn); \
    add_param(m, count, kind, l, n, d0, d1, decay)
        P(ML_P_ATTN_NORM, "input_layernorm.weight%.0s", C, 0, 0);
        P(ML_P_WQ, "self_attn.q_proj.weight%.0s", qd, C, 1);
        P(ML_P_WK, "self_attn.k_proj.weight%.0s", kvd, C, 1);
        P(ML_P_WV, "self_attn.v_proj.weight%.0s", kvd, C, 1);
        P(ML_P_WO, "self_attn.o_proj.weight%.0s", C, qd, 1);
        P(ML_P_MLP_NORM, "post_attention_layernorm.weight%.0s", C, 0, 0);
        P(ML_P_WGATE, "%s.gate_proj.weight", F, C, 1);
        P(ML_P_WUP, "%s.up_proj.weight", F, C, 1);
        P(ML_P_WDOWN, "%s.down_proj.weight", C, F, 1);
#undef P
    }
    add_param(m, count, ML_P_FINAL_NORM, -1, "model.norm.weight", C, 0, 0);
    if (!c->tie_word_embeddings) add_param(m, count, ML_P_LM_HEAD, -1, "lm_head.weight", c->vocab_size, C, 1);
}

float **ml_tensors_slot(ml_tensors *t, const ml_param *p) {
    switch (p->kind) {
    case ML_P_EMBED: return &t->embed;
    case ML_P_FINAL_NORM: return &t->final_norm;
    case ML_P_LM_HEAD: return &t->lm_head;
    case ML_P_ATTN_NORM: return &t->layer[p->layer].attn_norm;
    case ML_P_WQ: return &t->layer[p->layer].wq;
    case ML_P_WK: return &t->layer[p->layer].wk;
    case ML_P_WV: return &t->layer[p->layer].wv;
    case ML_P_WO: return &t->layer[p->layer].wo;
    case ML_P_MLP_NORM: return &t->layer[p->layer].mlp_norm;
    case ML_P_WGATE: return &t->layer[p->layer].wgate;
    case ML_P_WUP: return &t->layer[p->layer].wup;
    case ML_P_WDOWN: return &t->layer[p->layer].wdown;
    case ML_P_AUX: return NULL; /* read through the parameter table by its owner */
    }
    return NULL;
}

static void bind_tensors(const ml_model *m, ml_tensors *t, float *base) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < m->n_params; i++) {
        float **slot = ml_tensors_slot(t, &m->params[i]);
        if (slot) *slot = base + m->params[i].offset;
    }
    if (!t->lm_head) t->lm_head = t->embed; /* tied */
}

ml_status ml_model_create(ml_model *m, const ml_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    ML_TRY(ml_config_validate(&m->cfg));
    ML_TRY(ml_gemm_engine_resolve(ML_GEMM_AUTO, 0, &m->gemm_engine)); /* fp32 auto, or ML_GEMM_ENGINE's openblas / int8 */
    int count;
    build_table(m, &count);
    m->params = calloc((size_t)count, sizeof(ml_param));
    if (!m->params) return ml_fail(ML_ERR_NOMEM, "out of memory for the parameter table");
    build_table(m, &m->n_params);
    for (int i = 0; i < m->n_params; i++) m->params[i].offset = ml_arena_reserve(&m->param_arena, m->params[i].numel);
    m->grad_arena.used = m->param_arena.used;
    m->num_floats = 0;
    for (int i = 0; i < m->n_params; i++) m->num_floats += m->params[i].numel;
    /* Parameters and gradients together, before either is allocated: a config that validates can still
     * ask for terabytes. */
    char what[192];
    snprintf(what, sizeof what, "the model%s%s (%lld parameters: weights and gradients)", m->cfg.name[0] ? " " : "",
             m->cfg.name, (long long)m->num_floats);
    ml_status s = ml_check_memory(2 * (uint64_t)m->param_arena.used * sizeof(float), what);
    if (s != ML_OK) {
        ml_model_free(m);
        return s;
    }
    s = ml_arena_commit(&m->param_arena, "parameters");
    if (s == ML_OK) s = ml_arena_commit(&m->grad_arena, "gradients");
    if (s != ML_OK) {
        ml_model_free(m);
        return s;
    }
    m->grad_unwritten = calloc((size_t)m->n_params, 1);
    if (!m->grad_unwritten) {
        ml_model_free(m);
        return ml_fail(ML_ERR_NOMEM, "out of memory for the gradient table");
    }
    bind_tensors(m, &m->w, m->param_arena.base);
    bind_tensors(m, &m->g, m->grad_arena.base);
    m->u = m->w;
    return ML_OK;
}

ml_status ml_model_param_table(const ml_config *cfg, ml_param **params, int *n_params) {
    ml_model m;
    memset(&m, 0, sizeof m);
    m.cfg = *cfg;
    ML_TRY(ml_config_validate(&m.cfg));
    int count;
    build_table(&m, &count);
    m.params = calloc((size_t)count, sizeof(ml_param));
    if (!m.params) return ml_fail(ML_ERR_NOMEM, "out of memory for the parameter table");
    build_table(&m, &count);
    for (int i = 0; i < count; i++) m.params[i].offset = ml_arena_reserve(&m.param_arena, m.params[i].numel);
    *params = m.params;
    *n_params = count;
    return ML_OK;
}

void ml_model_free(ml_model *m) {
    if (m->transform_owner_free) m->transform_owner_free(m->transform_owner);
    free(m->act_transforms);
    free(m->act_scratch);
    free(m->w8), free(m->w8_mem), free(m->w8_codes), free(m->w8_scales);
    free(m->x8), free(m->x8_scale), free(m->x8_offset);
    ml_arena_free(&m->param_arena);
    ml_arena_free(&m->grad_arena);
    ml_arena_free(&m->act_arena);
    ml_arena_free(&m->used_arena);
    free(m->w16);
    free(m->transforms);
    free(m->params);
    free(m->grad_unwritten);
    free(m->acts);
    memset(m, 0, sizeof *m);
}

const ml_param *ml_model_find_param(const ml_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

ml_status ml_model_add_aux_param(ml_model *m, const char *name, int ndim, const int64_t *shape, int weight_decay,
                                 int *index) {
    if (ndim < 1 || ndim > 2 || shape[0] < 1 || (ndim == 2 && shape[1] < 1))
        return ml_fail(ML_ERR_ARG, "auxiliary parameter %s: bad shape", name);
    if (ml_model_find_param(m, name)) return ml_fail(ML_ERR_ARG, "auxiliary parameter %s exists already", name);
    ml_param *np = realloc(m->params, sizeof *np * (size_t)(m->n_params + 1));
    if (!np) return ml_fail(ML_ERR_NOMEM, "out of memory for the parameter table");
    m->params = np;
    uint8_t *nu = realloc(m->grad_unwritten, (size_t)(m->n_params + 1));
    if (!nu) return ml_fail(ML_ERR_NOMEM, "out of memory for the gradient table");
    nu[m->n_params] = 0;
    m->grad_unwritten = nu;
    ml_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->kind = ML_P_AUX;
    p->layer = -1;
    p->ndim = ndim;
    p->shape[0] = shape[0];
    p->shape[1] = ndim == 2 ? shape[1] : 0;
    p->numel = (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
    p->weight_decay = weight_decay;
    /* grow both arenas: same offsets, old contents kept */
    ml_arena pa = {0}, ga = {0};
    pa.used = m->param_arena.used;
    p->offset = ml_arena_reserve(&pa, p->numel);
    ga.used = pa.used;
    ml_status s = ml_arena_commit(&pa, "parameters");
    if (s == ML_OK) s = ml_arena_commit(&ga, "gradients");
    if (s != ML_OK) {
        ml_arena_free(&pa);
        return s;
    }
    memcpy(pa.base, m->param_arena.base, m->param_arena.capacity * sizeof(float));
    memcpy(ga.base, m->grad_arena.base, m->grad_arena.capacity * sizeof(float));
    ml_arena_free(&m->param_arena);
    ml_arena_free(&m->grad_arena);
    m->param_arena = pa;
    m->grad_arena = ga;
    if (m->transforms) {
        const ml_weight_transform **t = realloc(m->transforms, sizeof *t * (size_t)(m->n_params + 1));
        if (!t) return ml_fail(ML_ERR_NOMEM, "out of memory for the weight-transform table");
        t[m->n_params] = NULL;
        m->transforms = t;
    }
    if (m->act_transforms) {
        const ml_act_transform **t = realloc(m->act_transforms, sizeof *t * (size_t)(m->n_params + 1));
        if (!t) return ml_fail(ML_ERR_NOMEM, "out of memory for the activation-transform table");
        t[m->n_params] = NULL;
        m->act_transforms = t;
    }
    m->n_params++;
    m->num_floats += p->numel;
    if (index) *index = m->n_params - 1;
    bind_tensors(m, &m->w, m->param_arena.base);
    bind_tensors(m, &m->g, m->grad_arena.base);
    ml_model_rebind_used(m);
    return ML_OK;
}

/* One RNG stream per tensor (seeded from seed and the tensor's index), so tensors initialise in
 * parallel and a tensor's values do not depend on the thread count. */
void ml_model_init_weights(ml_model *m, uint64_t seed) {
    const double std = m->cfg.initializer_range;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m->n_params; i++) {
        const ml_param *p = &m->params[i];
        float *x = ml_param_data(m, p);
        if (p->ndim == 1) {
            for (size_t j = 0; j < p->numel; j++) x[j] = 1.0f;
            continue;
        }
        ml_rng r;
        ml_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull + 1);
        for (size_t j = 0; j < p->numel; j++) x[j] = (float)(std * ml_rng_normal(&r));
    }
}

/* The gradients that only products write (the first one can overwrite): the linear layers' matrices, and the embedding
 * when the LM head's product shares it. An untied embedding's gradient is scattered into: it is zeroed. */
static int written_by_products(const ml_model *m, const ml_param *p) {
    switch (p->kind) {
    case ML_P_WQ: case ML_P_WK: case ML_P_WV: case ML_P_WO: case ML_P_WGATE: case ML_P_WUP: case ML_P_WDOWN:
    case ML_P_LM_HEAD: return 1;
    case ML_P_EMBED: return m->cfg.tie_word_embeddings;
    default: return 0;
    }
}

static void zero_floats(float *g, size_t n) {
    /* in 1 MiB pieces over the threads (one thread's memset of 125M's 475 MiB took 55 ms of a 2 s bf16 step) */
    enum { PIECE = 1 << 18 };
    const int64_t pieces = (int64_t)((n + PIECE - 1) / PIECE);
#pragma omp parallel for schedule(static) if (pieces > 1)
    for (int64_t p = 0; p < pieces; p++)
        memset(g + p * PIECE, 0, (size_t)((int64_t)n - p * PIECE < PIECE ? (int64_t)n - p * PIECE : PIECE) * sizeof(float));
}

void ml_model_zero_grad(ml_model *m) {
    const int overwrite = ml_gemm_overwrite_pays(ml_linear_engine(m));
    ML_PROFILE(ML_PROF_ZERO_GRAD) {
        if (!overwrite) {
            memset(m->grad_unwritten, 0, (size_t)m->n_params);
            zero_floats(m->grad_arena.base, m->grad_arena.capacity);
        }
        for (int i = 0; overwrite && i < m->n_params; i++) {
            const ml_param *p = &m->params[i];
            m->grad_unwritten[i] = (uint8_t)written_by_products(m, p);
            if (!m->grad_unwritten[i]) zero_floats(ml_param_grad(m, p), p->numel);
        }
    }
}

int ml_model_grad_accumulates(ml_model *m, int i) {
    if (i < 0 || i >= m->n_params || !m->grad_unwritten[i]) return 1;
    m->grad_unwritten[i] = 0;
    return 0;
}

/* Zero the gradients of block `layer` (-1: outside the blocks) that no product wrote since ml_model_zero_grad, before
 * anyone reads them or adds to them. */
static void settle_grads(ml_model *m, int layer) {
    for (int i = 0; i < m->n_params; i++)
        if (m->grad_unwritten[i] && m->params[i].layer == layer) {
            zero_floats(ml_param_grad(m, &m->params[i]), m->params[i].numel);
            m->grad_unwritten[i] = 0;
        }
}

/* ---------------------------------------------------------------- precision */

ml_status ml_precision_parse(const char *name, ml_precision *p) {
    if (!strcmp(name, "fp32")) *p = ML_PRECISION_FP32;
    else if (!strcmp(name, "bf16")) *p = ML_PRECISION_BF16;
    else return ml_fail(ML_ERR_ARG, "unknown precision '%s' (fp32 | bf16)", name);
    return ML_OK;
}

const char *ml_precision_name(ml_precision p) { return p == ML_PRECISION_BF16 ? "bf16" : "fp32"; }

/* Keep bf16 copies of the weights exactly when the model's bf16 products may run on an engine that reads them. */
static ml_status bf16_copies(ml_model *m) {
    const int want = m->precision == ML_PRECISION_BF16 && ml_gemm_reads_bf16_copies(m->gemm_engine);
    if (want && (!m->w16 || m->w16_numel < m->param_arena.used)) {
        free(m->w16);
        m->w16_numel = 0;
        m->w16 = ml_aligned_calloc(m->param_arena.used * sizeof(uint16_t));
        if (!m->w16) return ml_fail(ML_ERR_NOMEM, "out of memory for the bf16 copies of the weights");
        m->w16_numel = m->param_arena.used;
    } else if (!want) {
        free(m->w16);
        m->w16 = NULL;
        m->w16_numel = 0;
    }
    ml_model_weights_changed(m);
    return ML_OK;
}

ml_status ml_model_set_precision(ml_model *m, ml_precision p) {
    ml_gemm_engine e;
    ml_attn_kernel ak;
    ML_TRY(ml_gemm_engine_resolve(m->gemm_request, p == ML_PRECISION_BF16, &e));
    ML_TRY(ml_attn_kernel_resolve(p == ML_PRECISION_BF16, &ak));
    m->precision = p;
    m->gemm_engine = e;
    m->attn_kernel = ak;
    ML_TRY(bf16_copies(m));
    ML_TRY(ml_model_sync_act16(m));
    return ml_model_int8_plan(m);
}

ml_status ml_model_set_gemm_engine(ml_model *m, ml_gemm_engine e) {
    ml_gemm_engine r;
    ML_TRY(ml_gemm_engine_resolve(e, m->precision == ML_PRECISION_BF16, &r));
    m->gemm_request = e;
    m->gemm_engine = r;
    ML_TRY(bf16_copies(m));
    ML_TRY(ml_model_sync_act16(m));
    return ml_model_int8_plan(m);
}

/* ---------------------------------------------------------------- activations */

static int wants_act16(const ml_model *m) {
    if (!m->w16) return 0; /* fp32, or no engine that reads bf16 operands */
    for (int i = 0; m->act_transforms && i < m->n_params; i++)
        if (m->act_transforms[i]) return 0; /* they transform fp32 inputs (what inference quantizes) */
    return 1;
}

ml_status ml_model_sync_act16(ml_model *m) {
    if (!m->acts || m->act16 == wants_act16(m)) return ML_OK;
    return ml_model_reserve(m, m->B, m->T, m->rope_len);
}

/* Arena offsets of one block's activations, planned before the single allocation. */
typedef struct {
    size_t resid_in, ln1, rstd1, q, k, v, q_rstd, k_rstd, att, lse, resid_mid, ln2, rstd2, gate, up;
} offs;

/* Floats that hold n bf16 values. */
static size_t bf16_floats(size_t n) { return (n + 1) / 2; }

/* Everything of a block but its input; the norms' outputs as bf16 with act16. */
static void reserve_block(ml_arena *a, offs *o, const ml_config *c, size_t N, int act16) {
    const size_t C = c->hidden_size, F = c->intermediate_size, qd = (size_t)c->num_heads * c->head_dim,
                 kvd = (size_t)c->num_kv_heads * c->head_dim;
    const size_t ln = act16 ? bf16_floats(N * C) : N * C;
    o->ln1 = ml_arena_reserve(a, ln);
    o->rstd1 = ml_arena_reserve(a, N);
    o->q = ml_arena_reserve(a, N * qd);
    o->k = ml_arena_reserve(a, N * kvd);
    o->v = ml_arena_reserve(a, N * kvd);
    if (c->use_qk_norm) {
        o->q_rstd = ml_arena_reserve(a, N * c->num_heads);
        o->k_rstd = ml_arena_reserve(a, N * c->num_kv_heads);
    }
    o->att = ml_arena_reserve(a, N * qd);
    o->lse = ml_arena_reserve(a, N * c->num_heads);
    o->resid_mid = ml_arena_reserve(a, N * C);
    o->ln2 = ml_arena_reserve(a, ln);
    o->rstd2 = ml_arena_reserve(a, N);
    o->gate = ml_arena_reserve(a, act16 ? bf16_floats(N * F) : N * F);
    o->up = ml_arena_reserve(a, act16 ? bf16_floats(N * F) : N * F);
}

ml_status ml_model_reserve(ml_model *m, int B, int T, int max_pos) {
    const ml_config *c = &m->cfg;
    if (B <= 0 || T <= 0) return ml_fail(ML_ERR_ARG, "batch %d x sequence %d: both must be positive", B, T);
    ml_arena_free(&m->act_arena);
    free(m->acts);
    const int A = ml_config_applied_layers(c);
    const size_t N = (size_t)B * T, C = c->hidden_size, F = c->intermediate_size,
                 qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim;
    const int act16 = m->act16 = wants_act16(m);
    m->acts = calloc((size_t)A, sizeof(ml_block_acts));
    if (!m->acts) return ml_fail(ML_ERR_NOMEM, "out of memory for activation table");
    ml_arena *a = &m->act_arena;
    /* plan offsets first, bind pointers after the single allocation */
    offs *o = calloc((size_t)A, sizeof(offs));
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory for activation table");
    /* Each block's input is always kept. The rest of a block's activations is kept per block, or, with
     * recomputation, one set shared by all blocks: backward re-runs each block's forward from its input. */
    for (int i = 0; i < A; i++) o[i].resid_in = ml_arena_reserve(a, N * C);
    if (!m->recompute)
        for (int i = 0; i < A; i++) reserve_block(a, &o[i], c, N, act16);
    size_t resid_final = ml_arena_reserve(a, N * C), ln_f = ml_arena_reserve(a, N * C), rstd_f = ml_arena_reserve(a, N);
    const size_t saved_end = a->used; /* everything above is kept from forward to backward; below is scratch */
    if (m->recompute) {
        reserve_block(a, &o[0], c, N, act16);
        for (int i = 1; i < A; i++) {
            size_t own = o[i].resid_in;
            o[i] = o[0];
            o[i].resid_in = own;
        }
    }
    size_t d_resid = ml_arena_reserve(a, N * C), d_ln = ml_arena_reserve(a, N * C), d_ln_f = ml_arena_reserve(a, N * C);
    size_t d_q = ml_arena_reserve(a, N * qd), d_k = ml_arena_reserve(a, N * kvd), d_v = ml_arena_reserve(a, N * kvd);
    size_t d_att = ml_arena_reserve(a, N * qd);
    size_t d_gate = ml_arena_reserve(a, N * F), d_up = ml_arena_reserve(a, N * F), ffn_h = ml_arena_reserve(a, N * F);
    /* LM-head chunk: about 16M floats of logits at most, at least 8 rows */
    int chunk = (int)((size_t)(1 << 24) / (size_t)c->vocab_size);
    if (chunk < 8) chunk = 8;
    if ((size_t)chunk > N) chunk = (int)N;
    m->head_chunk = chunk;
    /* logits chunk, plus two floats per row for per-row losses (CE uses one, distillation two; bf16 logits: twice
     * the rows, one loss each) */
    size_t head = ml_arena_reserve(a, (size_t)chunk * c->vocab_size + 2 * (size_t)chunk);
    const int threads = omp_get_max_threads();
    size_t attn_work = ml_arena_reserve(a, ml_attention_work_floats(B, T, c->num_heads, c->num_kv_heads, c->head_dim,
                                                                    threads));
    int rope_len = max_pos > T ? max_pos : T;
    size_t rope_cos = ml_arena_reserve(a, (size_t)rope_len * (c->head_dim / 2));
    size_t rope_sin = ml_arena_reserve(a, (size_t)rope_len * (c->head_dim / 2));
    ml_status s = ml_arena_commit(a, "activations");
    if (s != ML_OK) {
        free(o);
        return ml_fail_context(s, "batch %d x sequence %d", B, T);
    }
    float *base = a->base;
    for (int i = 0; i < A; i++) {
        ml_block_acts *b = &m->acts[i];
        b->resid_in = base + o[i].resid_in;
        b->ln1 = act16 ? NULL : base + o[i].ln1;
        b->ln1_16 = act16 ? (uint16_t *)(base + o[i].ln1) : NULL;
        b->rstd1 = base + o[i].rstd1;
        b->q = base + o[i].q;
        b->k = base + o[i].k;
        b->v = base + o[i].v;
        b->q_rstd = c->use_qk_norm ? base + o[i].q_rstd : NULL;
        b->k_rstd = c->use_qk_norm ? base + o[i].k_rstd : NULL;
        b->att = base + o[i].att;
        b->lse = base + o[i].lse;
        b->resid_mid = base + o[i].resid_mid;
        b->ln2 = act16 ? NULL : base + o[i].ln2;
        b->ln2_16 = act16 ? (uint16_t *)(base + o[i].ln2) : NULL;
        b->rstd2 = base + o[i].rstd2;
        b->gate = act16 ? NULL : base + o[i].gate;
        b->up = act16 ? NULL : base + o[i].up;
        b->gate16 = act16 ? (uint16_t *)(base + o[i].gate) : NULL;
        b->up16 = act16 ? (uint16_t *)(base + o[i].up) : NULL;
    }
    free(o);
    m->resid_final = base + resid_final;
    m->ln_f = base + ln_f;
    m->rstd_f = base + rstd_f;
    m->d_resid = base + d_resid;
    m->d_ln = base + d_ln;
    m->d_ln_f = base + d_ln_f;
    m->d_q = base + d_q;
    m->d_k = base + d_k;
    m->d_v = base + d_v;
    m->d_att = base + d_att;
    m->d_gate = base + d_gate;
    m->d_up = base + d_up;
    m->ffn_h = base + ffn_h;
    m->head_scratch = base + head;
    m->rope_cos = base + rope_cos;
    m->rope_sin = base + rope_sin;
    m->rope_len = rope_len;
    m->attn_work = base + attn_work;
    ml_attention_work_init(m->attn_work, threads);
    ml_rope_table(m->rope_cos, m->rope_sin, rope_len, c->head_dim, c->rope_theta);
    m->B = B;
    m->T = T;
    m->act_saved_floats = saved_end;
    /* activation transforms (model/linear.h): inputs of up to B*T rows (the head's chunks are fewer) */
    return ml_model_act_scratch_reserve(m, (size_t)B * T > (size_t)chunk ? (size_t)B * T : (size_t)chunk);
}

/* ---------------------------------------------------------------- forward */

static ml_status check_batch(const ml_model *m, const ml_batch *b) {
    if (!m->acts) return ml_fail(ML_ERR_ARG, "model activations not reserved");
    if (b->B > m->B || b->T != m->T)
        return ml_fail(ML_ERR_ARG, "batch %dx%d does not fit the reserved %dx%d", b->B, b->T, m->B, m->T);
    const int64_t N = (int64_t)b->B * b->T;
    const int V = m->cfg.vocab_size;
    for (int64_t i = 0; i < N; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= V)
            return ml_fail(ML_ERR_RANGE, "token id %d at position %lld is outside the vocabulary [0, %d)",
                           b->tokens[i], (long long)i, V);
        if (b->targets && b->targets[i] >= V)
            return ml_fail(ML_ERR_RANGE, "target id %d at position %lld is outside the vocabulary [0, %d)",
                           b->targets[i], (long long)i, V);
        if (b->pos && (b->pos[i] < 0 || b->pos[i] >= m->rope_len))
            return ml_fail(ML_ERR_RANGE, "position %d at index %lld is outside [0, %d)", b->pos[i], (long long)i,
                           m->rope_len);
    }
    return ML_OK;
}

static ml_block_io batch_io(const ml_model *m, const ml_batch *b) {
    ml_block_io io = {b->B, b->T, b->pos, b->doc, m->rope_cos, m->rope_sin, m->attn_work, NULL, 0};
    return io;
}

static void block_forward(ml_model *m, const ml_batch *b, int a, int to_output) {
    const int A = ml_config_applied_layers(&m->cfg);
    const ml_block_io io = batch_io(m, b);
    ml_block_forward(m, a, &io, &m->acts[a], a + 1 < A ? m->acts[a + 1].resid_in : m->resid_final, m->ffn_h, to_output);
}

ml_status ml_model_forward(ml_model *m, const ml_batch *b) {
    ML_TRY(check_batch(m, b));
    ML_TRY(ml_model_refresh_weights(m));
    const ml_config *c = &m->cfg;
    const int N = b->B * b->T, C = c->hidden_size, A = ml_config_applied_layers(c);
    ML_PROFILE(ML_PROF_EMBED_FWD) ml_embed_forward(m, m->acts[0].resid_in, b->tokens, N);
    for (int a = 0; a < A; a++) block_forward(m, b, a, 1);
    ML_PROFILE(ML_PROF_RMSNORM_FWD)
    ml_rmsnorm_forward(m->ln_f, m->rstd_f, m->resid_final, m->w.final_norm, N, C, c->rms_norm_eps);
    m->last_batch = b;
    return ML_OK;
}

/* ---------------------------------------------------------------- fused LM head + loss */

/* The head's chunks. fn NULL: cross-entropy with the logits in bf16 (head_in_bf16): written as bf16 by their product,
 * the gradient rounded to bf16 where it is computed, and both backward products read that one rounding (what
 * PyTorch's bf16 autocast keeps too); half the bytes of the largest activation of the step. */
static ml_status head_chunks(ml_model *m, const ml_batch *b, ml_head_loss_fn fn, void *ctx, float grad_scale,
                             double *loss_sum, int64_t *count) {
    if (!b->targets) return ml_fail(ML_ERR_ARG, "loss needs targets");
    const ml_config *c = &m->cfg;
    const int N = b->B * b->T, C = c->hidden_size, V = c->vocab_size;
    /* bf16 logits take half the bytes: twice the rows per chunk in the same scratch (fewer, larger products) */
    const int chunk = fn ? m->head_chunk : (2 * m->head_chunk < N ? 2 * m->head_chunk : N);
    float *logits = m->head_scratch, *losses = m->head_scratch + (size_t)m->head_chunk * V;
    uint16_t *logits16 = (uint16_t *)m->head_scratch;
    double total = 0.0;
    int64_t n_scored = 0;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int rows = N - n0 < chunk ? N - n0 : chunk;
        const float *h = m->ln_f + (int64_t)n0 * C;
        if (fn) {
            ML_PROFILE(ML_PROF_HEAD_FWD) ml_linear_forward(m, ML_P_LM_HEAD, -1, logits, h, rows);
            ML_PROFILE(ML_PROF_HEAD_LOSS) fn(ctx, logits, losses, b->targets + n0, n0, rows, V, grad_scale);
        } else {
            ML_PROFILE(ML_PROF_HEAD_FWD)
            ml_linear_forward_to_bf16(m, ML_P_LM_HEAD, -1, logits16, ml_gemm_f32(h, C), rows);
            ML_PROFILE(ML_PROF_HEAD_LOSS) ml_softmax_xent_rows_b16(logits16, losses, b->targets + n0, rows, V, grad_scale);
        }
        for (int r = 0; r < rows; r++)
            if (b->targets[n0 + r] >= 0) {
                total += losses[r];
                n_scored++;
            }
        if (grad_scale != 0.0f) ML_PROFILE(ML_PROF_HEAD_BWD) {
                const ml_gemm_operand dlogits = fn ? ml_gemm_f32(logits, V) : (ml_gemm_operand){NULL, logits16, V};
                ml_linear_backward_in(m, ML_P_LM_HEAD, -1, m->d_ln_f + (int64_t)n0 * C, dlogits, ml_gemm_f32(h, C),
                                      rows, 0);
            }
    }
    *loss_sum = total;
    *count = n_scored;
    return ML_OK;
}

ml_status ml_model_head_custom(ml_model *m, const ml_batch *b, ml_head_loss_fn fn, void *ctx, float grad_scale,
                               double *loss_sum, int64_t *count) {
    if (!fn) return ml_fail(ML_ERR_ARG, "head loss: no loss function given");
    return head_chunks(m, b, fn, ctx, grad_scale, loss_sum, count);
}

static void cross_entropy_rows(void *ctx, float *logits, float *losses, const int32_t *targets, int row0, int rows,
                               int V, float grad_scale) {
    (void)ctx, (void)row0;
    ml_softmax_xent_rows(logits, losses, targets, rows, V, grad_scale);
}

/* Cross-entropy takes bf16 logits where the model keeps bf16 activations (its products read bf16) and no observer
 * needs the head's fp32 gradient. */
static int head_in_bf16(const ml_model *m) { return m->act16 && !m->observer; }

ml_status ml_model_head_loss(ml_model *m, const ml_batch *b, float grad_scale, double *loss_sum, int64_t *count) {
    return head_chunks(m, b, head_in_bf16(m) ? NULL : cross_entropy_rows, NULL, grad_scale, loss_sum, count);
}

ml_status ml_model_logits(ml_model *m, const ml_batch *b, float *logits) {
    const ml_config *c = &m->cfg;
    (void)c;
    ml_linear_forward(m, ML_P_LM_HEAD, -1, logits, m->ln_f, b->B * b->T);
    return ML_OK;
}

/* ---------------------------------------------------------------- backward */

ml_status ml_model_backward(ml_model *m, const ml_batch *b) {
    const ml_config *c = &m->cfg;
    const int B = b->B, T = b->T, N = B * T, C = c->hidden_size, F = c->intermediate_size, H = c->num_heads,
              KV = c->num_kv_heads, hd = c->head_dim, A = ml_config_applied_layers(c);
    const int half_split = c->rope_pairing == ML_ROPE_HALF_SPLIT;
    float *dres = m->d_resid;
    memset(dres, 0, sizeof(float) * (size_t)N * C);
    ML_PROFILE(ML_PROF_RMSNORM_BWD)
    ml_rmsnorm_backward(dres, m->g.final_norm, m->d_ln_f, m->resid_final, m->w.final_norm, m->rstd_f, N, C);
    settle_grads(m, -1); /* an LM head the head did not run; a tied embedding the scatter below adds to */
    if (m->grad_ready) m->grad_ready(m->grad_ready_user, c->num_layers);
    for (int a = A - 1; a >= 0; a--) {
        const int l = a / c->layer_repeat;
        if (m->recompute) block_forward(m, b, a, 0); /* refill the shared block buffers from resid_in */
        const ml_block_acts *x = &m->acts[a];
        /* FFN: out = resid_mid + down(silu(gate) * up) */
        ML_PROFILE(ML_PROF_SWIGLU_BWD) { /* recompute h rather than store it */
            if (x->gate16)
                ml_swiglu_forward_b16((uint16_t *)m->ffn_h, x->gate16, x->up16, (int64_t)N * F);
            else
                ml_swiglu_forward(m->ffn_h, x->gate, x->up, (int64_t)N * F);
        }
        /* dh -> d_up, then dup -> ffn_h. With bf16 activations dh and both gradients SwiGLU writes are the bf16 bits
         * their products write and read (as PyTorch's bf16 autocast keeps them) */
        ML_PROFILE(ML_PROF_DOWN_BWD) {
            if (x->gate16)
                ml_linear_backward_to_bf16(m, ML_P_WDOWN, l, (uint16_t *)m->d_up, ml_gemm_f32(dres, C),
                                           (ml_gemm_operand){NULL, (const uint16_t *)m->ffn_h, F}, N);
            else
                ml_linear_backward(m, ML_P_WDOWN, l, m->d_up, dres, m->ffn_h, N, 0);
        }
        ml_gemm_operand dgate = ml_gemm_f32(m->d_gate, F), dup = ml_gemm_f32(m->ffn_h, F);
        ML_PROFILE(ML_PROF_SWIGLU_BWD) {
            if (x->gate16) {
                dgate = (ml_gemm_operand){NULL, (uint16_t *)m->d_gate, F};
                dup = (ml_gemm_operand){NULL, (uint16_t *)m->ffn_h, F};
                ml_swiglu_backward_b16((uint16_t *)m->d_gate, (uint16_t *)m->ffn_h, (const uint16_t *)m->d_up,
                                       x->gate16, x->up16, (int64_t)N * F);
            } else {
                ml_swiglu_backward(m->d_gate, m->ffn_h, m->d_up, x->gate, x->up, (int64_t)N * F);
            }
        }
        ML_PROFILE(ML_PROF_GATE_UP_BWD) {
            const ml_gemm_operand ln2 = {x->ln2, x->ln2_16, C};
            ml_linear_backward_in(m, ML_P_WGATE, l, m->d_ln, dgate, ln2, N, 0);
            ml_linear_backward_in(m, ML_P_WUP, l, m->d_ln, dup, ln2, N, 1);
        }
        ML_PROFILE(ML_PROF_RMSNORM_BWD)
        ml_rmsnorm_backward(dres, m->g.layer[l].mlp_norm, m->d_ln, x->resid_mid, m->w.layer[l].mlp_norm, x->rstd2, N, C);
        /* attention: resid_mid = resid_in + o_proj(att) */
        ML_PROFILE(ML_PROF_O_BWD)
        ml_linear_backward(m, ML_P_WO, l, m->d_att, dres, x->att, N, 0);
        ml_attn_dims dims = ml_attn_dims_self(B, T, H, KV, hd, ml_layer_window(c, l));
        dims.kernel = m->attn_kernel;
        ML_PROFILE(ML_PROF_ATTN_BWD)
        ml_attention_backward(m->d_q, m->d_k, m->d_v, m->d_att, x->att, x->lse, x->q, x->k, x->v, b->doc, &dims,
                              m->attn_work);
        if (c->layer_rope[l]) {
            if (c->use_qk_norm) ML_PROFILE(ML_PROF_QKNORM_BWD) {
                    ml_headnorm_backward(m->d_q, x->q, x->q_rstd, N, H, hd);
                    ml_headnorm_backward(m->d_k, x->k, x->k_rstd, N, KV, hd);
                }
            ML_PROFILE(ML_PROF_ROPE_BWD) {
                ml_rope_apply(m->d_q, b->pos, m->rope_cos, m->rope_sin, N, T, H, hd, half_split, 1);
                ml_rope_apply(m->d_k, b->pos, m->rope_cos, m->rope_sin, N, T, KV, hd, half_split, 1);
            }
        }
        ML_PROFILE(ML_PROF_QKV_BWD) {
            const ml_gemm_operand ln1 = {x->ln1, x->ln1_16, C};
            ml_linear_backward_in(m, ML_P_WQ, l, m->d_ln, ml_gemm_f32(m->d_q, H * hd), ln1, N, 0);
            ml_linear_backward_in(m, ML_P_WK, l, m->d_ln, ml_gemm_f32(m->d_k, KV * hd), ln1, N, 1);
            ml_linear_backward_in(m, ML_P_WV, l, m->d_ln, ml_gemm_f32(m->d_v, KV * hd), ln1, N, 1);
        }
        ML_PROFILE(ML_PROF_RMSNORM_BWD)
        ml_rmsnorm_backward(dres, m->g.layer[l].attn_norm, m->d_ln, x->resid_in, m->w.layer[l].attn_norm, x->rstd1, N, C);
        if (a % c->layer_repeat == 0) {
            settle_grads(m, l);
            if (m->grad_ready) m->grad_ready(m->grad_ready_user, l);
        }
    }
    ML_PROFILE(ML_PROF_EMBED_BWD) ml_embed_backward(m, dres, b->tokens, N);
    if (m->grad_ready) m->grad_ready(m->grad_ready_user, -1);
    return ML_OK;
}
