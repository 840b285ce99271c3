#include "merge/recipe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/atomic_file.h"

static const char *const method_names[ML_MERGE_N_METHODS] = {
    "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties", "slerp"};

const char *ml_merge_method_name(ml_merge_method m) {
    return (unsigned)m < ML_MERGE_N_METHODS ? method_names[m] : "?";
}

int ml_merge_method_parse(const char *name) {
    for (int i = 0; i < ML_MERGE_N_METHODS; i++)
        if (!strcmp(name, method_names[i])) return i;
    return -1;
}

int ml_merge_method_needs_base(ml_merge_method m) { return m != ML_MERGE_LINEAR; }

/* ------------------------------------------------------------------ freeing */

static void mval_free(ml_mval *v) {
    for (int i = 0; i < v->n; i++) mval_free(&v->items[i]);
    free(v->items);
    free(v->filter);
    memset(v, 0, sizeof *v);
}

static void mparams_free(ml_mparams *ps) {
    for (int i = 0; i < ps->n; i++) mval_free(&ps->p[i].v);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

void ml_merge_recipe_free(ml_merge_recipe *r) {
    if (!r) return;
    for (int s = 0; s < r->n_slices; s++) {
        ml_mslice *sl = &r->slices[s];
        for (int i = 0; i < sl->n_sources; i++) {
            free(sl->sources[i].model);
            mparams_free(&sl->sources[i].params);
        }
        free(sl->sources);
        free(sl->base_model);
        mparams_free(&sl->params);
    }
    free(r->slices);
    free(r->base_model);
    free(r->text);
    mparams_free(&r->params);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ parsing */

typedef struct {
    yaml_document_t *doc;
    const char *where;
} pctx;

static int line_of(const yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 0; }

static ml_status perr(const pctx *c, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ml_status perr(const pctx *c, const yaml_node_t *n, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ml_fail(ML_ERR_ARG, "%s:%d: %s", c->where, line_of(n), msg);
}

static yaml_node_t *node(const pctx *c, int id) { return yaml_document_get_node(c->doc, id); }

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static ml_status get_string(const pctx *c, const yaml_node_t *n, const char *key, char **out) {
    const char *s = scalar(n);
    if (!s || !s[0]) return perr(c, n, "%s must be a non-empty string", key);
    *out = strdup(s);
    return *out ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
}

/* 1 number, 2 boolean, 0 neither */
static int scalar_value(const yaml_node_t *n, double *v) {
    const char *s = scalar(n);
    if (!s || !s[0]) return 0;
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (!strcmp(s, t[i])) return *v = 1, 2;
        if (!strcmp(s, f[i])) return *v = 0, 2;
    }
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno || !isfinite(d)) return 0;
    *v = d;
    return 1;
}

static ml_status parse_scalar_value(const pctx *c, const yaml_node_t *n, const char *key, ml_mval *v) {
    int k = scalar_value(n, &v->num);
    if (!k) return perr(c, n, "parameter %s: expected a number or a boolean, got '%s'", key, scalar(n) ? scalar(n) : "(not a scalar)");
    v->kind = k == 2 ? ML_MV_BOOL : ML_MV_NUM;
    v->line = line_of(n);
    return ML_OK;
}

/* scalar | [scalars] */
static ml_status parse_scalar_or_gradient(const pctx *c, const yaml_node_t *n, const char *key, ml_mval *v) {
    if (n->type == YAML_SCALAR_NODE) return parse_scalar_value(c, n, key, v);
    if (n->type != YAML_SEQUENCE_NODE) return perr(c, n, "parameter %s: expected a value or a list of values", key);
    int cnt = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0) return perr(c, n, "parameter %s: empty list", key);
    v->kind = ML_MV_LIST;
    v->line = line_of(n);
    v->items = calloc((size_t)cnt, sizeof *v->items);
    if (!v->items) return ml_fail(ML_ERR_NOMEM, "out of memory");
    v->n = cnt;
    for (int i = 0; i < cnt; i++) {
        yaml_node_t *e = node(c, n->data.sequence.items.start[i]);
        if (!e || e->type != YAML_SCALAR_NODE)
            return perr(c, e, "parameter %s: a gradient holds numbers (filters go in {filter, value} entries)", key);
        ML_TRY(parse_scalar_value(c, e, key, &v->items[i]));
    }
    return ML_OK;
}

