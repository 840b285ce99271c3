/* The MobileLLM network: parameter table (HF names), weights/gradients arenas, activations,
 * forward, the fused LM-head loss, and backward. One code path serves every variant
 * (v1, layer sharing, R1 QK-norm/adjacent RoPE, Pro sliding windows), and one block forward
 * (model/block.h) serves training, evaluation, teachers and the KV-cached decoder (model/decoder.h).
 * Every linear layer and the embedding compute through model/linear.h (precision, weight transforms). */
#ifndef ML_MODEL_H
#define ML_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/status.h"
#include "model/config.h"
#include "model/ops/gemm.h"
#include "model/ops/ops.h"

typedef enum {
    ML_P_EMBED = 0,   /* model.embed_tokens.weight [V, C] */
    ML_P_ATTN_NORM,   /* model.layers.i.input_layernorm.weight [C] */
    ML_P_WQ,          /* model.layers.i.self_attn.q_proj.weight [H*hd, C] */
    ML_P_WK,          /* ... k_proj [KV*hd, C] */
    ML_P_WV,          /* ... v_proj [KV*hd, C] */
    ML_P_WO,          /* ... o_proj [C, H*hd] */
    ML_P_MLP_NORM,    /* model.layers.i.post_attention_layernorm.weight [C] */
    ML_P_WGATE,       /* model.layers.i.mlp.gate_proj.weight [F, C] (llama4_text: feed_forward.) */
    ML_P_WUP,         /* ... up_proj [F, C] */
    ML_P_WDOWN,       /* ... down_proj [C, F] */
    ML_P_FINAL_NORM,  /* model.norm.weight [C] */
    ML_P_LM_HEAD,     /* lm_head.weight [V, C], only when not tied */
    ML_P_AUX,         /* a trainable tensor the network does not read directly: it belongs to a weight transform
                         (e.g. quant/'s learned quantization scales, "<matrix>_fake_quantizer.scale"); trained,
                         clipped, optimized and checkpointed like any parameter (ml_model_add_aux_param) */
} ml_param_kind;

typedef struct {
    char name[96];     /* Hugging Face name in the config's dialect */
    ml_param_kind kind;
    int layer;         /* block index, -1 outside blocks */
    int ndim;
    int64_t shape[2];
    size_t numel;
    size_t offset;     /* in floats, identical in the parameter and gradient arenas */
    int weight_decay;  /* 1 for matrices and the embedding, 0 for norms */
} ml_param;

/* Pointers to every tensor of one set (weights, or their gradients). */
typedef struct {
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    struct {
        float *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *wgate, *wup, *wdown;
    } layer[ML_MAX_LAYERS];
} ml_tensors;

/* One batch: B rows of T tokens. targets[i] < 0 means "no loss here". pos and doc are optional:
 * pos NULL means positions 0..T-1 in each row; doc NULL means no document mask (causal across
 * documents). With doc, a token attends only to earlier tokens of the same document id. */
typedef struct {
    const int32_t *tokens;  /* [B*T] */
    const int32_t *targets; /* [B*T] or NULL (forward only) */
    const int32_t *pos;     /* [B*T] or NULL */
    const int32_t *doc;     /* [B*T] or NULL */
    int B, T;
} ml_batch;

/* Saved activations of one block application. */
typedef struct {
    float *resid_in;  /* [BT, C] block input */
    float *ln1, *rstd1;
    float *q, *k, *v; /* after RoPE and QK-norm: [BT, H*hd], [BT, KV*hd] */
    float *q_rstd, *k_rstd; /* QK-norm reciprocal RMS per (token, head), NULL without QK-norm */
    float *att;       /* attention output before o_proj [BT, H*hd] */
    float *lse;       /* log-sum-exp per (b, h, t) row [B*H*T] */
    float *resid_mid; /* after the attention residual [BT, C] */
    float *ln2, *rstd2;
    float *gate, *up; /* [BT, F] */
    /* With bf16 activations (ml_model.act16) the norms' outputs (read only by products) and gate and up (read only
     * by SwiGLU) are kept as bf16 bits here instead, and ln1, ln2, gate, up are NULL; otherwise these are NULL. */
    uint16_t *ln1_16, *ln2_16, *gate16, *up16;
} ml_block_acts;

