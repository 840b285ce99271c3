#include "mix/influence.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops/ops.h"

/* ---------------------------------------------------------------- selection */

static int is_matrix(const ml_param *p) { return p->ndim == 2; }

ml_status ml_influence_select(const ml_model *m, const char *spec, unsigned char *sel, char *desc, size_t desc_n) {
    memset(sel, 0, (size_t)m->n_params);
    if (!spec || !*spec) return ml_fail(ML_ERR_ARG, "--tensors: empty selection");
    const int L = m->cfg.num_layers;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int lo = -2, hi = -2, found = 0;
        if (!strcmp(tok, "all")) {
            lo = -1, hi = L - 1;
            for (int i = 0; i < m->n_params; i++) sel[i] |= is_matrix(&m->params[i]);
            continue;
        } else if (!strcmp(tok, "embed") || !strcmp(tok, "head")) {
            ml_param_kind want = !strcmp(tok, "head") && !m->cfg.tie_word_embeddings ? ML_P_LM_HEAD : ML_P_EMBED;
            for (int i = 0; i < m->n_params; i++)
                if (m->params[i].kind == want) sel[i] = 1, found = 1;
        } else if (!strncmp(tok, "last:", 5) || !strncmp(tok, "block:", 6)) {
            char *end;
            long k = strtol(strchr(tok, ':') + 1, &end, 10);
            int last = tok[0] == 'l';
            if (*end || k < (last ? 1 : 0) || k > (last ? L : L - 1))
                return ml_fail(ML_ERR_ARG, "--tensors: '%s' is not a block range of this %d-block model", tok, L);
            lo = last ? L - (int)k : (int)k;
            hi = last ? L - 1 : (int)k;
            for (int i = 0; i < m->n_params; i++)
                if (is_matrix(&m->params[i]) && m->params[i].layer >= lo && m->params[i].layer <= hi) sel[i] = 1, found = 1;
        } else {
            for (int i = 0; i < m->n_params; i++)
                if (!strcmp(m->params[i].name, tok)) {
                    if (!is_matrix(&m->params[i]))
                        return ml_fail(ML_ERR_ARG, "--tensors: %s is a norm weight; only matrices are scored", tok);
                    sel[i] = 1, found = 1;
                }
            if (!found)
                return ml_fail(ML_ERR_ARG,
                               "--tensors: '%s' is neither embed, head, last:K, block:I, all nor a parameter name", tok);
        }
        (void)lo, (void)hi;
    }
    if (desc && desc_n) {
        size_t k = 0, floats = 0;
        int n = 0;
        desc[0] = 0;
        for (int i = 0; i < m->n_params; i++)
            if (sel[i]) n++, floats += m->params[i].numel;
        k = (size_t)snprintf(desc, desc_n, "%d matrices, %zu weights (%.1f%% of the model)", n, floats,
                             100.0 * (double)floats / (double)m->num_floats);
        (void)k;
    }
    return ML_OK;
}

/* The parameter a backward product belongs to (the tied head is the embedding); -1 if none. */
static int param_index(const ml_model *m, ml_param_kind kind, int layer) {
    if (kind == ML_P_LM_HEAD && m->cfg.tie_word_embeddings) kind = ML_P_EMBED;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].kind == kind && (kind == ML_P_EMBED || kind == ML_P_LM_HEAD || m->params[i].layer == layer))
            return i;
    return -1;
}

double ml_influence_dot(const ml_model *m, const unsigned char *sel, const float *a, const float *b) {
    double s = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (!sel[i]) continue;
        const ml_param *p = &m->params[i];
        double t = 0;
#pragma omp parallel for reduction(+ : t) schedule(static)
        for (int64_t j = 0; j < (int64_t)p->numel; j++) t += (double)a[p->offset + j] * b[p->offset + j];
        s += t;
    }
    return s;
}

/* ---------------------------------------------------------------- the observer */

enum { OBS_ROWS = 256 }; /* tokens per extra product: bounds the scratch */

typedef struct {
    const unsigned char *sel;
    const float *const *gbar;
    int n_targets, T;
    double *scores; /* [B * n_targets] */
    float *scratch; /* [OBS_ROWS * max_out] */
    double *rowdot; /* [OBS_ROWS] */
    ml_status status;
} observer_ctx;

