/* bf16 tile products of the attention kernel (model/ops/attention.c): operands rounded to bf16 (nearest even,
 * denormals to zero, as ml_bf16_round), products summed in fp32, on AMX (TDPBF16PS) or AVX512-BF16 (VDPBF16PS).
 * Internal to model/ops: attention.c lays out the operands, these functions convert and multiply them.
 *
 * Layouts. A (left operand): bf16 rows, A[r * lda + c]. B (right operand): pair-interleaved ("VNNI"), one 32-bit
 * word per (k pair, column): word p * ldb + j holds B[2p][j] in its low half and B[2p + 1][j] in its high half.
 * Every padding row or column a product reads must hold zeros (the converters write them). */
#ifndef ML_ATTENTION_BF16_H
#define ML_ATTENTION_BF16_H

#include <stdint.h>

#include "model/ops/ops.h"

/* AMX only: load this thread's tile configuration (tile state is per thread) / release it. No-ops otherwise. */
void ml_attn_tiles_begin(ml_attn_kernel k);
void ml_attn_tiles_end(ml_attn_kernel k);

/* C[m, n] = (accumulate ? C : 0) + A[m, k] . B[k, n], C fp32 with row stride ldc. n a multiple of 32; k a multiple
 * of 32 (zero-padded); AMX computes whole 32-row blocks, so C and A must have round_up(m, 32) rows. */
void ml_attn_mm(ml_attn_kernel kern, float *C, int ldc, const uint16_t *A, int lda, const uint32_t *B, int ldb, int m,
                int n, int k, int accumulate);

/* Converters from fp32 src (row stride lds) of rows x cols; everything up to rows_pad x cols_pad (multiples of 16,
 * even) that lies outside the source is written as zero. */
/* dst[r * ldd + c] = src[r][c] */
void ml_attn_to_rows(uint16_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols, int rows_pad,
                     int cols_pad);
/* dst[c * ldd + r] = src[r][c] (transposed) */
void ml_attn_to_cols(uint16_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols, int rows_pad,
                     int cols_pad);
/* B = src in the pair layout: word p * ldd + c = (src[2p][c], src[2p + 1][c]) */
void ml_attn_to_pairs(uint32_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols, int rows_pad,
                      int cols_pad);
/* B = src^T in the pair layout: word p * ldd + r = (src[r][2p], src[r][2p + 1]) */
void ml_attn_to_pairs_t(uint32_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols, int rows_pad,
                        int cols_pad);

/* dst[r * ldd + c] = src[c * lds + r] for r < rows, c < cols (fp32, transposed back): src must hold
 * round_up(cols, 16) rows of round_up(rows, 16) readable columns. */
void ml_attn_from_cols(float *dst, int64_t ldd, const float *src, int lds, int rows, int cols);

/* Softmax rows straight to bf16 (the operands of the tile products that follow), computed from a tile's raw scores
 * S (fp32; masked keys at -inf). All tiles are 64 columns wide (cols, cols_pad <= 64).
 * Forward, one row: dst[j] = bf16(exp(s[j] * scale - shift)) for j < cols, zero up to cols_pad; returns the fp32
 * sum of the unrounded values. */
float ml_attn_softmax_row(uint16_t *dst, const float *s, float scale, float shift, int cols, int cols_pad);
/* Backward, rows [0, rows) of a tile (row stride ld): P = exp(S * scale - lse[r]), dS = P (dP - D[r]) scale, written
 * as bf16 dS rows (row stride 64) and as P and dS pair words (64 per row pair); rows [rows, rows_pad) and columns
 * [cols, 64) are zero. rows_pad even. */
void ml_attn_grad_rows(uint16_t *ds_rows, uint32_t *p_pairs, uint32_t *ds_pairs, const float *s, const float *dp,
                       int ld, const float *lse, const float *D, float scale, int rows, int cols, int rows_pad);

#endif