/* Arithmetic of the model's GEMMs. fp32: OpenBLAS sgemm. bf16: every linear layer (q/k/v/o, gate/up/down
 * and the LM head, forward and both backward products) may run on bf16-rounded inputs with fp32 accumulation,
 * on the GEMM engine the dispatcher picks per product (model/ops/gemm.h: our AVX512-BF16 kernel, oneDNN, or
 * sgemm where neither wins) or the one forced by ml_model_set_gemm_engine. Attention's tile products run on
 * bf16-rounded operands too (AMX or AVX512-BF16, ml_attn_kernel_resolve), its softmax in fp32. Weights, gradients,
 * optimizer state, norms, RoPE, SwiGLU and the softmax compute in fp32; some saved activations are kept as bf16
 * (act16 below). In either precision, the forward of a product whose
 * weight and input transforms have integer forms (QAT with --act) may run on the int8 engine (model/ops/gemm.h). */
typedef enum { ML_PRECISION_FP32 = 0, ML_PRECISION_BF16 = 1 } ml_precision;
ml_status ml_precision_parse(const char *name, ml_precision *p);
const char *ml_precision_name(ml_precision p);

typedef struct ml_weight_transform ml_weight_transform; /* model/linear.h */
typedef struct ml_act_transform ml_act_transform;       /* model/linear.h */
struct ml_model;

/* An observer of the backward products (per-sample gradient statistics, mix/influence.h): called by
 * ml_linear_backward with the matrix `kind` of block `layer`, its output gradient dy [N, out] and input
 * x [N, in] (for the LM head: one chunk of rows, x pointing into ln_f), and by ml_embed_backward with
 * kind ML_P_EMBED, dy = the embedding output's gradient [N, C], x = NULL and the tokens. Before the
 * product; it must not change the model. */
typedef void (*ml_backward_observer)(void *ctx, const struct ml_model *m, ml_param_kind kind, int layer, const float *dy,
                                     const float *x, const int32_t *tokens, int N);

