#include "merge/merge.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/atomic_file.h"
#include "formats/h5.h"
#include "formats/half.h"
#include "formats/safetensors.h"
#include "merge/methods.h"
#include "model/checkpoint.h"

typedef struct {
    char path[1024];
    int line; /* where the recipe first names it */
    int hf;
    ml_config cfg;
    ml_h5 *h5;
    ml_st_dir *st;
    char dtype[8]; /* stored dtype: "F32", "BF16", "F16" */
    ml_param *table; /* preloaded: its parameter table and weights */
    int n_table;
    float *mem;
} minput;

typedef struct {
    int model;     /* index into plan->in */
    int src;       /* index of its source in the slice; -1 for a base added implicitly */
    char name[96]; /* the input's tensor name */
} mref;

typedef struct {
    ml_param out;
    int slice;
    double t;
    int n, base; /* refs; base: index into refs or -1 */
    mref *refs;
} mtensor;

struct ml_merge_plan {
    ml_merge_recipe *r;
    int n_in;
    minput *in;
    ml_config cfg;
    ml_param *table;
    int n_tensors;
    mtensor *t;
    int max_refs;
    uint64_t max_numel;
};

const ml_config *ml_merge_plan_config(const ml_merge_plan *p) { return &p->cfg; }
int ml_merge_plan_n_tensors(const ml_merge_plan *p) { return p->n_tensors; }
int ml_merge_plan_n_models(const ml_merge_plan *p) { return p->n_in; }
const char *ml_merge_plan_model(const ml_merge_plan *p, int i) { return p->in[i].path; }
uint64_t ml_merge_plan_max_numel(const ml_merge_plan *p) { return p->max_numel; }

static void input_close(minput *in) {
    if (in->h5) ml_h5_close(in->h5);
    ml_safetensors_dir_close(in->st);
    in->h5 = NULL;
    in->st = NULL;
}

void ml_merge_plan_free(ml_merge_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_in; i++) {
        input_close(&p->in[i]);
        free(p->in[i].table);
        free(p->in[i].mem);
    }
    for (int i = 0; i < p->n_tensors; i++) free(p->t[i].refs);
    free(p->in);
    free(p->t);
    free(p->table);
    free(p);
}

/* "RECIPE:LINE: " + the current message */
static ml_status at_line(const ml_merge_plan *p, int line, ml_status code) {
    return ml_fail_context(code, "%s:%d", p->r->path, line);
}

/* ------------------------------------------------------------------ opening inputs */

static ml_status open_input(minput *in) {
    struct stat sb;
    if (stat(in->path, &sb) != 0) return ml_fail(ML_ERR_IO, "model %s: %s", in->path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        in->hf = 1;
        char cfgp[1100];
        snprintf(cfgp, sizeof cfgp, "%s/config.json", in->path);
        ML_TRY(ml_config_load(&in->cfg, cfgp));
        ML_TRY(ml_config_validate(&in->cfg));
        ML_TRY(ml_safetensors_dir_open(&in->st, in->path));
        const ml_st_tensor *t0 = ml_safetensors_dir_find(in->st, "model.embed_tokens.weight", NULL);
        snprintf(in->dtype, sizeof in->dtype, "%s", t0 ? ml_st_dtype_name(t0->dtype) : "F32");
        return ML_OK;
    }
    ML_TRY(ml_checkpoint_open(in->path, &in->h5, &in->cfg));
    snprintf(in->dtype, sizeof in->dtype, "F32");
    if (ml_h5_has_attr(in->h5, "/", "source_dtype")) {
        char *d = NULL;
        if (ml_h5_get_attr_str(in->h5, "/", "source_dtype", &d) == ML_OK) snprintf(in->dtype, sizeof in->dtype, "%s", d);
        free(d);
    }
    return ML_OK;
}

