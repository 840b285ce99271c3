/* The quantize-dequantize functions of quant/quant.h on one row. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/half.h"
#include "quant/quant.h"

#if defined(__F16C__)
#include <immintrin.h>
/* fp32 -> fp16 -> fp32, round to nearest even (the hardware conversion, as ggml's GGML_FP32_TO_FP16 on x86) */
static inline float through_f16(float v) { return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT)); }
#else
static inline float through_f16(float v) { return ml_f16_to_f32(ml_f32_to_f16(v)); }
#endif

/* max |x| as a vectorizable reduction (a > m ? a : m is MAXPS) */
static inline float max_abs(const float *x, int n) {
    float m = 0.0f;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < n; j++) m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
    return m;
}

/* The products and sums below round one by one, as ggml's C does: this file is compiled with -ffp-contract=off
 * (CMakeLists.txt), so no multiply-add is fused. The loops are written to vectorize: a block's extreme is found
 * with a max reduction and then the first element of that magnitude (the reference's strict-greater scan). */

static inline float first_extreme(const float *x, int n, float *amax_out) {
    const float amax = max_abs(x, n);
    int first = n - 1;
#pragma omp simd reduction(min : first)
    for (int j = 0; j < n; j++) first = fabsf(x[j]) == amax && j < first ? j : first;
    *amax_out = amax;
    return amax > 0.0f ? x[first] : 0.0f;
}

/* Q4_0 (quantize_row_q4_0_ref + dequantize_row_q4_0): the values of the exported blocks, bit for bit. */
void ml_fq_q4_0(float *y, uint8_t *keep, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        float amax;
        const float max = first_extreme(x + b, ML_QK, &amax);
        const float d = max / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
        const float dh = through_f16(d);
        for (int j = 0; j < ML_QK; j++) {
            const float v = x[b + j] * id + 8.5f; /* in [0.5, 16.5]: (int8_t)v truncates like (int)v */
            int q = (int)v;
            q = q > 15 ? 15 : q;
            y[b + j] = (float)(q - 8) * dh;
        }
        if (keep)
            for (int j = 0; j < ML_QK; j++) keep[b + j] = x[b + j] * id + 8.5f < 16.0f; /* min(15, .) clips */
    }
}

/* Straight-through gradient of Q4_0: g zeroed where min(15, .) clipped (no values computed). */
void ml_fq_q4_0_mask(float *g, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        float amax;
        const float max = first_extreme(x + b, ML_QK, &amax);
        const float d = max / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
#pragma omp simd
        for (int j = 0; j < ML_QK; j++) g[b + j] = x[b + j] * id + 8.5f < 16.0f ? g[b + j] : 0.0f;
    }
}

/* roundf (half away from zero), written so that it vectorizes: v - trunc(v) is exact */
static inline float round_away(float v) {
    const float r = rintf(v); /* half to even; a tie goes away from zero instead (v +- 0.5 is exact then) */
    return fabsf(v - r) == 0.5f ? v + (v > 0.0f ? 0.5f : -0.5f) : r;
}

/* Q8_0 (quantize_row_q8_0_ref + dequantize_row_q8_0). */
void ml_fq_q8_0(float *y, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        const float amax = max_abs(x + b, ML_QK);
        const float d = amax / 127, id = d != 0.0f ? 1.0f / d : 0.0f;
        const float dh = through_f16(d);
#pragma omp simd
        for (int j = 0; j < ML_QK; j++) y[b + j] = (round_away(x[b + j] * id) + 0.0f) * dh; /* q is an int8: +0, not -0 */
    }
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline float qmaxf(int bits) { return (float)((1 << (bits - 1)) - 1); }
static inline float qminf(int bits) { return (float)(-(1 << (bits - 1))); }

/* torchao: scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2), clamped to FLT_MIN; x * (1/scale); round half
 * to even; clamp; times scale. */
void ml_fq_sym(float *y, uint8_t *keep, const float *x, int64_t n, int group, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), half = (hi - lo) / 2.0f;
    for (int64_t g = 0; g < n; g += group) {
        const float amax = max_abs(x + g, group);
        float s = amax / half;
        if (s < FLT_MIN) s = FLT_MIN;
        const float inv = 1.0f / s;
        for (int j = 0; j < group; j++) {
            const float q = rintf(x[g + j] * inv);
            if (keep) keep[g + j] = q >= lo && q <= hi;
            y[g + j] = clampf(q, lo, hi) * s;
        }
    }
}

void ml_fq_sym_mask(float *g, const float *x, int64_t n, int group, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), half = (hi - lo) / 2.0f;
    for (int64_t g0 = 0; g0 < n; g0 += group) {
        float s = max_abs(x + g0, group) / half;
        if (s < FLT_MIN) s = FLT_MIN;
        const float inv = 1.0f / s;
#pragma omp simd
        for (int j = 0; j < group; j++) {
            const float q = rintf(x[g0 + j] * inv);
            g[g0 + j] = q >= lo && q <= hi ? g[g0 + j] : 0.0f;
        }
    }
}

