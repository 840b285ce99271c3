/* bf16 numbers as 16-bit patterns: the rounding every bf16 copy in the project uses (the model's weight copies, its
 * bf16 activations, the optimizer's mirror of the weights), and the widening back to fp32. */
#ifndef ML_BF16_H
#define ML_BF16_H

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

#endif