static void observe(void *vctx, const ml_model *m, ml_param_kind kind, int layer, const float *dy, const float *x,
                    const int32_t *tokens, int N) {
    observer_ctx *o = vctx;
    int pi = param_index(m, kind, layer);
    if (pi < 0 || !o->sel[pi]) return;
    const ml_param *p = &m->params[pi];
    const int C = m->cfg.hidden_size;
    if (kind == ML_P_EMBED) { /* the lookup: dy_t . Ḡ[token_t] */
        for (int c = 0; c < o->n_targets; c++) {
            const float *G = o->gbar[c] + p->offset;
            for (int n0 = 0; n0 < N; n0 += OBS_ROWS) {
                int rows = N - n0 < OBS_ROWS ? N - n0 : OBS_ROWS;
#pragma omp parallel for schedule(static)
                for (int r = 0; r < rows; r++) {
                    const float *d = dy + (int64_t)(n0 + r) * C, *g = G + (int64_t)tokens[n0 + r] * C;
                    double s = 0;
                    for (int k = 0; k < C; k++) s += (double)d[k] * g[k];
                    o->rowdot[r] = s;
                }
                for (int r = 0; r < rows; r++) o->scores[(int64_t)((n0 + r) / o->T) * o->n_targets + c] += o->rowdot[r];
            }
        }
        return;
    }
    /* a linear layer y = x W^T, W [out, in]: dy_t . (Ḡ x_t) */
    const int out = (int)p->shape[0], in = (int)p->shape[1];
    int row0 = 0;
    if (kind == ML_P_LM_HEAD) row0 = (int)((x - m->ln_f) / C); /* one chunk of the fused head */
    for (int c = 0; c < o->n_targets; c++) {
        const float *G = o->gbar[c] + p->offset;
        for (int n0 = 0; n0 < N; n0 += OBS_ROWS) {
            int rows = N - n0 < OBS_ROWS ? N - n0 : OBS_ROWS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x + (int64_t)n0 * in, in, G, in,
                        0.0f, o->scratch, out);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < rows; r++) {
                const float *d = dy + (int64_t)(n0 + r) * out, *y = o->scratch + (int64_t)r * out;
                double s = 0;
                for (int k = 0; k < out; k++) s += (double)d[k] * y[k];
                o->rowdot[r] = s;
            }
            for (int r = 0; r < rows; r++)
                o->scores[(int64_t)((row0 + n0 + r) / o->T) * o->n_targets + c] += o->rowdot[r];
        }
    }
}

/* ---------------------------------------------------------------- per-row mean cross-entropy */

typedef struct {
    const float *inv_count; /* [B] 1 / scored tokens of each row (0 when none) */
    double *row_loss;       /* [B] summed loss per row */
    int T;
} row_ce_ctx;

static void row_ce(void *vctx, float *logits, float *losses, const int32_t *targets, int row0, int rows, int V,
                   float grad_scale) {
    row_ce_ctx *c = vctx;
    ml_softmax_xent_rows(logits, losses, targets, rows, V, grad_scale);
    for (int r = 0; r < rows; r++) {
        int row = (row0 + r) / c->T;
        if (targets[r] >= 0) c->row_loss[row] += losses[r];
        if (grad_scale != 0.0f) {
            float s = c->inv_count[row];
            float *g = logits + (int64_t)r * V;
            for (int v = 0; v < V; v++) g[v] *= s;
        }
    }
}

static ml_status check_no_transforms(const ml_model *m) {
    for (int i = 0; m->transforms && i < m->n_params; i++)
        if (m->transforms[i])
            return ml_fail(ML_ERR_UNSUPPORTED, "influence scores need a model without weight transforms (%s has one)",
                           m->params[i].name);
    return ML_OK;
}

