/* Exact conversions between float32 and the 16-bit float formats used by checkpoints:
 * bfloat16 (BF16: float32's top 16 bits) and IEEE binary16 (F16).
 * float32 -> 16-bit rounds to nearest, ties to even; overflow gives +-inf; NaN stays NaN (quiet,
 * sign and top payload bits kept); F16 subnormals are produced and read exactly.
 * 16-bit -> float32 is exact (every BF16/F16 value is a float32). */
#ifndef ML_HALF_H
#define ML_HALF_H

#include <stddef.h>
#include <stdint.h>

uint16_t ml_f32_to_bf16(float x);
float ml_bf16_to_f32(uint16_t h);
uint16_t ml_f32_to_f16(float x);
float ml_f16_to_f32(uint16_t h);

/* Array forms: out[i] = convert(in[i]) for i < n. */
void ml_f32_to_bf16_n(uint16_t *out, const float *in, size_t n);
void ml_bf16_to_f32_n(float *out, const uint16_t *in, size_t n);
void ml_f32_to_f16_n(uint16_t *out, const float *in, size_t n);
void ml_f16_to_f32_n(float *out, const uint16_t *in, size_t n);

#endif