typedef struct ml_model {
    ml_config cfg;
    ml_precision precision; /* fp32 unless ml_model_set_precision says otherwise */
    ml_gemm_engine gemm_request; /* as asked (ml_model_set_gemm_engine; AUTO by default) */
    ml_gemm_engine gemm_engine;  /* resolved for the precision (ML_GEMM_ENGINE applied): the bf16 products' engine */
    ml_attn_kernel attn_kernel;  /* attention's tile products: fp32, or a bf16 kernel in bf16 precision (ml_attn_kernel_resolve) */
    /* bf16 bits of the used weight matrices at their parameter-arena offsets, for engines that multiply bf16
     * operands (oneDNN; ml_gemm_reads_bf16_copies): refreshed with the used copies, once per change of the weights
     * (ml_model_weights_changed), instead of converting each weight in every product. NULL when unused. */
    uint16_t *w16;
    size_t w16_numel;
    /* bf16 activations: in bf16 precision with bf16 weight copies and no activation transforms, the saved
     * activations that feed only products (the blocks' norm outputs) or SwiGLU (gate, up, written as bf16 by their
     * products) are kept as bf16 (ml_block_acts.ln1_16, ...): half their memory, no rounding of the norm outputs in
     * each of their five products, half the bytes SwiGLU reads. SwiGLU's output h (ffn_h, recomputed in backward)
     * is written as bf16 too: only the down projection's products read it. The values that pass only between
     * products and SwiGLU or the cross-entropy in backward are bf16 too: SwiGLU's input gradient dh (written as bf16
     * by the down projection's dX product) and its two output gradients, the head's logits and their gradient
     * (without an observer), as PyTorch's bf16 autocast keeps them. Set by ml_model_reserve (ml_model_sync_act16
     * re-plans the activations when precision, engine or transforms change it). */
    int act16;
    char source_dtype[8]; /* dtype of imported weights ("BF16", ...; "" = trained here, fp32), kept so an
                             export reproduces them bit for bit */
    int n_params;
    ml_param *params;
    size_t num_floats; /* total parameter floats */
    ml_arena param_arena, grad_arena;
    ml_tensors w, g;
    /* [n_params]: 1 for a gradient that ml_model_zero_grad left to its first product to write (ml_model_grad_accumulates) */
    uint8_t *grad_unwritten;
    /* The weights the network computes with: w, except for tensors with a weight transform
     * (model/linear.h), whose transformed copies live in used_arena at the parameter's offset. */
    ml_tensors u;
    ml_arena used_arena;
    const ml_weight_transform **transforms; /* [n_params] or NULL when none is set */
    int weights_stale;                      /* the used copies need refreshing before the next forward */
    int w16_current;                        /* w16 holds the rounding of the weights as they are (an optimizer step
                                             * wrote it: ml_model_weights_stepped), so a refresh skips it */
    /* Activation transforms (model/linear.h): the input of a product with matrix i goes through
     * act_transforms[i] first. act_scratch holds the transformed input (and the masked input gradient). */
    const ml_act_transform **act_transforms; /* [n_params] or NULL */
    float *act_scratch;
    size_t act_scratch_rows, act_scratch_cols;
    /* The int8 engine's operands (model/ops/gemm_int8.h, model/linear.h) when it computes the forwards of products
     * whose weight and input transforms both have integer forms (ml_gemm_int8_forward): w8[i] is parameter i's
     * packed codes (N = 0: no integer product), refreshed with the used copies; x8 the input's codes. */
    struct ml_int8_matrix_s *w8;
    void *w8_mem;
    int8_t *w8_codes; /* refresh scratch per thread: one panel's codes and scales */
    float *w8_scales;
    size_t w8_panel_bytes, w8_panel_scales;
    int w8_threads;
    uint8_t *x8;
    float *x8_scale;
    int32_t *x8_offset;
    size_t x8_rows;
    uint64_t w8_plan; /* what the current plan was made for (ml_model_int8_plan) */
    /* Owner of the transforms' state (quant/ sets it): released by ml_model_free. */
    void *transform_owner;
    void (*transform_owner_free)(void *owner);
    /* The quantization recipe (quant/quant.h, e.g. "scheme=q4_0 embedding=none act=none"), "" = none. The model
     * only carries it: the checkpoint stores it (attribute `quant`) and loading for use installs it. */
    char quant[128];
    ml_backward_observer observer;          /* NULL: none (see ml_backward_observer) */
    void *observer_ctx;

    /* activations, sized for B*T tokens by ml_model_reserve */
    int recompute; /* set before ml_model_reserve: keep only each block's input, and let backward re-run the
                      block's forward (about a third more FLOPs for a fraction of the activation memory) */
    int B, T;
    ml_arena act_arena;
    size_t act_saved_floats;   /* the part of act_arena that forward keeps for backward (per-block acts, final
                                  residual and norm); the rest is gradient scratch, the LM-head chunk, RoPE tables */
    ml_block_acts *acts;       /* [num_layers * layer_repeat] */
    float *resid_final;        /* [BT, C] output of the last block */
    float *ln_f, *rstd_f;      /* final norm output and its rstd */
    float *d_resid, *d_resid2, *d_ln, *d_q, *d_k, *d_v, *d_att, *d_gate, *d_up, *ffn_h;
    float *d_ln_f;             /* gradient of the final-norm output (from the LM head) */
    float *head_scratch;       /* [chunk, V] logits of the fused head, then 2 * chunk per-row floats */
    int head_chunk;
    float *rope_cos, *rope_sin; /* [rope_len, hd/2] */
    float *attn_work;           /* attention scratch (ml_attention_work_floats), sized at reserve */
    int rope_len;
    const ml_batch *last_batch;
    /* Optional hook of ml_model_backward, told when gradients become final so that a caller can start
     * reducing them while backward goes on (data-parallel training). Called with num_layers once the
     * final norm's gradient is done (the untied LM head's is done by the head before backward), then with
     * block l once the last (in backward order) application of block l is done, l = num_layers-1 .. 0,
     * and with -1 after the embedding, when every gradient is final. Runs on the calling thread. NULL: none. */
    void (*grad_ready)(void *user, int layer);
    void *grad_ready_user;
} ml_model;

/* Choose the GEMM arithmetic. bf16 runs on any CPU: where no bf16 engine wins, its products are sgemm's.
 * Fails (one line) when the engine asked for earlier cannot serve it (see ml_gemm_engine_resolve). */
ml_status ml_model_set_precision(ml_model *m, ml_precision p);
/* Force the engine of the bf16 products (ML_GEMM_AUTO: per product, or ML_GEMM_ENGINE's); fails with one line
 * for an engine this machine lacks or a bf16 engine with fp32 precision. Set the precision first. */
ml_status ml_model_set_gemm_engine(ml_model *m, ml_gemm_engine e);