ml_status ml_influence_target_grad(ml_model *m, ml_batch_reader *r, int B, int T, int max_batches,
                                   const unsigned char *sel, float *gbar, double *loss, int64_t *tokens) {
    ML_TRY(check_no_transforms(m));
    const size_t N = (size_t)B * T;
    int32_t *tok = malloc(N * sizeof *tok), *tgt = malloc(N * sizeof *tgt);
    if (!tok || !tgt) {
        free(tok), free(tgt);
        return ml_fail(ML_ERR_NOMEM, "out of memory for a target batch");
    }
    if (max_batches <= 0) {
        uint64_t nb = ml_batch_reader_total_tokens(r) / ((uint64_t)N + 1);
        max_batches = nb < 1 ? 1 : (int)nb;
    }
    ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
    ml_model_zero_grad(m);
    double sum = 0;
    int64_t count = 0;
    ml_status s = ML_OK;
    for (int k = 0; k < max_batches && s == ML_OK; k++) {
        double ls;
        int64_t n;
        s = ml_batch_reader_next(r, tok, tgt, NULL, NULL);
        if (s == ML_OK) s = ml_model_forward(m, &b);
        if (s == ML_OK) s = ml_model_head_loss(m, &b, 1.0f, &ls, &n);
        if (s == ML_OK) s = ml_model_backward(m, &b);
        sum += ls, count += n;
    }
    free(tok), free(tgt);
    ML_TRY(s);
    if (!count) return ml_fail(ML_ERR_ARG, "target has no scored tokens");
    memset(gbar, 0, m->num_floats * sizeof(float));
    const float inv = 1.0f / (float)count;
    for (int i = 0; i < m->n_params; i++) {
        if (!sel[i]) continue;
        const ml_param *p = &m->params[i];
        const float *g = ml_param_grad(m, p);
        for (size_t j = 0; j < p->numel; j++) gbar[p->offset + j] = g[j] * inv;
    }
    if (loss) *loss = sum / (double)count;
    if (tokens) *tokens = count;
    return ML_OK;
}

ml_status ml_influence_score(ml_model *m, const ml_batch *b, const unsigned char *sel, const float *const *gbar,
                             int n_targets, double *scores, double *row_loss) {
    ML_TRY(check_no_transforms(m));
    if (!b->targets) return ml_fail(ML_ERR_ARG, "influence scores need targets");
    size_t max_out = 0;
    for (int i = 0; i < m->n_params; i++)
        if (sel[i] && m->params[i].ndim == 2 && (size_t)m->params[i].shape[0] > max_out) max_out = (size_t)m->params[i].shape[0];
    float *scratch = malloc(OBS_ROWS * max_out * sizeof(float) + 1);
    double *rowdot = malloc(OBS_ROWS * sizeof(double));
    float *inv = calloc((size_t)b->B, sizeof(float));
    double *rl = calloc((size_t)b->B, sizeof(double));
    if (!scratch || !rowdot || !inv || !rl) {
        free(scratch), free(rowdot), free(inv), free(rl);
        return ml_fail(ML_ERR_NOMEM, "out of memory for influence scores");
    }
    for (int i = 0; i < b->B; i++) {
        int n = 0;
        for (int t = 0; t < b->T; t++) n += b->targets[(int64_t)i * b->T + t] >= 0;
        inv[i] = n ? 1.0f / (float)n : 0.0f;
    }
    memset(scores, 0, (size_t)b->B * n_targets * sizeof(double));
    observer_ctx o = {.sel = sel, .gbar = gbar, .n_targets = n_targets, .T = b->T, .scores = scores,
                      .scratch = scratch, .rowdot = rowdot};
    row_ce_ctx rc = {.inv_count = inv, .row_loss = rl, .T = b->T};
    ml_model_zero_grad(m);
    double ls;
    int64_t n;
    ml_status s = ml_model_forward(m, b);
    m->observer = observe, m->observer_ctx = &o;
    if (s == ML_OK) s = ml_model_head_custom(m, b, row_ce, &rc, 1.0f, &ls, &n);
    if (s == ML_OK) s = ml_model_backward(m, b);
    m->observer = NULL, m->observer_ctx = NULL;
    if (row_loss)
        for (int i = 0; i < b->B; i++) row_loss[i] = inv[i] > 0 ? rl[i] * inv[i] : 0.0;
    free(scratch), free(rowdot), free(inv), free(rl);
    return s;
}