void ml_fq_scaled(float *y, uint8_t *keep, const float *x, int64_t n, float s, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), inv = 1.0f / s;
    for (int64_t j = 0; j < n; j++) {
        const float q = rintf(x[j] * inv);
        if (keep) keep[j] = q >= lo && q <= hi;
        y[j] = clampf(q, lo, hi) * s;
    }
}

double ml_fq_scaled_grad(float *gx, const float *gy, const float *x, int64_t n, float s, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), inv = 1.0f / s;
    double ds = 0;
#pragma omp simd reduction(+ : ds)
    for (int64_t j = 0; j < n; j++) {
        const float v = x[j] * inv, q = rintf(v);
        const int in = q >= lo && q <= hi;
        const float qc = clampf(q, lo, hi);
        ds += (double)gy[j] * (in ? (double)qc - (double)v : (double)qc);
        if (gx) gx[j] = in ? gy[j] : 0.0f;
    }
    return ds;
}

/* ggml's x86 quantize_row_q8_0 (the activations of a Q4_0 / Q8_0 product): id = 127 / amax, round to nearest
 * even (_mm256_round_ps), d = amax / 127 stored as fp16. */
void ml_fq_act_q8_0(float *y, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        const float amax = max_abs(x + b, ML_QK);
        const float d = through_f16(amax / 127.f);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < ML_QK; j++) y[b + j] = rintf(x[b + j] * id) * d;
    }
}

/* torchao's choose_qparams_affine(ASYMMETRIC, per token) and _fake_quantize_affine. */
void ml_fq_act_int8_token(float *y, uint8_t *keep, const float *x, int64_t n) {
    float mn = 0.0f, mx = 0.0f;
#pragma omp simd reduction(min : mn) reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mn = x[j] < mn ? x[j] : mn, mx = x[j] > mx ? x[j] : mx;
    float s = (mx - mn) / 255.0f;
    if (s < FLT_MIN) s = FLT_MIN;
    float zp = -128.0f - rintf(mn / s);
    zp = clampf(zp, -128.0f, 127.0f);
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < n; j++) {
        const float q = rintf(x[j] * inv) + zp;
        if (keep) keep[j] = q >= -128.0f && q <= 127.0f;
        y[j] = (clampf(q, -128.0f, 127.0f) - zp) * s;
    }
}

/* ---- integer forms: the same roundings, returning the codes and scales whose products are the values above
 * (code * scale == the fake-quantized value, bit for bit), for the integer forward (model/ops/gemm_int8.h). */

void ml_q_q4_0(int8_t *q, float *d, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        float amax;
        const float max = first_extreme(x + b, ML_QK, &amax);
        const float dd = max / -8, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        d[b / ML_QK] = through_f16(dd);
        for (int j = 0; j < ML_QK; j++) {
            int v = (int)(x[b + j] * id + 8.5f);
            q[b + j] = (int8_t)((v > 15 ? 15 : v) - 8);
        }
    }
}

void ml_q_q8_0(int8_t *q, float *d, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        const float amax = max_abs(x + b, ML_QK);
        const float dd = amax / 127, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        d[b / ML_QK] = through_f16(dd);
        for (int j = 0; j < ML_QK; j++) q[b + j] = (int8_t)round_away(x[b + j] * id);
    }
}

void ml_q_sym(int8_t *q, float *s, const float *x, int64_t n, int group, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), half = (hi - lo) / 2.0f;
    for (int64_t g = 0; g < n; g += group) {
        float sc = max_abs(x + g, group) / half;
        if (sc < FLT_MIN) sc = FLT_MIN;
        const float inv = 1.0f / sc;
        s[g / group] = sc;
        for (int j = 0; j < group; j++) q[g + j] = (int8_t)clampf(rintf(x[g + j] * inv), lo, hi);
    }
}

void ml_q_scaled(int8_t *q, const float *x, int64_t n, float s, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), inv = 1.0f / s;
    for (int64_t j = 0; j < n; j++) q[j] = (int8_t)clampf(rintf(x[j] * inv), lo, hi);
}

void ml_q_act_q8_0(uint8_t *u, float *d, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        const float amax = max_abs(x + b, ML_QK);
        d[b / ML_QK] = through_f16(amax / 127.f);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < ML_QK; j++) u[b + j] = (uint8_t)((int)rintf(x[b + j] * id) + 128);
    }
}

void ml_q_act_int8_token(uint8_t *u, float *scale, int32_t *offset, const float *x, int64_t n) {
    float mn = 0.0f, mx = 0.0f;
#pragma omp simd reduction(min : mn) reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mn = x[j] < mn ? x[j] : mn, mx = x[j] > mx ? x[j] : mx;
    float s = (mx - mn) / 255.0f;
    if (s < FLT_MIN) s = FLT_MIN;
    const float zp = clampf(-128.0f - rintf(mn / s), -128.0f, 127.0f);
    const float inv = 1.0f / s;
    *scale = s;
    *offset = 128 + (int32_t)zp;
    for (int64_t j = 0; j < n; j++) u[j] = (uint8_t)((int)clampf(rintf(x[j] * inv) + zp, -128.0f, 127.0f) + 128);
}
