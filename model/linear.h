/* The one call through which every linear layer and the embedding of a model compute: it applies the
 * model's precision (fp32 sgemm, or in bf16 the GEMM engine of model/ops/gemm.h) and, per tensor, an optional weight transform.
 *
 * A weight transform (fake quantization, ...) maps a latent weight to the weight the network computes
 * with. Its forward fills the "used" copy once per change of the weights (ml_model_weights_changed),
 * not once per product. Backward products read the used weight and accumulate the gradient with
 * respect to it; ml_model_grads_to_latent then applies each transform's backward once per optimizer
 * step, turning that gradient into the latent weight's (a straight-through estimator is the identity,
 * a clipped one zeroes where the grid clips). Gradients are linear in the loss, so applying it after
 * gradient accumulation and layer sharing is the same as applying it per product. */
#ifndef ML_MODEL_LINEAR_H
#define ML_MODEL_LINEAR_H

#include <stdint.h>

#include "model/model.h"

struct ml_weight_transform {
    const char *name;
    /* used[numel] from latent[numel] of parameter p ([rows = shape[0], cols = shape[1]], row-major) */
    ml_status (*forward)(void *ctx, const ml_param *p, float *used, const float *latent);
    /* grad[numel]: d loss / d used on entry, d loss / d latent on return. NULL: straight through. */
    void (*backward)(void *ctx, const ml_param *p, float *grad, const float *latent);
    void *ctx;
    /* Optional integer form, for the int8 engine (model/ops/gemm.h); NULL: none. int8_group: columns per scale of
     * p's used weight when it sits on an integer grid (0: it does not); int8_codes: the s8 codes [r1 - r0, cols] and
     * scales [r1 - r0, cols / group] of rows r0 .. r1 - 1, code * scale equal to the used value (called from inside
     * the model's parallel loop: no parallel region of its own). */
    int (*int8_group)(void *ctx, const ml_param *p);
    void (*int8_codes)(void *ctx, const ml_param *p, int8_t *codes, float *scales, const float *latent, int64_t r0,
                       int64_t r1);
};

/* An activation transform (fake quantization of a linear layer's input, e.g. the dynamic int8 of
 * ExecuTorch's 8da4w or llama.cpp's Q8_0 rounding of activations before a quantized product) maps the
 * input x[N, in] of a product with matrix p to the xq the product computes with. Forward and backward
 * both recompute xq from the saved x (nothing extra is kept): dW += dy^T xq, and the input gradient
 * dy W goes through `backward`, which zeroes it where the grid clipped x (NULL: straight through). */
struct ml_act_transform {
    const char *name;
    void (*forward)(void *ctx, const ml_param *p, float *xq, const float *x, int N, int in);
    void (*backward)(void *ctx, const ml_param *p, float *dx, const float *x, int N, int in);
    void *ctx;
    /* Optional integer form (NULL: none). int8_group: columns per scale of the transformed input of a product with
     * p (in: one scale per row; 0: no integer form); int8_codes: u8 codes u[N, in], scales [N, in / group] and a
     * per-row offset with (u - offset) * scale equal to what `forward` gives. */
    int (*int8_group)(void *ctx, const ml_param *p, int in);
    void (*int8_codes)(void *ctx, const ml_param *p, uint8_t *u, float *scales, int32_t *offset, const float *x, int N,
                       int in);
};

/* Install (or, with t = NULL, remove) the transform of one parameter matrix (the embedding included;
 * not norms). Allocates the used copy on first use; marks the weights changed. */
ml_status ml_model_set_transform(ml_model *m, const ml_param *p, const ml_weight_transform *t);
/* Install (or remove) the activation transform of the products with parameter matrix p (not the
 * embedding lookup). Scratch for the transformed inputs is sized by ml_model_reserve and
 * ml_model_act_scratch_reserve (the decoder calls it), never inside a step. */
ml_status ml_model_set_act_transform(ml_model *m, const ml_param *p, const ml_act_transform *t);
/* Make the activation scratch hold at least `rows` rows (no-op without activation transforms). */
ml_status ml_model_act_scratch_reserve(ml_model *m, size_t rows);
/* (Re)plan the int8 engine's operands for the current transforms, engine and scratch rows: the products whose
 * weight and input transforms have integer forms the kernel takes get packed codes when the engine computes
 * integer forwards (ml_gemm_int8_forward); otherwise they are released. Called by the setters and reserve. */
