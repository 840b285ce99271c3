/* Optimizers over one contiguous parameter array: AdamW and SGD (with optional momentum), kept in
 * a registry (one row per kind in optimizer.c: name, the state tensors it keeps, its default
 * weight decay and how it applies it, its range check and its step). Adding an optimizer is one
 * row and one step function in optimizer.c; callers select it by name (ml_optim_kind_parse).
 *
 * The model keeps every parameter in one float array and every gradient in another with the same
 * layout. The optimizer sees only a list of segments (offset, length, whether weight decay
 * applies), so it does not depend on the model code. Its state (AdamW moments, SGD momentum
 * buffer) has the layout of the parameter array too: state[offset + i] belongs to
 * params[offset + i], so a checkpoint can slice it per tensor with the parameter table's offsets.
 * Elements outside every segment (arena padding) are never read or written.
 *
 * Arithmetic follows torch 1.13's single-tensor (foreach=False) kernels operation by operation,
 * including which steps torch fuses into an FMA on AVX2 CPUs: ten steps of torch.optim.AdamW /
 * torch.optim.SGD (Debian's torch 1.13) are reproduced bit for bit (tests/test_optim.c demands
 * 1e-6 relative). Updates are element-wise and the vector and scalar paths round identically, so
 * results do not depend on the thread count.
 * A step never allocates. */
#ifndef ML_OPTIMIZER_H
#define ML_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* One parameter tensor inside the flat array: params[offset .. offset+numel). */
typedef struct {
    size_t offset, numel;
    int weight_decay; /* 1: weight decay applies (matrices, embedding); 0: it does not (norms) */
} ml_optim_segment;

/* A kind is an index into the registry; the built-ins have names here for convenience. */
typedef enum {
    ML_OPTIM_ADAMW = 0,
    ML_OPTIM_SGD = 1,
} ml_optim_kind;

#define ML_OPTIM_MAX_STATE 4 /* state tensors an optimizer may keep */

/* Hyper-parameters are doubles because torch computes its per-step scalars (1 - lr*wd, bias
 * corrections) in double from the Python floats; storing them as doubles reproduces that. */
typedef struct {
    ml_optim_kind kind;
    double beta1, beta2, eps; /* AdamW */
    double weight_decay;      /* AdamW: decoupled, p *= 1 - lr*wd; SGD: L2 (coupled), g += wd*p, as torch */
    double momentum;          /* SGD only: 0 = plain SGD (no buffer); dampening 0, no Nesterov */
} ml_optim_config;

/* MobileLLM defaults. AdamW: betas (0.9, 0.95), eps 1e-8, weight decay 0.1 (decoupled).
 * SGD: momentum 0, weight decay 0 (L2 when set). */
ml_optim_config ml_optim_defaults(ml_optim_kind kind);

typedef struct ml_optimizer ml_optimizer;

/* One registry row. */
typedef struct {
    const char *name;                              /* "adamw", "sgd": the CLI's --optim and checkpoints */
    int n_state;                                   /* state tensors it may keep */
    const char *state_names[ML_OPTIM_MAX_STATE];   /* checkpoint group names (torch's state keys) */
    double default_weight_decay;                   /* applied when the user sets none */
    const char *weight_decay_kind;                 /* "decoupled" or "L2": how weight_decay applies */
    /* whether state tensor i is kept under this configuration (NULL: always) */
    int (*keeps_state)(const ml_optim_config *c, int i);
    ml_status (*check)(const ml_optim_config *c);  /* ranges of its own hyper-parameters */
    void (*step)(ml_optimizer *o, float *params, const float *grads, float lr); /* o->t already advanced */
} ml_optim_def;

/* The registry: kinds 0 .. ml_optim_num_kinds()-1. */
int ml_optim_num_kinds(void);
/* The row of a kind (NULL when out of range). */
const ml_optim_def *ml_optim_def_of(ml_optim_kind kind);
/* The row named `name`, or NULL. */
const ml_optim_def *ml_optim_find(const char *name, ml_optim_kind *kind);
/* "adamw, sgd": the registry's names, for messages and help. */
const char *ml_optim_names(void);