/* Build the parameter table and allocate weights and gradients (zeroed). */
ml_status ml_model_create(ml_model *m, const ml_config *cfg);
void ml_model_free(ml_model *m);
/* The parameter table alone (names, kinds, layers, shapes; offsets as in the arena), allocating no
 * weights: for tools that stream tensors one at a time (merge). *params is malloc'd. */
ml_status ml_model_param_table(const ml_config *cfg, ml_param **params, int *n_params);
/* MobileLLM initialisation: N(0, initializer_range) for matrices and embedding, ones for norms. */
void ml_model_init_weights(ml_model *m, uint64_t seed);
/* Allocate activations for up to B rows of T tokens, positions below max_pos. */
ml_status ml_model_reserve(ml_model *m, int B, int T, int max_pos);
/* Re-plan reserved activations when whether they are kept in bf16 (act16) changed with the precision, the GEMM
 * engine or the activation transforms (their setters call it). */
ml_status ml_model_sync_act16(ml_model *m);

const ml_param *ml_model_find_param(const ml_model *m, const char *name);
/* Where parameter p's pointer lives in a tensor set (NULL for auxiliary parameters). */
float **ml_tensors_slot(ml_tensors *t, const ml_param *p);
/* Append an auxiliary trainable tensor (kind ML_P_AUX, zero-filled, gradient zero) after the network's
 * tensors; the parameter and gradient arenas grow (pointers into them change: call before creating an
 * optimizer or reserving a decoder). *index receives its position in the parameter table. */
ml_status ml_model_add_aux_param(ml_model *m, const char *name, int ndim, const int64_t *shape, int weight_decay,
                                 int *index);
static inline float *ml_param_data(const ml_model *m, const ml_param *p) { return m->param_arena.base + p->offset; }
static inline float *ml_param_grad(const ml_model *m, const ml_param *p) { return m->grad_arena.base + p->offset; }

/* Forward through the blocks and the final norm, keeping what backward needs. */
ml_status ml_model_forward(ml_model *m, const ml_batch *b);
/* Fused LM head + softmax cross-entropy, chunked over tokens so [B,T,V] never exists. With bf16 activations
 * (act16) the logits and their gradient are bf16 bits, the loss and softmax computed in fp32 from them.
 * Returns the summed loss and the count of scored tokens. With grad_scale != 0 it also writes
 * d_ln_f and accumulates the LM-head gradient, each scaled by grad_scale (pass 1/count for a
 * mean; divide further for gradient accumulation). */
ml_status ml_model_head_loss(ml_model *m, const ml_batch *b, float grad_scale, double *loss_sum, int64_t *count);
/* The loss a fused head applies to each chunk of logits: `logits` [rows, V] holds the logits of
 * tokens [row0, row0 + rows) of the batch; the function writes each row's loss to losses[rows]
 * and, when grad_scale != 0, overwrites logits with grad_scale * d loss / d logits. Rows whose
 * target is < 0 must get zero loss and gradient. Cross-entropy is one such function;
 * distillation (distill/) supplies others. */
typedef void (*ml_head_loss_fn)(void *ctx, float *logits, float *losses, const int32_t *targets, int row0, int rows,
                                int V, float grad_scale);
ml_status ml_model_head_custom(ml_model *m, const ml_batch *b, ml_head_loss_fn fn, void *ctx, float grad_scale,
                               double *loss_sum, int64_t *count);

/* Backward from d_ln_f to every parameter gradient (accumulating). */
ml_status ml_model_backward(ml_model *m, const ml_batch *b);
/* Zero every gradient for the next head and backward. Where the products' engine writes as fast as it adds
 * (ml_gemm_overwrite_pays), the linear layers' matrices (and a tied embedding) are not touched here: the first
 * product that computes each one's gradient writes it instead of adding to it, which saves a pass over the gradients
 * and those products' reads of them. Until ml_model_backward returns (it zeroes any such gradient that nothing
 * wrote) their memory may hold the old values: read gradients after backward. */
void ml_model_zero_grad(ml_model *m);
/* For a product about to compute parameter i's gradient: 1 when it adds to the gradient's memory, 0 when it is to
 * overwrite it (the first since ml_model_zero_grad). Either way the gradient's memory holds its value afterwards. */
int ml_model_grad_accumulates(ml_model *m, int i);
/* Full logits [B*T, V] for inference / checks (after ml_model_forward). */
ml_status ml_model_logits(ml_model *m, const ml_batch *b, float *logits);

#endif