ml_status ml_model_int8_plan(ml_model *m);
/* Hand the transforms' state to the model: free_fn(owner) runs in ml_model_free (replacing a previous owner,
 * which is released first). */
void ml_model_set_transform_owner(ml_model *m, void *owner, void (*free_fn)(void *owner));
/* Re-point the used tensors after the parameter arena moved (ml_model_add_aux_param). */
void ml_model_rebind_used(ml_model *m);
/* The weights changed (optimizer step, load): the used copies are refreshed before the next forward. */
static inline void ml_model_weights_changed(ml_model *m) { m->weights_stale = 1, m->w16_current = 0; }
/* Where an optimizer step may write the bf16 copies of the weights as it updates them (ml_optim_step_mirrored over
 * the whole parameter array): the model's copies when they are the plain rounding of every weight at its offset, NULL
 * otherwise (no copies, or weight transforms between the weights and the copies). */
uint16_t *ml_model_bf16_mirror(const ml_model *m);
/* The weights changed by an optimizer step; mirrored: that step also wrote ml_model_bf16_mirror (then the refresh
 * before the next forward leaves the copies as they are). */
static inline void ml_model_weights_stepped(ml_model *m, int mirrored) {
    ml_model_weights_changed(m);
    m->w16_current = mirrored && ml_model_bf16_mirror(m);
}
/* Refresh the used copies now if the weights changed (the forward passes call it). */
ml_status ml_model_refresh_weights(ml_model *m);
/* Apply each transform's backward to the accumulated gradients (once per optimizer step). */
void ml_model_grads_to_latent(ml_model *m);

/* The engine of the model's products: sgemm in fp32; in bf16 the model's engine (AUTO: the dispatcher's choice per
 * shape). */
ml_gemm_engine ml_linear_engine(const ml_model *m);

/* y[N, out] = x[N, in] . W^T for the matrix `kind` of block `layer` (-1 outside blocks; ML_P_LM_HEAD is
 * the embedding when tied), with the used weight and the model's precision; on the int8 engine where the product has
 * packed codes (the same product up to fp32 rounding). */
void ml_linear_forward(const ml_model *m, ml_param_kind kind, int layer, float *y, const float *x, int N);
/* The same with the input given as fp32, bf16 bits (the model's bf16 activations, ml_model.act16) or both, compact
 * [N, in] (model/ops/gemm.h). */
void ml_linear_forward_in(const ml_model *m, ml_param_kind kind, int layer, float *y, ml_gemm_operand x, int N);
/* The same with y written as bf16 bits [N, out] (each fp32 sum rounded once): outputs only read as bf16. */
void ml_linear_forward_to_bf16(const ml_model *m, ml_param_kind kind, int layer, uint16_t *y16, ml_gemm_operand x,
                               int N);
/* dx[N, in] (= or += per accumulate_dx) dy . W and dW += dy^T . x (the gradient of the used weight).
 * dx may be NULL. */
void ml_linear_backward(ml_model *m, ml_param_kind kind, int layer, float *dx, const float *dy, const float *x, int N,
                        int accumulate_dx);
/* The same with dy [N, out] and x given as fp32, bf16 bits or both (a gradient only products read can be handed over
 * as bf16: both products read that one rounding). */
void ml_linear_backward_in(ml_model *m, ml_param_kind kind, int layer, float *dx, ml_gemm_operand dy,
                           ml_gemm_operand x, int N, int accumulate_dx);
/* The same with dx written as bf16 bits [N, in] (not accumulated): an input gradient read only as bf16 (SwiGLU's
 * with the model's bf16 activations). */
void ml_linear_backward_to_bf16(ml_model *m, ml_param_kind kind, int layer, uint16_t *dx16, ml_gemm_operand dy,
                                ml_gemm_operand x, int N);
/* out[N, C] = rows of the used embedding table; its backward accumulates into the table's gradient. */
void ml_embed_forward(const ml_model *m, float *out, const int32_t *tokens, int N);
void ml_embed_backward(ml_model *m, const float *dout, const int32_t *tokens, int N);

#endif