/* First architectural difference between two configs, written into why; 0 when none. */
static int config_differs(const ml_config *a, const ml_config *b, int same_layers, char *why, size_t n) {
#define F(field)                                                                                               \
    if (a->field != b->field) {                                                                                \
        snprintf(why, n, "differ in " #field " (%g vs %g)", (double)a->field, (double)b->field);               \
        return 1;                                                                                              \
    }
    if (a->vocab_size != b->vocab_size) {
        snprintf(why, n, "have different vocabularies (%d vs %d tokens)", a->vocab_size, b->vocab_size);
        return 1;
    }
    int fa = a->dialect == ML_DIALECT_LLAMA4_TEXT, fb = b->dialect == ML_DIALECT_LLAMA4_TEXT;
    if (fa != fb) {
        snprintf(why, n, "differ in model type (%s vs %s)", ml_dialect_name(a->dialect), ml_dialect_name(b->dialect));
        return 1;
    }
    F(hidden_size) F(intermediate_size) F(num_heads) F(num_kv_heads) F(head_dim) F(tie_word_embeddings)
    F(layer_repeat) F(use_qk_norm) F(rope_pairing) F(sliding_window) F(rope_theta) F(rms_norm_eps)
    F(bos_token_id) F(eos_token_id)
    if (same_layers) {
        F(num_layers)
        for (int l = 0; l < a->num_layers; l++)
            if (a->layer_sliding[l] != b->layer_sliding[l] || a->layer_rope[l] != b->layer_rope[l]) {
                snprintf(why, n, "differ in the attention type of layer %d", l);
                return 1;
            }
    }
#undef F
    return 0;
}

/* Tokenizer files of two HF directories must be identical when both have one. */
static int tokenizer_differs(const minput *a, const minput *b, char *why, size_t n) {
    if (!a->hf || !b->hf) return 0;
    static const char *const files[] = {"tokenizer.json", "tokenizer.model"};
    for (int i = 0; i < 2; i++) {
        char pa[1100], pb[1100];
        snprintf(pa, sizeof pa, "%s/%s", a->path, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b->path, files[i]);
        char *da = NULL, *db = NULL;
        size_t na = 0, nb = 0;
        if (access(pa, R_OK) || access(pb, R_OK)) continue;
        int differ = 0;
        if (ml_read_file(pa, &da, &na) == ML_OK && ml_read_file(pb, &db, &nb) == ML_OK)
            differ = na != nb || memcmp(da, db, na) != 0;
        free(da);
        free(db);
        if (differ) {
            snprintf(why, n, "have different tokenizers (%s differs)", files[i]);
            return 1;
        }
    }
    return 0;
}

static int add_input(ml_merge_plan *p, const char *path, int line) {
    for (int i = 0; i < p->n_in; i++)
        if (!strcmp(p->in[i].path, path)) return i;
    minput *in = &p->in[p->n_in];
    memset(in, 0, sizeof *in);
    snprintf(in->path, sizeof in->path, "%s", path);
    in->line = line;
    return p->n_in++;
}

static int find_input(const ml_merge_plan *p, const char *path) {
    for (int i = 0; i < p->n_in; i++)
        if (!strcmp(p->in[i].path, path)) return i;
    return -1;
}

/* ------------------------------------------------------------------ planning */

static int src_model(const ml_merge_plan *p, const ml_msource *s) { return find_input(p, s->model); }

static ml_status check_tensor(ml_merge_plan *p, const mref *ref, const ml_param *want) {
    minput *in = &p->in[ref->model];
    int ndim = 0;
    int64_t shape[ML_H5_MAX_DIMS] = {0};
    if (in->hf) {
        const ml_st_tensor *t = ml_safetensors_dir_find(in->st, ref->name, NULL);
        if (!t) return ml_fail(ML_ERR_FORMAT, "%s has no tensor %s", in->path, ref->name);
        if (t->dtype != ML_ST_F32 && t->dtype != ML_ST_F16 && t->dtype != ML_ST_BF16)
            return ml_fail(ML_ERR_UNSUPPORTED, "%s: tensor %s is %s (F32, F16 or BF16 only)", in->path, ref->name,
                           ml_st_dtype_name(t->dtype));
        ndim = t->ndim;
        for (int d = 0; d < ndim && d < ML_H5_MAX_DIMS; d++) shape[d] = t->shape[d];
    } else {
        char path[160];
        ml_h5_dtype dt;
        snprintf(path, sizeof path, ML_CKPT_PARAMS_GROUP "/%s", ref->name);
        if (!ml_h5_exists(in->h5, path)) return ml_fail(ML_ERR_FORMAT, "%s has no tensor %s", in->path, ref->name);
        ML_TRY(ml_h5_dataset_info(in->h5, path, &ndim, shape, &dt));
    }
    int same = ndim == want->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == want->shape[d];
    if (!same)
        return ml_fail(ML_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], the merge needs [%lld, %lld]", in->path,
                       ref->name, (long long)shape[0], ndim > 1 ? (long long)shape[1] : 0LL, (long long)want->shape[0],
                       want->ndim > 1 ? (long long)want->shape[1] : 0LL);
    return ML_OK;
}

static void layer_name(char *dst, size_t n, const char *out_name, int layer) {
    const char *rest = strchr(out_name + strlen("model.layers."), '.');
    snprintf(dst, n, "model.layers.%d%s", layer, rest ? rest : "");
}

/* Inputs of one slice: its sources, plus the base when the `models:` form names a base that is not a
 * model (mergekit adds it). *base: index into the list or -1. */
