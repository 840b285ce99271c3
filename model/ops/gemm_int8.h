/* Integer GEMM for products whose weight sits on an integer grid and whose input is quantized to 8 bits (QAT's
 * 8da4w forward, Q4_0 / Q8_0 with Q8_0 activations): the product is an integer product times scales,
 *
 *   Y[t,o] = sum_g  xs[t,g] * ws[o,g] * sum_{k in g} (u[t,k] - c[t]) * q[o,k]
 *
 * with u8 activation codes u and a per-row offset c (128 + zero point), s8 weight codes q, an fp32 scale ws per
 * (weight row, group) and an activation scale xs per row or per group. The kernel knows no grid: quant/ makes the
 * codes and scales.
 *
 * Arithmetic. Within a kernel group (at most 512 columns, so that every partial sum stays below 2^24) the raw sum
 * sum_k u q is accumulated in int32 and the offset term c * sum_k q is removed exactly (both are integers below
 * 2^24, subtracted in one fused multiply-add, so the group's sum is exact); the groups are then combined in fp32,
 * one fused multiply-add per group, in group order, and a per-row activation scale multiplies the total once. So
 *   |Y - exact| <= (groups + 1) * 2^-24 * sum_g |xs ws isum_g|
 * and the AVX512-VNNI kernel (vpdpbusd) and the portable one give the same bits.
 *
 * Weights are packed once per weight refresh (ml_int8_pack) into panels of 32 rows: per four columns the 32 rows'
 * four codes, as vpdpbusd reads them, with the group scales and code sums beside. OpenMP over the threads of the
 * calling team (call it outside a parallel region). */
#ifndef ML_GEMM_INT8_H
#define ML_GEMM_INT8_H

#include <stddef.h>
#include <stdint.h>

typedef struct ml_int8_matrix_s {
    int N, K;     /* output rows (weight rows), inputs (columns) */
    int group;    /* kernel group: columns per scale, divides K, a multiple of 4, at most 512 */
    int8_t *q;    /* [ceil(N / 32)][K / 4][32][4] codes, rows past N zero */
    float *scale; /* [ceil(N / 32)][K / group][32] */
    float *qsum;  /* [ceil(N / 32)][K / group][32] sum of the group's codes (an integer) */
    /* Weights with one scale per row may also run on oneDNN's u8 x s8 -> s32 matmul (AMX-INT8 on Xeons; the
     * dispatcher decides, model/ops/gemm.h): packed with `plain`, the codes [N][K] as given, each row's scale and
     * code sum. NULL otherwise. Y = xs[t] * ws[o] * (s32 - c[t] * sum_k q[o,k]) then: the int32 sum is exact, its
     * conversion and the two products round (within the bound above). */
    int8_t *plain;
    float *row_scale;
    int32_t *row_sum;
} ml_int8_matrix;

/* The kernel group for a product with weight groups of wgroup columns and activation groups of xgroup (the row's
 * length for one scale per row): their greatest common divisor, halved while above 512; 0 when the product does not
 * fit the kernel (K or the group not a multiple of 4). */
int ml_int8_group(int K, int wgroup, int xgroup);
/* Bytes of a packed N x K matrix with kernel group `group` (64-byte aligned parts), with the plain form or not. */
size_t ml_int8_matrix_bytes(int N, int K, int group, int plain);
/* Pack codes[N, K] (row-major) with scales[N, K / wgroup] into mem (ml_int8_matrix_bytes, 64-byte aligned); group is
 * the kernel group (ml_int8_group), dividing wgroup; plain (wgroup == K only): also the plain form. */
void ml_int8_pack(ml_int8_matrix *w, void *mem, const int8_t *codes, const float *scales, int wgroup, int N, int K,
                  int group, int plain);
/* The same in parts, for a caller that makes the codes panel by panel inside its own parallel loop: the layout in
 * mem, then panel pn (weight rows 32 pn .. 32 pn + 31) from those rows' codes [32][K] and scales [32][K / wgroup]
 * (rows past N are not read). plain: wgroup == K only. */
void ml_int8_layout(ml_int8_matrix *w, void *mem, int N, int K, int group, int plain);
void ml_int8_pack_panel(ml_int8_matrix *w, int pn, const int8_t *codes, const float *scales, int wgroup);
#define ML_INT8_PANEL 32

/* The plain form's finish after oneDNN's s32 product acc[M, N] (see above). */
void ml_int8_finish_rows(float *Y, const int32_t *acc, const float *xscale, const int32_t *xoffset,
                         const ml_int8_matrix *W, int M);

/* Y[M, N] = the product above. X[M, K] u8 codes (row stride K), xoffset[M], xscale: [M] when xgroup == K, else
 * [M][K / xgroup] (xgroup a multiple of the kernel group). */
void ml_gemm_int8(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                  const ml_int8_matrix *W, int M);

/* The same on the portable kernel alone (the reference the vector kernel is tested against, bit for bit). */
void ml_gemm_int8_portable(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                           const ml_int8_matrix *W, int M);

/* 1 when this CPU executes AVX512-VNNI (ML_DISABLE_VNNI=1 in the environment: behave as one without, for tests). */
int ml_int8_vnni_available(void);

#endif
