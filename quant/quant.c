/* Recipes and their installation as weight / activation transforms (quant/quant.h). */
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "formats/gguf.h"
#include "model/linear.h"

/* ---------------------------------------------------------------- recipes */

static ml_status parse_weight(ml_qweight *w, const char *s, int embedding) {
    memset(w, 0, sizeof *w);
    const char *choices = embedding ? "none | q8_0 | q4_0 | int8 | int4-g32"
                                    : "q4_0 | q8_0 | int4-g32 | int4-g64 | int4-g128 | int4-g256 | int4-channel-lsq";
    if (!s || !strcmp(s, "none")) {
        if (!embedding && s) return ml_fail(ML_ERR_ARG, "unknown --scheme 'none' (%s)", choices);
        return ML_OK;
    }
    if (!strcmp(s, "q4_0")) w->kind = ML_QW_Q4_0, w->group = ML_QK;
    else if (!strcmp(s, "q8_0")) w->kind = ML_QW_Q8_0, w->group = ML_QK;
    else if (!strcmp(s, "int4-channel-lsq") && !embedding) w->kind = ML_QW_INT4_LSQ;
    else if (!strcmp(s, "int8") && embedding) w->kind = ML_QW_INT8_CHANNEL;
    else if (!strncmp(s, "int4-g", 6)) {
        char *end;
        long g = strtol(s + 6, &end, 10);
        if (*end || (g != 32 && g != 64 && g != 128 && g != 256) || (embedding && g != 32))
            return ml_fail(ML_ERR_ARG, "unknown %s '%s' (%s)", embedding ? "--embedding" : "--scheme", s, choices);
        w->kind = ML_QW_INT4_GROUP, w->group = (int)g;
    } else {
        return ml_fail(ML_ERR_ARG, "unknown %s '%s' (%s)", embedding ? "--embedding" : "--scheme", s, choices);
    }
    return ML_OK;
}

ml_status ml_quant_recipe_parse(ml_quant_recipe *r, const char *scheme, const char *embedding, const char *act) {
    memset(r, 0, sizeof *r);
    if (!scheme) return ml_fail(ML_ERR_ARG, "missing --scheme");
    ML_TRY(parse_weight(&r->linear, scheme, 0));
    ML_TRY(parse_weight(&r->embedding, embedding, 1));
    if (!act || !strcmp(act, "none")) r->act = ML_QA_NONE;
    else if (!strcmp(act, "q8_0")) r->act = ML_QA_Q8_0;
    else if (!strcmp(act, "int8-token")) r->act = ML_QA_INT8_TOKEN;
    else return ml_fail(ML_ERR_ARG, "unknown --act '%s' (none | q8_0 | int8-token)", act);
    return ML_OK;
}

const char *ml_qweight_name(const ml_qweight *w, char *buf, size_t n) {
    switch (w->kind) {
    case ML_QW_NONE: snprintf(buf, n, "none"); break;
    case ML_QW_Q4_0: snprintf(buf, n, "q4_0"); break;
    case ML_QW_Q8_0: snprintf(buf, n, "q8_0"); break;
    case ML_QW_INT4_GROUP: snprintf(buf, n, "int4-g%d", w->group); break;
    case ML_QW_INT4_LSQ: snprintf(buf, n, "int4-channel-lsq"); break;
    case ML_QW_INT8_CHANNEL: snprintf(buf, n, "int8"); break;
    }
    return buf;
}

const char *ml_qact_name(ml_qact a) { return a == ML_QA_Q8_0 ? "q8_0" : a == ML_QA_INT8_TOKEN ? "int8-token" : "none"; }

void ml_quant_recipe_format(const ml_quant_recipe *r, char *buf, size_t n) {
    char a[32], b[32];
    snprintf(buf, n, "scheme=%s embedding=%s act=%s", ml_qweight_name(&r->linear, a, sizeof a),
             ml_qweight_name(&r->embedding, b, sizeof b), ml_qact_name(r->act));
}