static ml_status parse_setting(const pctx *c, const yaml_node_t *n, const char *key, ml_mval *v) {
    /* a mapping is one {filter, value} entry; a sequence of mappings is a list of them */
    int is_cond = n->type == YAML_MAPPING_NODE;
    if (n->type == YAML_SEQUENCE_NODE && n->data.sequence.items.top > n->data.sequence.items.start) {
        yaml_node_t *e0 = node(c, n->data.sequence.items.start[0]);
        is_cond = e0 && e0->type == YAML_MAPPING_NODE;
    }
    if (!is_cond) return parse_scalar_or_gradient(c, n, key, v);
    int cnt = n->type == YAML_MAPPING_NODE ? 1 : (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    v->kind = ML_MV_COND;
    v->line = line_of(n);
    v->items = calloc((size_t)cnt, sizeof *v->items);
    if (!v->items) return ml_fail(ML_ERR_NOMEM, "out of memory");
    v->n = cnt;
    for (int i = 0; i < cnt; i++) {
        const yaml_node_t *e = n->type == YAML_MAPPING_NODE ? n : node(c, n->data.sequence.items.start[i]);
        if (!e || e->type != YAML_MAPPING_NODE)
            return perr(c, e, "parameter %s: every entry of a filter list is {filter, value}", key);
        const yaml_node_t *val = NULL;
        char *filter = NULL;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top; p++) {
            const yaml_node_t *k = node(c, p->key), *vv = node(c, p->value);
            const char *ks = scalar(k);
            if (ks && !strcmp(ks, "filter")) {
                free(filter);
                filter = NULL;
                if (scalar(vv) && strcmp(scalar(vv), "~") && strcmp(scalar(vv), "null") && scalar(vv)[0]) {
                    filter = strdup(scalar(vv));
                    if (!filter) return ml_fail(ML_ERR_NOMEM, "out of memory");
                } else if (!scalar(vv)) {
                    return perr(c, vv, "parameter %s: filter must be a string", key);
                }
            } else if (ks && !strcmp(ks, "value")) {
                val = vv;
            } else {
                free(filter);
                return perr(c, k, "parameter %s: unknown key '%s' in a {filter, value} entry", key, ks ? ks : "?");
            }
        }
        if (!val) {
            free(filter);
            return perr(c, e, "parameter %s: {filter, value} entry without a value", key);
        }
        v->items[i].filter = filter;
        ML_TRY(parse_scalar_or_gradient(c, val, key, &v->items[i]));
        v->items[i].filter = filter; /* parse_scalar_or_gradient leaves it alone; keep explicit */
    }
    return ML_OK;
}

static ml_status parse_params(const pctx *c, const yaml_node_t *n, ml_mparams *ps) {
    if (n->type == YAML_SCALAR_NODE && (!scalar(n)[0] || !strcmp(scalar(n), "~") || !strcmp(scalar(n), "null")))
        return ML_OK;
    if (n->type != YAML_MAPPING_NODE) return perr(c, n, "parameters must be a mapping of name: value");
    int cnt = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    ps->p = calloc((size_t)cnt + 1, sizeof *ps->p);
    if (!ps->p) return ml_fail(ML_ERR_NOMEM, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *ks = scalar(k);
        if (!ks || strlen(ks) >= sizeof ps->p[0].name) return perr(c, k, "bad parameter name");
        for (int i = 0; i < ps->n; i++)
            if (!strcmp(ps->p[i].name, ks)) return perr(c, k, "parameter %s given twice", ks);
        ml_mparam *mp = &ps->p[ps->n++];
        snprintf(mp->name, sizeof mp->name, "%s", ks);
        ML_TRY(parse_setting(c, v, ks, &mp->v));
        mp->v.line = line_of(k);
    }
    return ML_OK;
}

