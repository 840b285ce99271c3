/* The quantize-dequantize functions of quant/quant.h on one row. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/half.h"
#include "quant/quant.h"

/* x * id + 8.5f must round twice, as llama.cpp's C does (no fused multiply-add). */
#if defined(__GNUC__) && !defined(__clang__)
#define ML_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define ML_NO_CONTRACT
#endif

/* Q4_0: the block's d from llama.cpp's reference (signed extreme / -8), then formats/gguf's own quantizer and
 * dequantizer, so the values are those of the exported blocks bit for bit. */
ML_NO_CONTRACT void ml_fq_q4_0(float *y, uint8_t *keep, const float *x, int64_t n) {
    uint8_t blk[18];
    for (int64_t b = 0; b < n; b += ML_QK) {
        if (keep) {
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < ML_QK; j++)
                if (amax < fabsf(x[b + j])) amax = fabsf(x[b + j]), max = x[b + j];
            const float d = max / -8, id = d ? 1.0f / d : 0.0f;
            for (int j = 0; j < ML_QK; j++) keep[b + j] = x[b + j] * id + 8.5f < 16.0f; /* min(15, .) clips */
        }
        ml_quantize_row_q4_0(blk, x + b, ML_QK);
        ml_dequantize_row_q4_0(y + b, blk, ML_QK);
    }
}

void ml_fq_q8_0(float *y, const float *x, int64_t n) {
    uint8_t blk[34];
    for (int64_t b = 0; b < n; b += ML_QK) {
        ml_quantize_row_q8_0(blk, x + b, ML_QK);
        ml_dequantize_row_q8_0(y + b, blk, ML_QK);
    }
}

static inline float qmaxf(int bits) { return (float)((1 << (bits - 1)) - 1); }
static inline float qminf(int bits) { return (float)(-(1 << (bits - 1))); }

/* torchao: scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2), clamped to FLT_MIN; x * (1/scale); round half
 * to even; clamp; times scale. */
void ml_fq_sym(float *y, uint8_t *keep, const float *x, int64_t n, int group, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), half = (hi - lo) / 2.0f;
    for (int64_t g = 0; g < n; g += group) {
        float amax = 0.0f;
        for (int j = 0; j < group; j++) amax = fmaxf(amax, fabsf(x[g + j]));
        float s = amax / half;
        if (s < FLT_MIN) s = FLT_MIN;
        const float inv = 1.0f / s;
        for (int j = 0; j < group; j++) {
            const float q = rintf(x[g + j] * inv);
            if (keep) keep[g + j] = q >= lo && q <= hi;
            y[g + j] = fminf(fmaxf(q, lo), hi) * s;
        }
    }
}

void ml_fq_scaled(float *y, uint8_t *keep, const float *x, int64_t n, float s, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), inv = 1.0f / s;
    for (int64_t j = 0; j < n; j++) {
        const float q = rintf(x[j] * inv);
        if (keep) keep[j] = q >= lo && q <= hi;
        y[j] = fminf(fmaxf(q, lo), hi) * s;
    }
}

double ml_fq_scaled_grad(float *gx, const float *gy, const float *x, int64_t n, float s, int bits) {
    const float lo = qminf(bits), hi = qmaxf(bits), inv = 1.0f / s;
    double ds = 0;
    for (int64_t j = 0; j < n; j++) {
        const float v = x[j] * inv, q = rintf(v);
        const int in = q >= lo && q <= hi;
        const float qc = fminf(fmaxf(q, lo), hi);
        ds += (double)gy[j] * (in ? (double)qc - (double)v : (double)qc);
        if (gx) gx[j] = in ? gy[j] : 0.0f;
    }
    return ds;
}

/* ggml's x86 quantize_row_q8_0 (the activations of a Q4_0 / Q8_0 product): id = 127 / amax, round to nearest
 * even (_mm256_round_ps), d = amax / 127 stored as fp16. */
void ml_fq_act_q8_0(float *y, const float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += ML_QK) {
        float amax = 0.0f;
        for (int j = 0; j < ML_QK; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = ml_f16_to_f32(ml_f32_to_f16(amax / 127.f));
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < ML_QK; j++) y[b + j] = rintf(x[b + j] * id) * d;
    }
}

/* torchao's choose_qparams_affine(ASYMMETRIC, per token) and _fake_quantize_affine. */
void ml_fq_act_int8_token(float *y, uint8_t *keep, const float *x, int64_t n) {
    float mn = 0.0f, mx = 0.0f;
    for (int64_t j = 0; j < n; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
    float s = (mx - mn) / 255.0f;
    if (s < FLT_MIN) s = FLT_MIN;
    float zp = -128.0f - rintf(mn / s);
    zp = fminf(fmaxf(zp, -128.0f), 127.0f);
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < n; j++) {
        const float q = rintf(x[j] * inv) + zp;
        if (keep) keep[j] = q >= -128.0f && q <= 127.0f;
        y[j] = (fminf(fmaxf(q, -128.0f), 127.0f) - zp) * s;
    }
}
