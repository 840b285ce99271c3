/* 16 x 16 blocks of 32-bit words transposed in AVX-512 registers: the panel packing of the bf16 GEMM (gemm_bf16.c)
 * and the converters of the bf16 attention tiles (attention_bf16.c). For functions compiled for AVX-512 (target
 * attributes); the build need not be. */
#ifndef ML_TRANSPOSE16_H
#define ML_TRANSPOSE16_H

#include <immintrin.h>

/* r[i] = row i of a 16 x 16 block of 32-bit words; on return r[j] = its column j (interleave words, then
 * quadwords, then 128-bit lanes twice). */
__attribute__((target("avx512f"))) static inline void ml_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4g + c]: rows 4g..4g+3 at columns c, c+4, c+8, c+12 (one per 128-bit lane) */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i x0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        __m512i y0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), y1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        r[c + 4] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        r[c + 8] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        r[c + 12] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
}

#endif
