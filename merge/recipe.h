/* Merge recipes in mergekit's YAML form (parsed with libyaml):
 *
 *   merge_method: ties              # linear task_arithmetic ties dare_linear dare_ties breadcrumbs
 *                                   # breadcrumbs_ties slerp
 *   base_model: base.h5             # a native checkpoint or a Hugging Face directory
 *   models:                         # or  slices: [{sources: [{model, layer_range: [a, b], parameters}],
 *     - model: math.h5              #                base_model, parameters}]
 *       parameters: {weight: 0.5, density: [0.2, 0.8]}
 *   parameters: {normalize: true, t: [{filter: self_attn, value: [0, 1]}, {value: 0.5}]}
 *   dtype: bfloat16                 # output dtype (float32, bfloat16, float16); out_dtype wins
 *   seed: 1                         # ours: the random methods' seed (default 0)
 *
 * A parameter is a scalar (number or boolean), a gradient (a list, interpolated over the layer index
 * of its slice as mergekit does) or a list of {filter, value} entries: the first entry whose filter is
 * absent, "*" or a substring of the tensor name gives the value. Precedence: the source's own
 * parameters, then the slice's, then the global ones; the first that resolves wins. */
#ifndef ML_MERGE_RECIPE_H
#define ML_MERGE_RECIPE_H

#include <stdint.h>

#include "common/status.h"

typedef enum { ML_MV_NUM = 0, ML_MV_BOOL, ML_MV_LIST, ML_MV_COND } ml_mval_kind;

/* A parameter setting. LIST: items are NUM/BOOL scalars (a gradient). COND: items are the entries'
 * values, each with its filter (NULL when absent). */
typedef struct ml_mval {
    ml_mval_kind kind;
    double num; /* NUM; BOOL as 0/1 */
    int n;
    struct ml_mval *items;
    char *filter;
    int line;
} ml_mval;

typedef struct {
    char name[32];
    ml_mval v;
} ml_mparam;

typedef struct {
    int n;
    ml_mparam *p;
} ml_mparams;

typedef struct {
    char *model;
    int layer0, layer1; /* [layer0, layer1); -1, -1 = every layer (the `models:` form) */
    ml_mparams params;
    int line;
} ml_msource;

typedef struct {
    int n_sources;
    ml_msource *sources;
    char *base_model; /* NULL: the recipe's */
    ml_mparams params;
    int line;
} ml_mslice;

typedef enum {
    ML_MERGE_LINEAR = 0,
    ML_MERGE_TASK_ARITHMETIC,
    ML_MERGE_TIES,
    ML_MERGE_DARE_LINEAR,
    ML_MERGE_DARE_TIES,
    ML_MERGE_BREADCRUMBS,
    ML_MERGE_BREADCRUMBS_TIES,
    ML_MERGE_SLERP,
    ML_MERGE_N_METHODS
} ml_merge_method;

typedef struct {
    char path[1024];      /* the recipe file (for messages) */
    char *text;           /* the YAML as read */
    int slices_form;      /* 0: `models:`, 1: `slices:` */
    int n_slices;         /* the `models:` form is one slice of whole models */
    ml_mslice *slices;
    ml_merge_method method;
    int method_line;
    char *base_model;
    int base_line;
    char out_dtype[16];   /* "float32", "bfloat16", "float16" or "" (float32) */
    ml_mparams params;
    uint64_t seed;
} ml_merge_recipe;

const char *ml_merge_method_name(ml_merge_method m);
/* -1 when unknown. */
int ml_merge_method_parse(const char *name);
/* Whether the method works on deltas from a base model (all but linear). */
int ml_merge_method_needs_base(ml_merge_method m);

/* Parse YAML text; `where` names the file in messages ("RECIPE:LINE: why"). */
ml_status ml_merge_recipe_parse(ml_merge_recipe *r, const char *text, const char *where);
ml_status ml_merge_recipe_load(ml_merge_recipe *r, const char *path);
void ml_merge_recipe_free(ml_merge_recipe *r);

/* Resolve `name` for `tensor` at gradient position t in [0, 1] from one parameter set. Returns 1 and
 * sets *out when it resolves, 0 when absent (or no filter matches). */
int ml_mparams_eval(const ml_mparams *ps, const char *name, const char *tensor, double t, double *out);
/* Set (add or replace) a scalar parameter. */
ml_status ml_mparams_set(ml_mparams *ps, const char *name, double value);

/* Write the recipe as YAML (mergekit's form) into a malloc'd string. */
ml_status ml_merge_recipe_to_yaml(const ml_merge_recipe *r, char **yaml);

#endif
