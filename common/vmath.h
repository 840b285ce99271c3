/* Vectorised exp over arrays.
 * glibc's libmvec has AVX-512 and AVX2 expf (1 ulp in glibc's tables), but GCC only calls it under
 * -ffast-math, which would also change every reduction in the trainer. So the kernels that are
 * exp-bound (attention's softmax tiles, SwiGLU, softmax cross-entropy) call it by its vector-ABI
 * name here; other builds fall back to the scalar expf. */
#ifndef ML_VMATH_H
#define ML_VMATH_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__GLIBC__) && !defined(ML_NO_LIBMVEC)
#include <immintrin.h>
#define ML_VEXP_WIDTH 16
__m512 _ZGVeN16v_expf(__m512 x); /* glibc libmvec, x86-64 vector ABI 'e' (AVX-512), 16 lanes */

/* y[i] = exp((x[i] - shift) * scale) for i < n, returning the sum of the y[i]; y may alias x, and
 * y == NULL only sums (the logits stay as they are). */
static inline float ml_exp_scaled(float *y, const float *x, float shift, float scale, int64_t n) {
    const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = _ZGVeN16v_expf(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh), sc));
        if (y) _mm512_storeu_ps(y + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 e = _ZGVeN16v_expf(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh), sc));
        e = _mm512_maskz_mov_ps(m, e);
        if (y) _mm512_mask_storeu_ps(y + i, m, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}
#else
#define ML_VEXP_WIDTH 1
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