static ml_status parse_source(const pctx *c, const yaml_node_t *n, int need_range, ml_msource *src) {
    src->layer0 = src->layer1 = -1;
    src->line = line_of(n);
    if (n->type != YAML_MAPPING_NODE) return perr(c, n, "each entry must be a mapping with a model");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *ks = scalar(k);
        if (!ks) return perr(c, k, "keys must be strings");
        if (!strcmp(ks, "model")) {
            ML_TRY(get_string(c, v, "model", &src->model));
        } else if (!strcmp(ks, "parameters")) {
            ML_TRY(parse_params(c, v, &src->params));
        } else if (!strcmp(ks, "layer_range") && need_range) {
            double a, b;
            if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2 ||
                scalar_value(node(c, v->data.sequence.items.start[0]), &a) != 1 ||
                scalar_value(node(c, v->data.sequence.items.start[1]), &b) != 1 || a != floor(a) || b != floor(b) ||
                a < 0 || b <= a || b > 1e6)
                return perr(c, v, "layer_range must be [first, end) with 0 <= first < end");
            src->layer0 = (int)a;
            src->layer1 = (int)b;
        } else {
            return perr(c, k, "unknown key '%s' in a %s entry", ks, need_range ? "slice source" : "model");
        }
    }
    if (!src->model) return perr(c, n, "entry without a model");
    if (need_range && src->layer0 < 0) return perr(c, n, "slice source %s has no layer_range", src->model);
    return ML_OK;
}

static ml_status parse_sources(const pctx *c, const yaml_node_t *n, int need_range, ml_msource **out, int *count) {
    if (n->type != YAML_SEQUENCE_NODE) return perr(c, n, "%s must be a list", need_range ? "sources" : "models");
    int cnt = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0) return perr(c, n, "%s is empty", need_range ? "sources" : "models");
    *out = calloc((size_t)cnt, sizeof **out);
    if (!*out) return ml_fail(ML_ERR_NOMEM, "out of memory");
    *count = cnt;
    for (int i = 0; i < cnt; i++) ML_TRY(parse_source(c, node(c, n->data.sequence.items.start[i]), need_range, &(*out)[i]));
    return ML_OK;
}

static ml_status parse_slices(const pctx *c, const yaml_node_t *n, ml_merge_recipe *r) {
    if (n->type != YAML_SEQUENCE_NODE) return perr(c, n, "slices must be a list");
    int cnt = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0) return perr(c, n, "slices is empty");
    r->slices = calloc((size_t)cnt, sizeof *r->slices);
    if (!r->slices) return ml_fail(ML_ERR_NOMEM, "out of memory");
    r->n_slices = cnt;
    for (int i = 0; i < cnt; i++) {
        const yaml_node_t *s = node(c, n->data.sequence.items.start[i]);
        ml_mslice *sl = &r->slices[i];
        sl->line = line_of(s);
        if (!s || s->type != YAML_MAPPING_NODE) return perr(c, s, "each slice must be a mapping with sources");
        for (yaml_node_pair_t *p = s->data.mapping.pairs.start; p < s->data.mapping.pairs.top; p++) {
            const yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
            const char *ks = scalar(k);
            if (!ks) return perr(c, k, "keys must be strings");
            if (!strcmp(ks, "sources")) ML_TRY(parse_sources(c, v, 1, &sl->sources, &sl->n_sources));
            else if (!strcmp(ks, "base_model")) ML_TRY(get_string(c, v, "base_model", &sl->base_model));
            else if (!strcmp(ks, "parameters")) ML_TRY(parse_params(c, v, &sl->params));
            else if (!strcmp(ks, "residual_weight")) return perr(c, k, "residual_weight is not supported");
            else return perr(c, k, "unknown key '%s' in a slice", ks);
        }
        if (!sl->n_sources) return perr(c, s, "slice without sources");
        int len = sl->sources[0].layer1 - sl->sources[0].layer0;
        for (int j = 1; j < sl->n_sources; j++)
            if (sl->sources[j].layer1 - sl->sources[j].layer0 != len)
                return perr(c, node(c, s->data.mapping.pairs.start->value),
                            "all sources of a slice must span the same number of layers (%d and %d)", len,
                            sl->sources[j].layer1 - sl->sources[j].layer0);
    }
    return ML_OK;
}

