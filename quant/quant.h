/* Fake quantization for quantization-aware training (QAT) and post-training quantization (PTQ), as weight and
 * activation transforms plugged into the model's linear-layer call (model/linear.h). The latent fp32 weights are
 * what the optimizer trains; the network computes with their quantize-dequantize image.
 *
 * Weight grids (per matrix; blocks and groups run along a row, i.e. along the input dimension):
 *   q4_0            GGUF Q4_0 exactly as llama.cpp's quantize_row_q4_0_ref: blocks of 32, d = (signed value of
 *                   largest magnitude) / -8 stored as fp16, q = min(15, trunc(x/d + 8.5)), value (q - 8) * fp16(d).
 *                   The extreme lands on -8 exactly; values beyond +7.5 d on the other side clip to 7 d.
 *   q8_0            GGUF Q8_0 (quantize_row_q8_0_ref): blocks of 32, d = max|x| / 127 as fp16, q = roundf(x/d)
 *                   (half away from zero, with the fp32 d), value q * fp16(d). Never clips.
 *   int4-gG         torchao's symmetric group-wise int4 (IntxFakeQuantizeConfig(torch.int4, group_size=G),
 *                   Int8DynActInt4WeightQATQuantizer): s = max|x| / 7.5 per group of G (fp32, at least FLT_MIN),
 *                   q = clamp(round_half_even(x * (1/s)), -8, 7), value q * s. The group maximum maps to +-7.5:
 *                   a negative one rounds to -8 (exact), a positive one to 8 and clips to 7.
 *   int4-channel-lsq  per output row, value clamp(round_half_even(x * (1/s)), -8, 7) * s with a learned s
 *                   (torchao range_learning=True), initialised as max(max|row| / 7.5, 1e-9).
 *   int8 (embedding only)  torchao's symmetric per-row int8: s = max|row| / 127.5, q in [-128, 127].
 * Backward: the straight-through estimator, zero where the grid clipped (torchao's clamp after _Round); for the
 * learned scale the LSQ gradient d value / d s = q - x/s inside the grid, q (= -8 or 7) where clipped, summed over
 * the row (torchao's autograd, without LSQ's 1/sqrt(N Qp) gradient scaling).
 *
 * Activation grids (the input of every product whose matrix is quantized; model/linear.h):
 *   q8_0            llama.cpp's Q8_0 rounding of activations before a Q4_0 / Q8_0 product (ggml's x86
 *                   quantize_row_q8_0): blocks of 32, id = 127 / max|x|, q = round_half_even(x * id), value
 *                   q * fp16(max|x| / 127).
 *   int8-token      ExecuTorch's dynamic per-token asymmetric int8 (torchao PerToken, is_symmetric=False):
 *                   m = min(row, 0), M = max(row, 0), s = max((M - m) / 255, FLT_MIN), zp = clamp(-128 -
 *                   round(m / s), -128, 127), q = clamp(round(x * (1/s)) + zp, -128, 127), value (q - zp) * s.
 *   Straight-through backward, zero where clipped.
 *
 * A recipe (scheme for the linear layers, embedding grid, activation grid) is stored in a checkpoint as the model's
 * `quant` string ("scheme=q4_0 embedding=none act=none") next to the latent weights and any learned scales
 * (auxiliary parameters "<module>.weight_fake_quantizer.scale", torchao's names). With tied embeddings the one
 * table (lookup and head) gets the embedding grid; an untied lm_head is a linear layer. */
#ifndef ML_QUANT_H
#define ML_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/model.h"

typedef enum {
    ML_QW_NONE = 0,
    ML_QW_Q4_0,
    ML_QW_Q8_0,
    ML_QW_INT4_GROUP,   /* group = 32, 64, 128, 256 */
    ML_QW_INT4_LSQ,     /* per output row, learned scale */
    ML_QW_INT8_CHANNEL, /* per row, embedding only */
} ml_qweight_kind;

typedef struct {
    ml_qweight_kind kind;
    int group;
} ml_qweight;

typedef enum { ML_QA_NONE = 0, ML_QA_Q8_0, ML_QA_INT8_TOKEN } ml_qact;

typedef struct {
    ml_qweight linear, embedding;
    ml_qact act;
} ml_quant_recipe;

/* Parse the three user options (embedding / act may be NULL = none). One-line errors name the bad value and the
 * choices. */
