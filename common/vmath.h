/* Vectorised exp over arrays.
 * One AVX-512 exp (ml_exp16) serves every exp-bound kernel: attention's softmax tiles (fp32 and bf16), SwiGLU and the
 * softmax cross-entropy. It is inline: glibc's libmvec expf (1 ulp) is a call per 16 lanes, and GCC only vectorises
 * expf into it under -ffast-math, which would also change every reduction in the trainer. Builds without AVX-512 fall
 * back to the scalar expf. */
#ifndef ML_VMATH_H
#define ML_VMATH_H

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* exp(x) on 16 lanes: n = round(x log2 e), r = x - n ln 2 in two steps (Cody and Waite: ln 2 split into a float and
 * its remainder), e^r by a degree-6 polynomial fitted here for relative error on |r| <= ln 2 / 2 (8e-8 in float
 * arithmetic), times 2^n by scalef. Worst relative error 7.4e-8 over [-86, 88.7] (tests/test_ops.c test_exp; libmvec's
 * 1 ulp is 6e-8 to 1.2e-7).
 * - x < -86 gives 0 (exp(-86) = 4.4e-38, just above the smallest normal float) and no lane ever computes a
 *   subnormal: on Intel cores a subnormal result costs a microcode assist per instruction, and attention's causal
 *   tiles are half -inf on their diagonal (with such results this kernel ran slower than libmvec's on an AMX Xeon).
 * - x > 88.8 gives +inf; NaN stays NaN.
 * Target-attributed so that kernels built for AVX-512 by attribute (model/ops/attention_bf16.c) inline it too. */
__attribute__((target("avx512f"))) static inline __m512 ml_exp16(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-86.0f), _CMP_NLT_UQ);
    x = _mm512_max_ps(_mm512_set1_ps(-86.0f), _mm512_min_ps(_mm512_set1_ps(88.8f), x)); /* NaN passes through */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693147182f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(1.90465432e-09f), r);
    __m512 p = _mm512_set1_ps(0.00137514086f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.00836891867f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.0416695327f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166665182f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.499999881f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, p, n);
}
#endif

#if defined(__AVX512F__) && defined(__x86_64__) && defined(__GNUC__)
/* y[i] = exp((x[i] - shift) * scale) for i < n, returning the sum of the y[i]; y may alias x, and
 * y == NULL only sums (the logits stay as they are). */
static inline float ml_exp_scaled(float *y, const float *x, float shift, float scale, int64_t n) {
    const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = ml_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh), sc));
        if (y) _mm512_storeu_ps(y + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 e = ml_exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh), sc));
        e = _mm512_maskz_mov_ps(m, e);
        if (y) _mm512_mask_storeu_ps(y + i, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}
#else
static inline float ml_exp_scaled(float *y, const float *x, float shift, float scale, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float e = expf((x[i] - shift) * scale);
        if (y) y[i] = e;
        sum += e;
    }
    return sum;
}
#endif

/* y[i] = exp(x[i] - shift), returning the sum; y may alias x. */
static inline float ml_exp_shifted(float *y, const float *x, float shift, int64_t n) {
    return ml_exp_scaled(y, x, shift, 1.0f, n);
}

/* x[i] = exp(x[i]) in place. */
static inline void ml_exp_inplace(float *x, int64_t n) { (void)ml_exp_shifted(x, x, 0.0f, n); }

#endif