static ml_status slice_inputs(ml_merge_plan *p, int s, int *models, int *srcs, int *n, int *base) {
    const ml_merge_recipe *r = p->r;
    const ml_mslice *sl = &r->slices[s];
    const char *bpath = sl->base_model ? sl->base_model : r->base_model;
    int bline = sl->base_model ? sl->line : r->base_line;
    *n = 0;
    *base = -1;
    for (int i = 0; i < sl->n_sources; i++) {
        int m = src_model(p, &sl->sources[i]);
        for (int j = 0; j < *n; j++)
            if (models[j] == m)
                return ml_fail(ML_ERR_ARG, "%s:%d: model %s appears twice in one %s", r->path, sl->sources[i].line,
                               sl->sources[i].model, r->slices_form ? "slice" : "recipe");
        models[*n] = m;
        srcs[*n] = i;
        if (bpath && !strcmp(bpath, sl->sources[i].model)) *base = *n;
        (*n)++;
    }
    if (bpath && *base < 0) {
        if (r->slices_form && ml_merge_method_needs_base(r->method))
            return ml_fail(ML_ERR_ARG, "%s:%d: base model %s is not among the slice's sources", r->path, bline, bpath);
        if (!r->slices_form) {
            models[*n] = find_input(p, bpath);
            srcs[*n] = -1;
            *base = (*n)++;
        }
    }
    if (r->method == ML_MERGE_LINEAR) *base = -1; /* linear ignores the base (but merges it when listed) */
    if (ml_merge_method_needs_base(r->method) && *base < 0)
        return ml_fail(ML_ERR_ARG, "%s:%d: merge_method %s needs a base_model", r->path, r->method_line,
                       ml_merge_method_name(r->method));
    if (r->method == ML_MERGE_SLERP && *n != 2)
        return ml_fail(ML_ERR_ARG, "%s:%d: slerp merges exactly two models (the base and one other), not %d", r->path,
                       r->method_line, *n);
    return ML_OK;
}