ml_status ml_quant_recipe_parse(ml_quant_recipe *r, const char *scheme, const char *embedding, const char *act);
/* Canonical text "scheme=... embedding=... act=..." and its parser (the checkpoint attribute). */
void ml_quant_recipe_format(const ml_quant_recipe *r, char *buf, size_t n);
ml_status ml_quant_recipe_from_string(ml_quant_recipe *r, const char *s);
const char *ml_qweight_name(const ml_qweight *w, char *buf, size_t n);
const char *ml_qact_name(ml_qact a);
int ml_quant_recipe_equal(const ml_quant_recipe *a, const ml_quant_recipe *b);

/* Install the recipe's weight and activation transforms on every matrix of m (checking first that every block or
 * group divides its row: nothing is changed on error) and record it in m->quant. Learned scales are auxiliary
 * parameters: taken from the model when present (a loaded checkpoint), else added and initialised from the
 * weights. Call before creating an optimizer. The model must stay where it is while the transforms are in use. */
ml_status ml_quant_install(ml_model *m, const ml_quant_recipe *r);
/* Install the recipe stored in m->quant (a loaded checkpoint); no-op when there is none. */
ml_status ml_quant_install_stored(ml_model *m);
/* For a run or a PTQ: the stored recipe if the model has one (one with other grids is refused: "<where> is already
 * quantized with ..."; another --act alone is taken: it changes how the model computes, not its weights), else the
 * requested one (scheme NULL: nothing). */
ml_status ml_quant_prepare(ml_model *m, const char *scheme, const char *embedding, const char *act, const char *where);
/* Number of learned-scale tensors of m (auxiliary parameters named *_fake_quantizer.scale). */
int ml_quant_num_scales(const ml_model *m);

/* ---- the quantizers on one row (n elements), for the transforms and for tests. y may equal x.
 * keep (optional, n bytes): 1 where the gradient passes, 0 where the grid clipped. */
void ml_fq_q4_0(float *y, uint8_t *keep, const float *x, int64_t n);        /* n % 32 == 0 */
void ml_fq_q8_0(float *y, const float *x, int64_t n);                       /* n % 32 == 0 */
/* the straight-through gradient alone: g zeroed where the grid clips x (the same rule as keep above) */
void ml_fq_q4_0_mask(float *g, const float *x, int64_t n);
void ml_fq_sym_mask(float *g, const float *x, int64_t n, int group, int bits);
void ml_fq_sym(float *y, uint8_t *keep, const float *x, int64_t n, int group, int bits); /* torchao symmetric */
/* learned scale s for the whole row: y = clamp(round(x/s))*s; with gy, also gx = keep*gy and returns d/ds. */
void ml_fq_scaled(float *y, uint8_t *keep, const float *x, int64_t n, float s, int bits);
double ml_fq_scaled_grad(float *gx, const float *gy, const float *x, int64_t n, float s, int bits);
void ml_fq_act_q8_0(float *y, const float *x, int64_t n);                   /* n % 32 == 0 */
void ml_fq_act_int8_token(float *y, uint8_t *keep, const float *x, int64_t n);

/* ---- the same grids as integers, for the integer forward (model/ops/gemm_int8.h): codes and one scale per block or
 * group (per row for ml_q_scaled), with code * scale equal to the ml_fq_* value bit for bit.
 * Weights: q4_0 codes in [-8, 7], q8_0 in [-127, 127], symmetric int4 in [-8, 7], int8 in [-128, 127].
 * Activations as u = code + 128 in [0, 255], value (u - offset) * scale: q8_0 offset 128 and a scale per block of 32;
 * int8-token offset 128 + zp and one scale for the row. */
void ml_q_q4_0(int8_t *q, float *d, const float *x, int64_t n);                 /* n % 32 == 0, d[n / 32] */
void ml_q_q8_0(int8_t *q, float *d, const float *x, int64_t n);                 /* n % 32 == 0, d[n / 32] */
void ml_q_sym(int8_t *q, float *s, const float *x, int64_t n, int group, int bits); /* s[n / group] */
void ml_q_scaled(int8_t *q, const float *x, int64_t n, float s, int bits);      /* the row's scale is s */
void ml_q_act_q8_0(uint8_t *u, float *d, const float *x, int64_t n);            /* n % 32 == 0, d[n / 32] */
void ml_q_act_int8_token(uint8_t *u, float *scale, int32_t *offset, const float *x, int64_t n);

#endif