/* Parameter names each method reads (anything else is a typo). */
static int known_param(ml_merge_method m, const char *name) {
    static const char *const lin[] = {"weight", "normalize", NULL};
    static const char *const task[] = {"weight", "density", "normalize", "rescale", "lambda", "int8_mask", NULL};
    static const char *const crumbs[] = {"weight", "density", "gamma", "normalize", "rescale", "lambda", "int8_mask", NULL};
    static const char *const slerp[] = {"t", NULL};
    const char *const *list = m == ML_MERGE_LINEAR ? lin
                              : m == ML_MERGE_SLERP ? slerp
                              : (m == ML_MERGE_BREADCRUMBS || m == ML_MERGE_BREADCRUMBS_TIES) ? crumbs
                                                                                               : task;
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], name)) return 1;
    return 0;
}

static ml_status check_params(const ml_merge_recipe *r, const ml_mparams *ps) {
    for (int i = 0; i < ps->n; i++)
        if (!known_param(r->method, ps->p[i].name))
            return ml_fail(ML_ERR_ARG, "%s:%d: unknown parameter '%s' for merge_method %s", r->path, ps->p[i].v.line,
                           ps->p[i].name, ml_merge_method_name(r->method));
    return ML_OK;
}

static ml_status parse_doc(const pctx *c, ml_merge_recipe *r) {
    const yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (!root) return ml_fail(ML_ERR_ARG, "%s:1: empty recipe", c->where);
    if (root->type != YAML_MAPPING_NODE) return perr(c, root, "a recipe is a mapping (merge_method, models, ...)");
    const yaml_node_t *models = NULL, *slices = NULL, *method = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *ks = scalar(k);
        if (!ks) return perr(c, k, "keys must be strings");
        if (!strcmp(ks, "models")) models = v;
        else if (!strcmp(ks, "slices")) slices = v;
        else if (!strcmp(ks, "merge_method")) method = v;
        else if (!strcmp(ks, "base_model")) {
            ML_TRY(get_string(c, v, "base_model", &r->base_model));
            r->base_line = line_of(v);
        } else if (!strcmp(ks, "dtype") || !strcmp(ks, "out_dtype")) {
            const char *s = scalar(v);
            if (!s || (strcmp(s, "float32") && strcmp(s, "bfloat16") && strcmp(s, "float16")))
                return perr(c, v, "%s must be float32, bfloat16 or float16", ks);
            if (!strcmp(ks, "out_dtype") || !r->out_dtype[0]) snprintf(r->out_dtype, sizeof r->out_dtype, "%s", s);
        } else if (!strcmp(ks, "parameters")) {
            ML_TRY(parse_params(c, v, &r->params));
        } else if (!strcmp(ks, "seed")) {
            double d;
            if (scalar_value(v, &d) != 1 || d < 0 || d != floor(d) || d > 9e15) return perr(c, v, "seed must be an integer >= 0");
            r->seed = (uint64_t)d;
        } else if (!strcmp(ks, "tokenizer_source") || !strcmp(ks, "chat_template") || !strcmp(ks, "name")) {
            /* accepted for compatibility: inputs must share one tokenizer, which the output keeps */
        } else if (!strcmp(ks, "modules") || !strcmp(ks, "tokenizer")) {
            return perr(c, k, "'%s' is not supported (use models: or slices:)", ks);
        } else {
            return perr(c, k, "unknown key '%s'", ks);
        }
    }
    if (!method) return perr(c, root, "no merge_method");
    const char *ms = scalar(method);
    int mi = ms ? ml_merge_method_parse(ms) : -1;
    if (mi < 0)
        return perr(c, method, "unknown merge_method '%s' (linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs, "
                               "breadcrumbs_ties, slerp)", ms ? ms : "?");
    r->method = (ml_merge_method)mi;
    r->method_line = line_of(method);
    if ((models != NULL) == (slices != NULL)) return perr(c, root, "give exactly one of models: or slices:");
    if (models) {
        r->slices = calloc(1, sizeof *r->slices);
        if (!r->slices) return ml_fail(ML_ERR_NOMEM, "out of memory");
        r->n_slices = 1;
        r->slices[0].line = line_of(models);
        ML_TRY(parse_sources(c, models, 0, &r->slices[0].sources, &r->slices[0].n_sources));
    } else {
        r->slices_form = 1;
        ML_TRY(parse_slices(c, slices, r));
    }
    ML_TRY(check_params(r, &r->params));
    for (int s = 0; s < r->n_slices; s++) {
        ML_TRY(check_params(r, &r->slices[s].params));
        for (int i = 0; i < r->slices[s].n_sources; i++) ML_TRY(check_params(r, &r->slices[s].sources[i].params));
    }
    return ML_OK;
}