ml_status ml_quant_recipe_from_string(ml_quant_recipe *r, const char *s) {
    char scheme[32] = "", emb[32] = "none", act[32] = "none";
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *eq = strchr(p, '='), *sp = strchr(p, ' ');
        if (!eq || (sp && sp < eq)) return ml_fail(ML_ERR_FORMAT, "quantization recipe '%s' is not key=value pairs", s);
        size_t kl = (size_t)(eq - p), vl = sp ? (size_t)(sp - eq - 1) : strlen(eq + 1);
        char *dst = !strncmp(p, "scheme", kl) && kl == 6 ? scheme
                    : !strncmp(p, "embedding", kl) && kl == 9 ? emb
                    : !strncmp(p, "act", kl) && kl == 3 ? act : NULL;
        if (!dst || vl >= 32) return ml_fail(ML_ERR_FORMAT, "quantization recipe '%s': unknown or long field", s);
        memcpy(dst, eq + 1, vl);
        dst[vl] = 0;
        p = eq + 1 + vl;
    }
    if (!scheme[0]) return ml_fail(ML_ERR_FORMAT, "quantization recipe '%s' names no scheme", s);
    return ml_quant_recipe_parse(r, scheme, emb, act);
}

int ml_quant_recipe_equal(const ml_quant_recipe *a, const ml_quant_recipe *b) {
    return a->linear.kind == b->linear.kind && a->linear.group == b->linear.group &&
           a->embedding.kind == b->embedding.kind && a->embedding.group == b->embedding.group && a->act == b->act;
}

/* ---------------------------------------------------------------- transforms */

typedef struct {
    ml_model *m;
    ml_quant_recipe r;
    ml_weight_transform wt_linear, wt_embed;
    ml_act_transform at;
    int *scale_of; /* [n_params at install]: index of the learned-scale parameter, -1 */
    int n_scale_of;
    float *tbuf;   /* per-thread row scratch: tcols floats + tcols bytes each */
    size_t tcols;
    int nthreads;
} qstate;

static void qstate_free(void *p) {
    qstate *q = p;
    if (!q) return;
    free(q->scale_of);
    free(q->tbuf);
    free(q);
}

static float *thread_row(const qstate *q, uint8_t **keep) {
    int t = omp_get_thread_num();
    if (t >= q->nthreads) t = q->nthreads - 1; /* not expected: the pool does not grow after install */
    float *b = q->tbuf + (size_t)t * q->tcols * 2;
    *keep = (uint8_t *)(b + q->tcols);
    return b;
}

static const ml_qweight *grid_of(const qstate *q, const ml_param *p) {
    return p->kind == ML_P_EMBED ? &q->r.embedding : &q->r.linear;
}

static float lsq_scale(const qstate *q, const ml_param *p, int64_t row) {
    const int i = (int)(p - q->m->params);
    const ml_param *sp = &q->m->params[q->scale_of[i]];
    float s = ml_param_data(q->m, sp)[row];
    return s > 1e-9f ? s : 1e-9f; /* a scale trained to <= 0 would flip or blow up the grid */
}

static ml_status w_forward(void *ctx, const ml_param *p, float *used, const float *w) {
    const qstate *q = ctx;
    const ml_qweight *g = grid_of(q, p);
    const int64_t rows = p->shape[0], cols = p->shape[1];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        float *y = used + r * cols;
        switch (g->kind) {
        case ML_QW_Q4_0: ml_fq_q4_0(y, NULL, x, cols); break;
        case ML_QW_Q8_0: ml_fq_q8_0(y, x, cols); break;
        case ML_QW_INT4_GROUP: ml_fq_sym(y, NULL, x, cols, g->group, 4); break;
        case ML_QW_INT8_CHANNEL: ml_fq_sym(y, NULL, x, cols, (int)cols, 8); break;
        case ML_QW_INT4_LSQ: ml_fq_scaled(y, NULL, x, cols, lsq_scale(q, p, r), 4); break;
        case ML_QW_NONE: memcpy(y, x, (size_t)cols * sizeof(float)); break;
        }
    }
    return ML_OK;
}