/* A registered name (exact, lower case); anything else is ML_ERR_ARG with the name in the message. */
ml_status ml_optim_kind_parse(const char *name, ml_optim_kind *out);
const char *ml_optim_kind_name(ml_optim_kind kind);

/* Check ranges: 0 <= beta < 1, eps >= 0, weight_decay >= 0, 0 <= momentum < 1, all finite. */
ml_status ml_optim_config_check(const ml_optim_config *cfg);

struct ml_optimizer {
    ml_optim_config cfg;
    ml_optim_segment *segs; /* own copy, sorted by offset */
    int n_segs;
    size_t num_floats;      /* length of the parameter, gradient and each state array */
    /* State arrays of num_floats floats each (NULL when unused), for checkpoints, in the order of
     * the registry row's state_names. AdamW: m = exp_avg, v = exp_avg_sq. SGD: m = momentum
     * buffer (NULL without momentum). */
    union {
        float *state[ML_OPTIM_MAX_STATE];
        struct {
            float *m, *v;
        };
    };
    /* Steps taken so far (torch's state["step"]); the next step uses t+1 for bias correction.
     * A checkpoint that restores m, v and t resumes bit-exactly. */
    int64_t t;
    float *owned;           /* the allocation behind the state when the optimizer made it */
    uint16_t *mirror16;     /* during ml_optim_step_mirrored only: where the step writes the bf16 parameters */
};

/* Floats of state this configuration needs for num_floats parameters (2n AdamW, n SGD with
 * momentum, 0 plain SGD), so the caller can reserve it in an arena. 0 for an unknown kind. */
size_t ml_optim_state_floats(const ml_optim_config *cfg, size_t num_floats);

/* Set up an optimizer for the given segments of a num_floats-long parameter array. state: NULL
 * to let the optimizer allocate (once, here), or caller memory of ml_optim_state_floats() floats
 * that must outlive the optimizer. The state is zeroed and t = 0. Segments must lie inside the
 * array and must not overlap (ML_ERR_ARG otherwise). */
ml_status ml_optim_create(ml_optimizer *o, const ml_optim_config *cfg, const ml_optim_segment *segs,
                          int n_segs, size_t num_floats, float *state);
void ml_optim_free(ml_optimizer *o);

/* Zero the state and the step counter (a fresh start with the same segments). */
void ml_optim_reset(ml_optimizer *o);

/* One update of params from grads (both num_floats long, same layout) with learning rate lr.
 * Increments t first (as torch does). Fails (ML_ERR_ARG, nothing changed) on a negative or
 * non-finite lr or NULL arrays. Non-finite gradients are not checked here: callers skip such
 * steps (see ml_all_finite in optim/clip.h). */
ml_status ml_optim_step(ml_optimizer *o, float *params, const float *grads, float lr);
/* The same, also writing each updated parameter's bf16 rounding (ml_bf16_bits) to mirror16[i] (the parameter layout;
 * NULL: none): a model's bf16 weight copies kept in the pass that updates the weights, instead of converting them all
 * again before the next forward. Elements outside the segments are not written. */
ml_status ml_optim_step_mirrored(ml_optimizer *o, float *params, const float *grads, float lr, uint16_t *mirror16);

/* The state tensors kept, for checkpoints: i in [0, ml_optim_num_state(o)). Each is num_floats
 * long with the parameter layout; *name is the registry's name for it ("exp_avg", "exp_avg_sq",
 * "momentum_buffer": torch's state keys). Returns NULL for i out of range. */
int ml_optim_num_state(const ml_optimizer *o);
float *ml_optim_state(const ml_optimizer *o, int i, const char **name);

/* The state names a configuration keeps, in order (what a checkpoint of it lists). Returns the count. */
int ml_optim_state_names(const ml_optim_config *cfg, const char **names);

#endif