ml_status ml_merge_recipe_parse(ml_merge_recipe *r, const char *text, const char *where) {
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", where);
    r->text = strdup(text);
    if (!r->text) return ml_fail(ML_ERR_NOMEM, "out of memory");
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return ml_fail(ML_ERR_NOMEM, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        ml_status s = ml_fail(ML_ERR_ARG, "%s:%d: malformed YAML: %s", where, (int)parser.problem_mark.line + 1,
                              parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        ml_merge_recipe_free(r);
        return s;
    }
    pctx c = {&doc, where};
    ml_status s = parse_doc(&c, r);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (s != ML_OK) ml_merge_recipe_free(r);
    else snprintf(r->path, sizeof r->path, "%s", where);
    return s;
}

ml_status ml_merge_recipe_load(ml_merge_recipe *r, const char *path) {
    char *text = NULL;
    size_t size = 0;
    memset(r, 0, sizeof *r);
    ML_TRY(ml_read_file(path, &text, &size));
    if (strlen(text) != size) {
        free(text);
        return ml_fail(ML_ERR_ARG, "%s: not a text file (NUL byte)", path);
    }
    ml_status s = ml_merge_recipe_parse(r, text, path);
    free(text);
    return s;
}

/* ------------------------------------------------------------------ evaluation */

/* mergekit's evaluate_setting: numbers interpolate over t, booleans select. */
static int eval_value(const ml_mval *v, const char *tensor, double t, double *out) {
    switch (v->kind) {
    case ML_MV_NUM:
    case ML_MV_BOOL: *out = v->num; return 1;
    case ML_MV_LIST: {
        int all_num = 1;
        for (int i = 0; i < v->n; i++) all_num &= v->items[i].kind == ML_MV_NUM;
        if (!all_num) {
            *out = v->items[(int)(t * (v->n - 1))].num;
            return 1;
        }
        double scaled = t * (v->n - 1);
        int i0 = (int)scaled, i1 = i0 + 1 < v->n ? i0 + 1 : v->n - 1;
        double frac = scaled - i0;
        *out = (1 - frac) * v->items[i0].num + frac * v->items[i1].num;
        return 1;
    }
    case ML_MV_COND:
        for (int i = 0; i < v->n; i++) {
            const char *f = v->items[i].filter;
            if (!f || !strcmp(f, "*") || (tensor && tensor[0] && strstr(tensor, f)))
                return eval_value(&v->items[i], tensor, t, out);
        }
        return 0;
    }
    return 0;
}

int ml_mparams_eval(const ml_mparams *ps, const char *name, const char *tensor, double t, double *out) {
    if (!ps) return 0;
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i].name, name)) return eval_value(&ps->p[i].v, tensor, t, out);
    return 0;
}

ml_status ml_mparams_set(ml_mparams *ps, const char *name, double value) {
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i].name, name)) {
            int line = ps->p[i].v.line;
            mval_free(&ps->p[i].v);
            ps->p[i].v.kind = ML_MV_NUM;
            ps->p[i].v.num = value;
            ps->p[i].v.line = line;
            return ML_OK;
        }
    ml_mparam *np = realloc(ps->p, (size_t)(ps->n + 1) * sizeof *np);
    if (!np) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ps->p = np;
    memset(&ps->p[ps->n], 0, sizeof *ps->p);
    snprintf(ps->p[ps->n].name, sizeof ps->p[0].name, "%s", name);
    ps->p[ps->n].v.kind = ML_MV_NUM;
    ps->p[ps->n].v.num = value;
    ps->n++;
    return ML_OK;
}