static void w_backward(void *ctx, const ml_param *p, float *grad, const float *w) {
    const qstate *q = ctx;
    const ml_qweight *g = grid_of(q, p);
    const int64_t rows = p->shape[0], cols = p->shape[1];
    if (g->kind == ML_QW_Q8_0 || g->kind == ML_QW_NONE) return; /* never clips: straight through */
    float *sgrad = NULL;
    if (g->kind == ML_QW_INT4_LSQ) sgrad = ml_param_grad(q->m, &q->m->params[q->scale_of[p - q->m->params]]);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        float *gr = grad + r * cols;
        if (g->kind == ML_QW_INT4_LSQ) {
            const float s = lsq_scale(q, p, r);
            sgrad[r] += (float)ml_fq_scaled_grad(gr, gr, x, cols, s, 4);
            continue;
        }
        if (g->kind == ML_QW_Q4_0) ml_fq_q4_0_mask(gr, x, cols);
        else ml_fq_sym_mask(gr, x, cols, g->kind == ML_QW_INT4_GROUP ? g->group : (int)cols,
                            g->kind == ML_QW_INT4_GROUP ? 4 : 8);
    }
}

static void a_forward(void *ctx, const ml_param *p, float *xq, const float *x, int N, int in) {
    const qstate *q = ctx;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        if (q->r.act == ML_QA_Q8_0) ml_fq_act_q8_0(xq + (size_t)r * in, x + (size_t)r * in, in);
        else ml_fq_act_int8_token(xq + (size_t)r * in, NULL, x + (size_t)r * in, in);
    }
}

static void a_backward(void *ctx, const ml_param *p, float *dx, const float *x, int N, int in) {
    const qstate *q = ctx;
    if (q->r.act != ML_QA_INT8_TOKEN) return; /* Q8_0 of activations never clips */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        uint8_t *keep;
        float *y = thread_row(q, &keep);
        ml_fq_act_int8_token(y, keep, x + (size_t)r * in, in);
        for (int j = 0; j < in; j++)
            if (!keep[j]) dx[(size_t)r * in + j] = 0.0f;
    }
}

/* ---- integer forms (model/linear.h): the same grids as codes and scales, for the int8 engine */

static int w_int8_group(void *ctx, const ml_param *p) {
    const ml_qweight *g = grid_of(ctx, p);
    const int cols = (int)p->shape[1];
    switch (g->kind) {
    case ML_QW_Q4_0:
    case ML_QW_Q8_0:
    case ML_QW_INT4_GROUP: return g->group;
    case ML_QW_INT4_LSQ:
    case ML_QW_INT8_CHANNEL: return cols;
    default: return 0;
    }
}

static void w_int8_codes(void *ctx, const ml_param *p, int8_t *codes, float *scales, const float *w, int64_t r0,
                         int64_t r1) {
    const qstate *q = ctx;
    const ml_qweight *g = grid_of(q, p);
    const int64_t cols = p->shape[1];
    const int group = w_int8_group(ctx, p), per_row = (int)(cols / group);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = w + r * cols;
        int8_t *c = codes + (r - r0) * cols;
        float *s = scales + (r - r0) * per_row;
        switch (g->kind) {
        case ML_QW_Q4_0: ml_q_q4_0(c, s, x, cols); break;
        case ML_QW_Q8_0: ml_q_q8_0(c, s, x, cols); break;
        case ML_QW_INT4_GROUP: ml_q_sym(c, s, x, cols, g->group, 4); break;
        case ML_QW_INT8_CHANNEL: ml_q_sym(c, s, x, cols, (int)cols, 8); break;
        case ML_QW_INT4_LSQ: *s = lsq_scale(q, p, r), ml_q_scaled(c, x, cols, *s, 4); break;
        case ML_QW_NONE: break;
        }
    }
}

static int a_int8_group(void *ctx, const ml_param *p, int in) {
    const qstate *q = ctx;
    return q->r.act == ML_QA_Q8_0 ? ML_QK : q->r.act == ML_QA_INT8_TOKEN ? in : 0;
}

static void a_int8_codes(void *ctx, const ml_param *p, uint8_t *u, float *scales, int32_t *offset, const float *x, int N,
                         int in) {
    const qstate *q = ctx;
    const int per_row = q->r.act == ML_QA_Q8_0 ? in / ML_QK : 1;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        if (q->r.act == ML_QA_Q8_0) {
            ml_q_act_q8_0(u + (size_t)r * in, scales + (size_t)r * per_row, x + (size_t)r * in, in);
            offset[r] = 128;
        } else {
            ml_q_act_int8_token(u + (size_t)r * in, scales + r, offset + r, x + (size_t)r * in, in);
        }
    }
}

