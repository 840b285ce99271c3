#include "formats/half.h"

#include <string.h>

static inline uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t ml_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    /* Rounding a NaN could carry its payload into the exponent (-> inf): keep it a quiet NaN. */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even; overflow carries into inf */
    return (uint16_t)(u >> 16);
}

float ml_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ml_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) { /* inf or NaN */
        if (a == 0x7f800000u) return sign | 0x7c00u;
        return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);
    }
    /* 65520 = 65504 + half an ulp: the tie rounds to even, i.e. up to inf. */
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* normal binary16 range: rebias exponent 127 -> 15, round 13 bits */
        uint32_t q = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++; /* a carry moves into the exponent */
        return sign | (uint16_t)q;
    }
    /* Subnormal binary16: value / 2^-24 rounded. 2^-25 (0x33000000) is a tie that rounds to 0. */
    if (a <= 0x33000000u) return sign;
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* in [14, 24] here */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++; /* 0x400 = smallest normal, encoded right */
    return sign | (uint16_t)q;
}

float ml_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e != 0) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return bits_f32(sign);
    /* Subnormal: normalise the mantissa; 2^-14 has float32 biased exponent 113. */
    uint32_t fe = 113;
    while (!(m & 0x400u)) {
        m <<= 1;
        fe--;
    }
    return bits_f32(sign | (fe << 23) | ((m & 0x3ffu) << 13));
}

void ml_f32_to_bf16_n(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f32_to_bf16(in[i]);
}

void ml_bf16_to_f32_n(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_bf16_to_f32(in[i]);
}

void ml_f32_to_f16_n(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f32_to_f16(in[i]);
}

void ml_f16_to_f32_n(float *out, const uint16_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = ml_f16_to_f32(in[i]);
}