/* ------------------------------------------------------------------ writing YAML */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

/* a YAML double-quoted string */
static void sb_quoted(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) sb_printf(b, "\\x%02x", (unsigned char)*s);
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

static void sb_scalar(sbuf *b, const ml_mval *v) {
    if (v->kind == ML_MV_BOOL) sb_printf(b, "%s", v->num != 0 ? "true" : "false");
    else sb_printf(b, "%.9g", v->num);
}

static void sb_value(sbuf *b, const ml_mval *v) {
    if (v->kind == ML_MV_NUM || v->kind == ML_MV_BOOL) {
        sb_scalar(b, v);
    } else if (v->kind == ML_MV_LIST) {
        sb_printf(b, "[");
        for (int i = 0; i < v->n; i++) {
            if (i) sb_printf(b, ", ");
            sb_scalar(b, &v->items[i]);
        }
        sb_printf(b, "]");
    } else {
        sb_printf(b, "[");
        for (int i = 0; i < v->n; i++) {
            if (i) sb_printf(b, ", ");
            sb_printf(b, "{");
            if (v->items[i].filter) {
                sb_printf(b, "filter: ");
                sb_quoted(b, v->items[i].filter);
                sb_printf(b, ", ");
            }
            sb_printf(b, "value: ");
            ml_mval tmp = v->items[i];
            tmp.filter = NULL;
            sb_value(b, &tmp);
            sb_printf(b, "}");
        }
        sb_printf(b, "]");
    }
}

static void sb_params(sbuf *b, const ml_mparams *ps, const char *indent) {
    if (!ps->n) return;
    sb_printf(b, "%sparameters:\n", indent);
    for (int i = 0; i < ps->n; i++) {
        sb_printf(b, "%s  %s: ", indent, ps->p[i].name);
        sb_value(b, &ps->p[i].v);
        sb_printf(b, "\n");
    }
}

ml_status ml_merge_recipe_to_yaml(const ml_merge_recipe *r, char **yaml) {
    sbuf b = {0};
    sb_printf(&b, "merge_method: %s\n", ml_merge_method_name(r->method));
    if (r->base_model) {
        sb_printf(&b, "base_model: ");
        sb_quoted(&b, r->base_model);
        sb_printf(&b, "\n");
    }
    if (!r->slices_form) {
        sb_printf(&b, "models:\n");
        const ml_mslice *sl = &r->slices[0];
        for (int i = 0; i < sl->n_sources; i++) {
            sb_printf(&b, "  - model: ");
            sb_quoted(&b, sl->sources[i].model);
            sb_printf(&b, "\n");
            sb_params(&b, &sl->sources[i].params, "    ");
        }
    } else {
        sb_printf(&b, "slices:\n");
        for (int s = 0; s < r->n_slices; s++) {
            const ml_mslice *sl = &r->slices[s];
            sb_printf(&b, "  - sources:\n");
            for (int i = 0; i < sl->n_sources; i++) {
                sb_printf(&b, "      - model: ");
                sb_quoted(&b, sl->sources[i].model);
                sb_printf(&b, "\n        layer_range: [%d, %d]\n", sl->sources[i].layer0, sl->sources[i].layer1);
                sb_params(&b, &sl->sources[i].params, "        ");
            }
            if (sl->base_model) {
                sb_printf(&b, "    base_model: ");
                sb_quoted(&b, sl->base_model);
                sb_printf(&b, "\n");
            }
            sb_params(&b, &sl->params, "    ");
        }
    }
    sb_params(&b, &r->params, "");
    if (r->out_dtype[0]) sb_printf(&b, "dtype: %s\n", r->out_dtype);
    if (r->seed) sb_printf(&b, "seed: %llu\n", (unsigned long long)r->seed);
    if (b.oom) {
        free(b.buf);
        return ml_fail(ML_ERR_NOMEM, "out of memory writing the recipe");
    }
    *yaml = b.buf;
    return ML_OK;
}
