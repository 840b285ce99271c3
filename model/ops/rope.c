#include <math.h>

#include "model/ops/ops.h"

/* Angles as Hugging Face computes them (float32 inv_freq, float32 products), so long positions
 * agree with transformers rather than with an exact double-precision rotation. */
void ml_rope_table(float *cos_t, float *sin_t, int max_pos, int hd, float theta) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        for (int p = 0; p < max_pos; p++) {
            float angle = (float)p * inv_freq;
            cos_t[(int64_t)p * half + i] = cosf(angle);
            sin_t[(int64_t)p * half + i] = sinf(angle);
        }
    }
}

void ml_rope_apply(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N, int T, int heads,
                   int hd, int half_split, int inverse) {
    int half = hd / 2;
    float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        int p = pos ? pos[n] : n % T;
        const float *c = cos_t + (int64_t)p * half, *s = sin_t + (int64_t)p * half;
        for (int h = 0; h < heads; h++) {
            float *v = x + ((int64_t)n * heads + h) * hd;
            if (half_split) {
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half], si = sign * s[i];
                    v[i] = a * c[i] - b * si;
                    v[i + half] = b * c[i] + a * si;
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float a = v[2 * i], b = v[2 * i + 1], si = sign * s[i];
                    v[2 * i] = a * c[i] - b * si;
                    v[2 * i + 1] = a * si + b * c[i];
                }
            }
        }
    }
}