/* "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj.weight_fake_quantizer.scale" */
static void scale_name(char *buf, size_t n, const char *param) {
    snprintf(buf, n, "%s_fake_quantizer.scale", param);
}

int ml_quant_num_scales(const ml_model *m) {
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const char *nm = m->params[i].name;
        size_t l = strlen(nm);
        const size_t sl = strlen("_fake_quantizer.scale");
        k += m->params[i].kind == ML_P_AUX && l > sl && !strcmp(nm + l - sl, "_fake_quantizer.scale");
    }
    return k;
}

static int block_of(const ml_qweight *g, int64_t cols) {
    switch (g->kind) {
    case ML_QW_Q4_0:
    case ML_QW_Q8_0:
    case ML_QW_INT4_GROUP: return g->group;
    default: return 1;
    }
}

ml_status ml_quant_install(ml_model *m, const ml_quant_recipe *r) {
    char text[128], a[32];
    ml_quant_recipe_format(r, text, sizeof text);
    if (r->linear.kind == ML_QW_NONE) return ml_fail(ML_ERR_ARG, "quantization recipe without a scheme");
    /* check every matrix first: nothing changes on error */
    const int n0 = m->n_params;
    size_t maxcols = 0;
    for (int i = 0; i < n0; i++) {
        const ml_param *p = &m->params[i];
        if (p->ndim != 2 || p->kind == ML_P_AUX) continue;
        const ml_qweight *g = p->kind == ML_P_EMBED ? &r->embedding : &r->linear;
        if (g->kind == ML_QW_NONE) continue;
        const int64_t cols = p->shape[1];
        if ((size_t)cols > maxcols) maxcols = (size_t)cols;
        const int blk = block_of(g, cols);
        if (cols % blk)
            return ml_fail(ML_ERR_ARG, "%s: %s of %d do not divide the rows of %s (%lld columns)",
                           ml_qweight_name(g, a, sizeof a), g->kind == ML_QW_INT4_GROUP ? "groups" : "GGUF blocks", blk,
                           p->name, (long long)cols);
        if (r->act == ML_QA_Q8_0 && cols % ML_QK)
            return ml_fail(ML_ERR_ARG, "--act q8_0: blocks of 32 do not divide the inputs of %s (%lld)", p->name,
                           (long long)cols);
    }
    qstate *q = calloc(1, sizeof *q);
    if (!q) return ml_fail(ML_ERR_NOMEM, "out of memory");
    q->m = m;
    q->r = *r;
    q->nthreads = omp_get_max_threads();
    q->tcols = maxcols ? maxcols : 1;
    size_t hid = (size_t)m->cfg.intermediate_size + (size_t)m->cfg.hidden_size + (size_t)m->cfg.num_heads * m->cfg.head_dim;
    if (hid > q->tcols) q->tcols = hid; /* activation rows too */
    q->tbuf = malloc((size_t)q->nthreads * q->tcols * 2 * sizeof(float));
    q->scale_of = malloc(sizeof(int) * (size_t)n0);
    if (!q->tbuf || !q->scale_of) {
        qstate_free(q);
        return ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    q->n_scale_of = n0;
    ml_status s = ML_OK;
    /* learned scales: loaded with the checkpoint, or added now (in name order, the order a checkpoint's are
     * registered in when loaded, so a resumed run has the same parameter layout) and initialised from the weights */
    int *todo = malloc(sizeof(int) * (size_t)n0), n_todo = 0;
    if (!todo) s = ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n0 && s == ML_OK; i++) {
        q->scale_of[i] = -1;
        const ml_param *p = &m->params[i];
        if (p->ndim != 2 || p->kind == ML_P_AUX || p->kind == ML_P_EMBED || r->linear.kind != ML_QW_INT4_LSQ) continue;
        char nm[96];
        scale_name(nm, sizeof nm, p->name);
        const ml_param *sp = ml_model_find_param(m, nm);
        if (!sp) {
            todo[n_todo++] = i;
            continue;
        }
        if (sp->ndim != 1 || sp->shape[0] != p->shape[0])
            s = ml_fail(ML_ERR_FORMAT, "%s has %lld values for %lld rows", nm, (long long)sp->shape[0],
                        (long long)p->shape[0]);
        q->scale_of[i] = (int)(sp - m->params);
    }
    for (int a1 = 1; a1 < n_todo; a1++) /* insertion sort by name (a parameter's scale sorts as the parameter) */
        for (int b1 = a1; b1 > 0 && strcmp(m->params[todo[b1 - 1]].name, m->params[todo[b1]].name) > 0; b1--) {
            int t = todo[b1];
            todo[b1] = todo[b1 - 1];
            todo[b1 - 1] = t;
        }
    for (int k = 0; k < n_todo && s == ML_OK; k++) {
        const int i = todo[k];
        char nm[96];
        scale_name(nm, sizeof nm, m->params[i].name);
        int idx;
        int64_t shape[1] = {m->params[i].shape[0]};
        s = ml_model_add_aux_param(m, nm, 1, shape, 0, &idx);
        if (s != ML_OK) break;
        q->scale_of[i] = idx;
        const ml_param *p = &m->params[i]; /* the table moved */
        float *sc = ml_param_data(m, &m->params[idx]);
        const float *w = ml_param_data(m, p);
        for (int64_t row = 0; row < p->shape[0]; row++) {
            float amax = 0.0f;
            for (int64_t j = 0; j < p->shape[1]; j++) amax = fmaxf(amax, fabsf(w[row * p->shape[1] + j]));
            float v = amax / 7.5f;
            if (v < FLT_MIN) v = FLT_MIN;
            sc[row] = v < 1e-9f ? 1e-9f : v; /* torchao: clamp(eps) at choice, clamp(1e-9) for range learning */
        }
    }
    free(todo);
    if (s != ML_OK) {
        qstate_free(q);
        return s;
    }
    q->wt_linear = (ml_weight_transform){"fake-quant", w_forward, w_backward, q, w_int8_group, w_int8_codes};
    q->wt_embed = q->wt_linear;
    q->at = (ml_act_transform){ml_qact_name(r->act), a_forward, a_backward, q, a_int8_group, a_int8_codes};
    for (int i = 0; i < n0 && s == ML_OK; i++) {
        const ml_param *p = &m->params[i];
        if (p->ndim != 2 || p->kind == ML_P_AUX) continue;
        const ml_qweight *g = p->kind == ML_P_EMBED ? &r->embedding : &r->linear;
        if (g->kind == ML_QW_NONE) continue;
        s = ml_model_set_transform(m, p, p->kind == ML_P_EMBED ? &q->wt_embed : &q->wt_linear);
        if (s == ML_OK && r->act != ML_QA_NONE) s = ml_model_set_act_transform(m, p, &q->at);
    }
    ml_model_set_transform_owner(m, q, qstate_free);
    if (s != ML_OK) return s;
    snprintf(m->quant, sizeof m->quant, "%s", text);
    return ML_OK;
}