ml_status ml_merge_plan_open(ml_merge_plan **pp, ml_merge_recipe *r) {
    *pp = NULL;
    ml_merge_plan *p = calloc(1, sizeof *p);
    if (!p) return ml_fail(ML_ERR_NOMEM, "out of memory");
    p->r = r;
    int total_src = 1;
    for (int s = 0; s < r->n_slices; s++) {
        total_src += r->slices[s].n_sources + 1;
        if (r->slices[s].n_sources > 63) {
            free(p);
            return ml_fail(ML_ERR_UNSUPPORTED, "%s:%d: at most 63 models in one slice", r->path, r->slices[s].line);
        }
    }
    p->in = calloc((size_t)total_src, sizeof *p->in);
    ml_status st = p->in ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    /* inputs in order of appearance, the base first: it is the reference for the checks */
    if (st == ML_OK && r->base_model) add_input(p, r->base_model, r->base_line);
    for (int s = 0; st == ML_OK && s < r->n_slices; s++) {
        if (r->slices[s].base_model) add_input(p, r->slices[s].base_model, r->slices[s].line);
        for (int i = 0; i < r->slices[s].n_sources; i++) add_input(p, r->slices[s].sources[i].model, r->slices[s].sources[i].line);
    }
    for (int i = 0; st == ML_OK && i < p->n_in; i++) {
        st = open_input(&p->in[i]);
        if (st != ML_OK) st = at_line(p, p->in[i].line, st);
    }
    /* one architecture, one vocabulary */
    for (int i = 1; st == ML_OK && i < p->n_in; i++) {
        char why[256];
        if (config_differs(&p->in[0].cfg, &p->in[i].cfg, !r->slices_form, why, sizeof why) ||
            tokenizer_differs(&p->in[0], &p->in[i], why, sizeof why))
            st = ml_fail(ML_ERR_CONFIG, "%s:%d: %s and %s %s", r->path, p->in[i].line, p->in[0].path, p->in[i].path, why);
    }
    /* the output config: the slices' layers, in order */
    int *models = NULL, *srcs = NULL;
    if (st == ML_OK) {
        models = malloc(sizeof(int) * (size_t)total_src);
        srcs = malloc(sizeof(int) * (size_t)total_src);
        if (!models || !srcs) st = ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    int *slice_start = calloc((size_t)r->n_slices + 1, sizeof(int));
    if (st == ML_OK && !slice_start) st = ml_fail(ML_ERR_NOMEM, "out of memory");
    if (st == ML_OK) {
        p->cfg = p->in[0].cfg;
        int L = 0;
        for (int s = 0; st == ML_OK && s < r->n_slices; s++) {
            const ml_mslice *sl = &r->slices[s];
            slice_start[s] = L;
            int n, base;
            st = slice_inputs(p, s, models, srcs, &n, &base);
            if (st != ML_OK) break;
            if (!r->slices_form) {
                L = p->in[0].cfg.num_layers;
                break;
            }
            for (int i = 0; i < sl->n_sources; i++) {
                const minput *in = &p->in[src_model(p, &sl->sources[i])];
                if (sl->sources[i].layer1 > in->cfg.num_layers) {
                    st = ml_fail(ML_ERR_ARG, "%s:%d: layer_range [%d, %d] is beyond %s's %d layers", r->path,
                                 sl->sources[i].line, sl->sources[i].layer0, sl->sources[i].layer1, in->path,
                                 in->cfg.num_layers);
                    break;
                }
            }
            if (st != ML_OK) break;
            const ml_msource *s0 = &sl->sources[0];
            const minput *in0 = &p->in[src_model(p, s0)];
            for (int l = s0->layer0; l < s0->layer1; l++, L++) {
                if (L >= ML_MAX_LAYERS) {
                    st = ml_fail(ML_ERR_ARG, "%s:%d: more than %d layers", r->path, sl->line, ML_MAX_LAYERS);
                    break;
                }
                p->cfg.layer_sliding[L] = in0->cfg.layer_sliding[l];
                p->cfg.layer_rope[L] = in0->cfg.layer_rope[l];
            }
        }
        slice_start[r->n_slices] = L;
        p->cfg.num_layers = L;
        snprintf(p->cfg.name, sizeof p->cfg.name, "merge");
        if (st == ML_OK) st = ml_config_validate(&p->cfg);
    }
    if (st == ML_OK) st = ml_model_param_table(&p->cfg, &p->table, &p->n_tensors);
    if (st == ML_OK) {
        p->t = calloc((size_t)p->n_tensors, sizeof *p->t);
        if (!p->t) st = ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; st == ML_OK && i < p->n_tensors; i++) {
        mtensor *T = &p->t[i];
        T->out = p->table[i];
        int s, idx = 0;
        if (T->out.layer >= 0) {
            for (s = 0; s + 1 < r->n_slices && T->out.layer >= slice_start[s + 1]; s++) {}
            idx = T->out.layer - slice_start[s];
            int len = slice_start[s + 1] - slice_start[s];
            T->t = len > 1 ? (double)idx / (len - 1) : 1.0;
        } else {
            s = T->out.kind == ML_P_EMBED ? 0 : r->n_slices - 1;
            T->t = 0;
        }
        T->slice = s;
        int n, base;
        st = slice_inputs(p, s, models, srcs, &n, &base);
        if (st != ML_OK) break;
        T->refs = calloc((size_t)n, sizeof *T->refs);
        if (!T->refs) {
            st = ml_fail(ML_ERR_NOMEM, "out of memory");
            break;
        }
        T->n = n;
        T->base = base;
        if (n > p->max_refs) p->max_refs = n;
        if (T->out.numel > p->max_numel) p->max_numel = T->out.numel;
        for (int j = 0; j < n && st == ML_OK; j++) {
            mref *ref = &T->refs[j];
            ref->model = models[j];
            ref->src = srcs[j];
            if (T->out.layer >= 0) {
                int l0 = srcs[j] >= 0 && r->slices_form ? r->slices[s].sources[srcs[j]].layer0 : 0;
                if (srcs[j] < 0 && r->slices_form) l0 = r->slices[s].sources[0].layer0;
                layer_name(ref->name, sizeof ref->name, T->out.name, l0 + idx);
            } else {
                snprintf(ref->name, sizeof ref->name, "%s", T->out.name);
            }
            st = check_tensor(p, ref, &T->out);
            if (st != ML_OK) st = at_line(p, p->in[ref->model].line, st);
        }
    }
    free(models);
    free(srcs);
    free(slice_start);
    if (st == ML_OK) st = ml_merge_plan_check(p);
    if (st != ML_OK) {
        ml_merge_plan_free(p);
        return st;
    }
    *pp = p;
    return ML_OK;
}

/* ------------------------------------------------------------------ parameters */

/* mergekit's precedence for an input: its source entries, the slice, the recipe. */
static int resolve_in(const ml_merge_plan *p, const mtensor *T, int j, const char *name, double *v) {
    const ml_mslice *sl = &p->r->slices[T->slice];
    const mref *ref = &T->refs[j];
    for (int i = 0; i < sl->n_sources; i++)
        if (!strcmp(sl->sources[i].model, p->in[ref->model].path) &&
            ml_mparams_eval(&sl->sources[i].params, name, ref->name, T->t, v))
            return 1;
    return ml_mparams_eval(&sl->params, name, ref->name, T->t, v) ||
           ml_mparams_eval(&p->r->params, name, ref->name, T->t, v);
}

static int resolve_shared(const ml_merge_plan *p, const mtensor *T, const char *name, double *v) {
    const ml_mslice *sl = &p->r->slices[T->slice];
    return ml_mparams_eval(&sl->params, name, T->out.name, T->t, v) ||
           ml_mparams_eval(&p->r->params, name, T->out.name, T->t, v);
}

static int ref_line(const ml_merge_plan *p, const mtensor *T, int j) {
    const mref *ref = &T->refs[j];
    return ref->src >= 0 ? p->r->slices[T->slice].sources[ref->src].line : p->in[ref->model].line;
}

static ml_status resolve_tensor(const ml_merge_plan *p, const mtensor *T, ml_merge_in_params *in, ml_merge_shared_params *sh) {
    const ml_merge_recipe *r = p->r;
    ml_merge_in_params def;
    ml_merge_defaults(r->method, sh, &def);
    double v;
    if (resolve_shared(p, T, "normalize", &v)) sh->normalize = v != 0;
    if (resolve_shared(p, T, "rescale", &v)) sh->rescale = v != 0;
    if (resolve_shared(p, T, "lambda", &v)) sh->lambda = v;
    if (r->method == ML_MERGE_SLERP) {
        if (!resolve_shared(p, T, "t", &sh->t))
            return ml_fail(ML_ERR_ARG, "%s:%d: slerp needs parameter t (none resolves for %s)", r->path, r->method_line,
                           T->out.name);
        if (!(sh->t >= 0 && sh->t <= 1))
            return ml_fail(ML_ERR_ARG, "%s:%d: t = %g for %s is outside [0, 1]", r->path, r->method_line, sh->t, T->out.name);
    }
    for (int j = 0; j < T->n; j++) {
        in[j] = def;
        if (r->method == ML_MERGE_SLERP || (j == T->base && r->method != ML_MERGE_LINEAR)) continue;
        const char *model = p->in[T->refs[j].model].path;
        if (!resolve_in(p, T, j, "weight", &in[j].weight))
            return ml_fail(ML_ERR_ARG, "%s:%d: model %s has no weight for %s (%s needs one per %smodel)", r->path,
                           ref_line(p, T, j), model, T->out.name, ml_merge_method_name(r->method),
                           r->method == ML_MERGE_LINEAR ? "" : "non-base ");
        if (resolve_in(p, T, j, "density", &in[j].density) && !(in[j].density > 0 && in[j].density <= 1))
            return ml_fail(ML_ERR_ARG, "%s:%d: density %g for %s of %s is outside (0, 1]", r->path, ref_line(p, T, j),
                           in[j].density, T->out.name, model);
        if (resolve_in(p, T, j, "gamma", &in[j].gamma) && !(in[j].gamma >= 0 && in[j].gamma < 1))
            return ml_fail(ML_ERR_ARG, "%s:%d: gamma %g for %s of %s is outside [0, 1)", r->path, ref_line(p, T, j),
                           in[j].gamma, T->out.name, model);
    }
    if (r->method == ML_MERGE_LINEAR && sh->normalize) {
        float den = 0;
        for (int j = 0; j < T->n; j++) den += (float)in[j].weight;
        if (den == 0.0f)
            return ml_fail(ML_ERR_ARG, "%s:%d: the weights for %s sum to zero (normalize: false, or change them)", r->path,
                           r->method_line, T->out.name);
    }
    return ML_OK;
}

ml_status ml_merge_plan_check(ml_merge_plan *p) {
    ml_merge_in_params *in = calloc((size_t)p->max_refs + 1, sizeof *in);
    if (!in) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_merge_shared_params sh;
    ml_status s = ML_OK;
    for (int i = 0; i < p->n_tensors && s == ML_OK; i++) s = resolve_tensor(p, &p->t[i], in, &sh);
    free(in);
    return s;
}

/* ------------------------------------------------------------------ the merge loop */

static ml_status read_ref(ml_merge_plan *p, const mref *ref, const ml_param *shape, float *out, uint64_t *bytes) {
    minput *in = &p->in[ref->model];
    if (in->mem) {
        for (int i = 0; i < in->n_table; i++)
            if (!strcmp(in->table[i].name, ref->name)) {
                memcpy(out, in->mem + in->table[i].offset, shape->numel * sizeof(float));
                return ML_OK;
            }
        return ml_fail(ML_ERR_FORMAT, "%s has no tensor %s", in->path, ref->name);
    }
    if (in->hf) {
        const ml_st_tensor *t = ml_safetensors_dir_find(in->st, ref->name, NULL);
        *bytes += t ? (uint64_t)(t->end - t->begin) : 0;
        return ml_safetensors_dir_read_f32(in->st, ref->name, out, shape->numel);
    }
    char path[160];
    snprintf(path, sizeof path, ML_CKPT_PARAMS_GROUP "/%s", ref->name);
    *bytes += shape->numel * sizeof(float);
    return ml_h5_read_f32(in->h5, path, shape->ndim, shape->shape, out);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef ml_status (*sink_fn)(void *ctx, const mtensor *T, float *data);

static ml_status run(ml_merge_plan *p, sink_fn sink, void *ctx, ml_merge_progress_fn progress, void *user) {
    const int nb = p->max_refs;
    const size_t cap = (size_t)p->max_numel;
    float **buf = calloc((size_t)nb, sizeof *buf);
    float *out = ml_aligned_calloc(cap * sizeof(float));
    ml_merge_in_params *in = calloc((size_t)nb, sizeof *in);
    ml_status s = buf && out && in ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nb && s == ML_OK; i++)
        if (!(buf[i] = ml_aligned_calloc(cap * sizeof(float))))
            s = ml_fail(ML_ERR_NOMEM, "out of memory for %d buffers of %zu floats", nb, cap);
    uint64_t bytes = 0;
    for (int ti = 0; ti < p->n_tensors && s == ML_OK; ti++) {
        const mtensor *T = &p->t[ti];
        const size_t len = T->out.numel;
        ml_merge_shared_params sh;
        s = resolve_tensor(p, T, in, &sh);
        for (int j = 0; j < T->n && s == ML_OK; j++) s = read_ref(p, &T->refs[j], &T->out, buf[j], &bytes);
        if (s != ML_OK) break;
        switch (p->r->method) {
        case ML_MERGE_LINEAR: {
            double w[64];
            for (int j = 0; j < T->n && j < 64; j++) w[j] = in[j].weight;
            ml_merge_linear(out, (const float *const *)buf, w, T->n, len, sh.normalize);
            break;
        }
        case ML_MERGE_SLERP: ml_merge_slerp(out, buf[T->base], buf[1 - T->base], len, sh.t); break;
        default:
            s = ml_merge_task(p->r->method, out, buf, T->n, T->base, in, &sh, len,
                              p->r->seed * 0x9E3779B97F4A7C15ull ^ fnv1a(T->out.name));
        }
        if (s == ML_OK) s = sink(ctx, T, out);
        if (s == ML_OK && progress) progress(user, ti + 1, p->n_tensors, T->out.name, bytes);
    }
    for (int i = 0; buf && i < nb; i++) free(buf[i]);
    free(buf);
    free(out);
    free(in);
    return s;
}

/* ------------------------------------------------------------------ output: native checkpoint */

static const char *out_dtype_st(const ml_merge_plan *p) {
    const char *d = p->r->out_dtype;
    if (!strcmp(d, "bfloat16")) return "BF16";
    if (!strcmp(d, "float16")) return "F16";
    if (!strcmp(d, "float32")) return "F32";
    return p->in[0].dtype; /* unspecified: the (first) base's dtype */
}

static void round_to(float *x, size_t n, const char *dtype) {
    if (!strcmp(dtype, "BF16"))
        for (size_t i = 0; i < n; i++) x[i] = ml_bf16_to_f32(ml_f32_to_bf16(x[i]));
    else if (!strcmp(dtype, "F16"))
        for (size_t i = 0; i < n; i++) x[i] = ml_f16_to_f32(ml_f32_to_f16(x[i]));
}

typedef struct {
    ml_h5 *f;
    const char *dtype;
} h5_sink;

static ml_status h5_put(void *ctx, const mtensor *T, float *data) {
    h5_sink *k = ctx;
    round_to(data, T->out.numel, k->dtype);
    char path[160];
    snprintf(path, sizeof path, ML_CKPT_PARAMS_GROUP "/%s", T->out.name);
    return ml_h5_write_f32(k->f, path, T->out.ndim, T->out.shape, data, NULL);
}

static ml_status write_native(ml_merge_plan *p, const char *out, ml_merge_progress_fn progress, void *user) {
    ml_atomic_file af;
    ML_TRY(ml_atomic_begin(&af, out, 0));
    h5_sink k = {NULL, out_dtype_st(p)};
    ml_status s = ml_h5_create(&k.f, af.tmp_path);
    if (s == ML_OK) s = ml_checkpoint_write_header(k.f, &p->cfg, strcmp(k.dtype, "F32") ? k.dtype : NULL);
    if (s == ML_OK) s = ml_h5_set_attr_str(k.f, "/", "merge_recipe", p->r->text ? p->r->text : "");
    if (s == ML_OK) s = ml_h5_set_attr_str(k.f, "/", "merge_method", ml_merge_method_name(p->r->method));
    if (s == ML_OK) s = run(p, h5_put, &k, progress, user);
    ml_status c = k.f ? ml_h5_close(k.f) : ML_OK;
    if (s == ML_OK) s = c;
    if (s != ML_OK) {
        ml_atomic_abort(&af);
        return ml_fail_context(s, "writing %s", out);
    }
    return ml_atomic_commit(&af);
}

/* ------------------------------------------------------------------ output: Hugging Face directory */

typedef struct {
    FILE *fp;
    ml_st_dtype dt;
    uint16_t *half;
} st_sink;

#define HALF_CHUNK 65536

static ml_status st_put(void *ctx, const mtensor *T, float *data) {
    st_sink *k = ctx;
    size_t n = T->out.numel;
    if (k->dt == ML_ST_F32) {
        if (fwrite(data, sizeof(float), n, k->fp) != n) return ml_fail(ML_ERR_IO, "write failed: %s", strerror(errno));
        return ML_OK;
    }
    for (size_t i = 0; i < n; i += HALF_CHUNK) {
        size_t c = n - i < HALF_CHUNK ? n - i : HALF_CHUNK;
        if (k->dt == ML_ST_BF16) ml_f32_to_bf16_n(k->half, data + i, c);
        else ml_f32_to_f16_n(k->half, data + i, c);
        if (fwrite(k->half, sizeof(uint16_t), c, k->fp) != c) return ml_fail(ML_ERR_IO, "write failed: %s", strerror(errno));
    }
    return ML_OK;
}

static ml_status write_text(const char *dir, const char *name, const char *text, size_t len) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ml_atomic_file af;
    ML_TRY(ml_atomic_begin(&af, path, 1));
    if (fwrite(text, 1, len, af.fp) != len) {
        ml_atomic_abort(&af);
        return ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return ml_atomic_commit(&af);
}

static ml_status st_header(const ml_merge_plan *p, ml_st_dtype dt, char **hdr, size_t *len) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddStringToObject(meta, "merge_recipe", p->r->text ? p->r->text : "");
    uint64_t off = 0, esz = (uint64_t)ml_st_dtype_bits(dt) / 8;
    for (int i = 0; i < p->n_tensors; i++) {
        const ml_param *q = &p->t[i].out;
        cJSON *t = cJSON_AddObjectToObject(root, q->name), *shape = cJSON_AddArrayToObject(t, "shape"),
              *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddStringToObject(t, "dtype", ml_st_dtype_name(dt));
        for (int d = 0; d < q->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)q->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += q->numel * esz;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!js) return ml_fail(ML_ERR_NOMEM, "out of memory for the safetensors header");
    size_t n = strlen(js), padded = (n + 7) / 8 * 8;
    char *h = malloc(8 + padded);
    if (!h) {
        free(js);
        return ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    for (int b = 0; b < 8; b++) h[b] = (char)(((uint64_t)padded >> (8 * b)) & 0xff);
    memcpy(h + 8, js, n);
    memset(h + 8 + n, ' ', padded - n);
    free(js);
    *hdr = h;
    *len = 8 + padded;
    return ML_OK;
}

/* A sharded checkpoint written earlier into the same directory would shadow or confuse the new single
 * file: remove its index and shards. */
static void remove_stale_shards(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    DIR *dh = opendir(dir);
    if (!dh) return;
    struct dirent *e;
    while ((e = readdir(dh))) {
        int a, b;
        char tail[32];
        if (sscanf(e->d_name, "model-%d-of-%d.%31s", &a, &b, tail) == 3 && !strcmp(tail, "safetensors")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(dh);
}

static ml_status write_hf(ml_merge_plan *p, const char *dir, ml_merge_progress_fn progress, void *user) {
    if (p->cfg.layer_repeat != 1)
        return ml_fail(ML_ERR_UNSUPPORTED, "a layer-shared model cannot be written as a Hugging Face directory here: "
                                           "merge into a .h5 and use `mobilellm export`");
    const char *dname = out_dtype_st(p);
    ml_st_dtype dt = !strcmp(dname, "BF16") ? ML_ST_BF16 : !strcmp(dname, "F16") ? ML_ST_F16 : ML_ST_F32;
    struct stat sb;
    int created = 0;
    if (stat(dir, &sb) != 0) {
        if (mkdir(dir, 0777) != 0) return ml_fail(ML_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
        created = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return ml_fail(ML_ERR_ARG, "%s exists and is not a directory (--format hf writes a directory)", dir);
    }
    char *hdr = NULL, *cfg_json = NULL;
    size_t hlen = 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ml_atomic_file af;
    memset(&af, 0, sizeof af);
    st_sink k = {NULL, dt, malloc(HALF_CHUNK * sizeof(uint16_t))};
    ml_status s = k.half ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory");
    if (s == ML_OK) s = st_header(p, dt, &hdr, &hlen);
    if (s == ML_OK) s = ml_atomic_begin(&af, path, 1);
    if (s == ML_OK) {
        k.fp = af.fp;
        if (fwrite(hdr, 1, hlen, af.fp) != hlen) s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    if (s == ML_OK) s = run(p, st_put, &k, progress, user);
    if (s == ML_OK) s = ml_atomic_commit(&af);
    else if (af.tmp_path[0]) ml_atomic_abort(&af);
    if (s == ML_OK) remove_stale_shards(dir);
    if (s == ML_OK) s = ml_config_to_json(&p->cfg, &cfg_json);
    if (s == ML_OK) s = write_text(dir, "config.json", cfg_json, strlen(cfg_json));
    if (s == ML_OK) {
        char gen[256];
        int n = snprintf(gen, sizeof gen, "{\n  \"_from_model_config\": true");
        if (p->cfg.bos_token_id >= 0) n += snprintf(gen + n, sizeof gen - n, ",\n  \"bos_token_id\": %d", p->cfg.bos_token_id);
        if (p->cfg.eos_token_id >= 0) n += snprintf(gen + n, sizeof gen - n, ",\n  \"eos_token_id\": %d", p->cfg.eos_token_id);
        n += snprintf(gen + n, sizeof gen - n, "\n}\n");
        s = write_text(dir, "generation_config.json", gen, (size_t)n);
    }
    if (s == ML_OK && p->r->text) s = write_text(dir, "mergekit_config.yml", p->r->text, strlen(p->r->text));
    /* the tokenizer of the first Hugging Face input that has one (all inputs share it) */
    static const char *const tok_files[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                            "special_tokens_map.json"};
    for (int i = 0; s == ML_OK && i < p->n_in; i++) {
        if (!p->in[i].hf) continue;
        int any = 0;
        for (int f = 0; f < 4 && s == ML_OK; f++) {
            char src[1200], *data = NULL;
            size_t len = 0;
            snprintf(src, sizeof src, "%s/%s", p->in[i].path, tok_files[f]);
            if (access(src, R_OK)) continue;
            s = ml_read_file(src, &data, &len);
            if (s == ML_OK) s = write_text(dir, tok_files[f], data, len);
            free(data);
            any = 1;
        }
        if (any) break;
    }
    free(hdr);
    free(cfg_json);
    free(k.half);
    if (s != ML_OK) {
        static const char *const all[] = {"model.safetensors", "config.json", "generation_config.json", "mergekit_config.yml",
                                          "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"};
        if (created) {
            for (size_t f = 0; f < sizeof all / sizeof *all; f++) {
                snprintf(path, sizeof path, "%s/%s", dir, all[f]);
                unlink(path);
            }
            rmdir(dir);
        }
        return ml_fail_context(s, "writing %s", dir);
    }
    return ML_OK;
}

ml_status ml_merge_write(ml_merge_plan *p, const char *out, int hf, ml_merge_progress_fn progress, void *user) {
    return hf ? write_hf(p, out, progress, user) : write_native(p, out, progress, user);
}

/* ------------------------------------------------------------------ in memory */

ml_status ml_merge_plan_preload(ml_merge_plan *p) {
    for (int i = 0; i < p->n_in; i++) {
        minput *in = &p->in[i];
        if (in->mem) continue;
        ML_TRY(ml_model_param_table(&in->cfg, &in->table, &in->n_table));
        size_t total = 0;
        for (int t = 0; t < in->n_table; t++) total = in->table[t].offset + in->table[t].numel;
        in->mem = ml_aligned_calloc(total * sizeof(float));
        if (!in->mem) return ml_fail(ML_ERR_NOMEM, "out of memory preloading %s", in->path);
        uint64_t bytes = 0;
        for (int t = 0; t < in->n_table; t++) {
            mref ref = {i, 0, ""};
            snprintf(ref.name, sizeof ref.name, "%s", in->table[t].name);
            float *dst = in->mem + in->table[t].offset;
            in->mem = NULL; /* read from the file */
            ml_status s = read_ref(p, &ref, &in->table[t], dst, &bytes);
            in->mem = dst - in->table[t].offset;
            if (s != ML_OK) return ml_fail_context(s, "preloading %s", in->path);
        }
        input_close(in);
    }
    return ML_OK;
}

static ml_status model_put(void *ctx, const mtensor *T, float *data) {
    ml_model *m = ctx;
    const ml_param *q = ml_model_find_param(m, T->out.name);
    if (!q || q->numel != T->out.numel) return ml_fail(ML_ERR_ARG, "the model has no tensor %s of this shape", T->out.name);
    memcpy(ml_param_data(m, q), data, q->numel * sizeof(float));
    return ML_OK;
}

ml_status ml_merge_into_model(ml_merge_plan *p, ml_model *m) { return run(p, model_put, m, NULL, NULL); }
