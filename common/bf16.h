/* bf16 numbers as 16-bit patterns: the rounding every bf16 copy in the project uses (the model's weight copies, its
 * bf16 activations, the optimizer's mirror of the weights), and the widening back to fp32. */
#ifndef ML_BF16_H
#define ML_BF16_H

#include <stddef.h>
#include <stdint.h>

/* The bf16 bits of x rounded to nearest even; denormals to signed zero; NaN stays NaN (quiet). Branch-free enough
 * to vectorise in a loop. */
static inline uint16_t ml_bf16_bits(float x) {
    uint32_t u;
    __builtin_memcpy(&u, &x, 4);
    const uint32_t e = u & 0x7F800000u;
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    if (e == 0) r = (u & 0x80000000u) >> 16;
    if (e == 0x7F800000u) r = ((u & 0x007FFFFFu) ? (u | 0x00400000u) : u) >> 16;
    return (uint16_t)r;
}
/* The float of bf16 bits b, exactly. */
static inline float ml_bf16_value(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

/* 1 when this CPU executes AVX512-BF16 (checked once at run time; ML_DISABLE_BF16=1 makes tests behave as a CPU
 * without it). */
int ml_bf16_available(void);

/* dst[i] = ml_bf16_bits(src[i]) for i < n, on the calling thread (parallel regions call it per share): 32 and 16 at
 * a time by VCVTNE2PS2BF16 / VCVTNEPS2BF16 where the CPU has AVX512-BF16, which round as ml_bf16_bits on every input
 * (test_gemm_bf16 checks every sign, exponent and rounding case); 3.4x GCC's vectorisation of ml_bf16_bits on Zen 4. */
void ml_bf16_round_row(uint16_t *dst, const float *src, size_t n);

#endif