ml_status ml_quant_install_stored(ml_model *m) {
    if (!m->quant[0]) return ML_OK;
    ml_quant_recipe r;
    ML_TRY(ml_quant_recipe_from_string(&r, m->quant));
    return ml_quant_install(m, &r);
}

ml_status ml_quant_prepare(ml_model *m, const char *scheme, const char *embedding, const char *act, const char *where) {
    if (!scheme && (embedding || act) && !m->quant[0]) return ml_fail(ML_ERR_ARG, "--embedding and --act need --scheme");
    ml_quant_recipe want;
    if (scheme) ML_TRY(ml_quant_recipe_parse(&want, scheme, embedding, act));
    if (m->quant[0]) {
        ml_quant_recipe have;
        ML_TRY(ml_quant_recipe_from_string(&have, m->quant));
        if (scheme && have.act != want.act) { /* same grids, another activation rounding: allowed */
            have.act = want.act;
            if (ml_quant_recipe_equal(&have, &want)) return ml_quant_install(m, &want);
        }
        if (scheme && !ml_quant_recipe_equal(&have, &want)) {
            char w[128];
            ml_quant_recipe_format(&want, w, sizeof w);
            return ml_fail(ML_ERR_ARG, "%s is already quantized with %s, not %s", where, m->quant, w);
        }
        return ml_quant_install(m, &have);
    }
    return scheme ? ml_quant_install(m, &want) : ML_OK;
}
