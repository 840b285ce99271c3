/* bf16 rounding of arrays (see bf16.h). */
#include "common/bf16.h"

#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

int ml_bf16_available(void) {
    static int avail = -1;
    if (avail < 0) {
        __builtin_cpu_init();
        const char *off = getenv("ML_DISABLE_BF16"); /* tests: behave as a CPU without it */
        avail = (!off || !*off || !strcmp(off, "0")) && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
    }
    return avail;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void round_row_bf16(uint16_t *dst,
                                                                                          const float *src, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i)));
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

void ml_bf16_round_row(uint16_t *dst, const float *src, size_t n) {
    if (ml_bf16_available()) {
        round_row_bf16(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = ml_bf16_bits(src[i]);
}
