/* Causal grouped-query attention with optional sliding window and document mask.
 * Forward keeps only the output and one log-sum-exp per row; backward recomputes the
 * probabilities from q, k and lse, so memory stays O(T) per row instead of O(T^2). */
#include <math.h>
#include <stddef.h>

#include "train/ops/ops.h"

/* Lowest key index visible from query t of row b (window only; the document test is per key). */
static inline int first_key(int t, int window) { return (window > 0 && t - window + 1 > 0) ? t - window + 1 : 0; }

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void ml_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *doc, int B, int T, int H, int KV, int hd, int window) {
    const int group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd; /* token strides */
#pragma omp parallel for collapse(3) schedule(dynamic, 8)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const int kvh = h / group;
                const float *qr = q + ((int64_t)b * T + t) * qs + (int64_t)h * hd;
                const float *kb = k + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const float *vb = v + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const int32_t *db = doc ? doc + (int64_t)b * T : NULL;
                float *o = out + ((int64_t)b * T + t) * qs + (int64_t)h * hd;
                /* online softmax: one pass, rescaling the running sums when the maximum grows */
                float mx = -INFINITY, sum = 0.0f;
                for (int i = 0; i < hd; i++) o[i] = 0.0f;
                for (int j = first_key(t, window); j <= t; j++) {
                    if (db && db[j] != db[t]) continue;
                    float s = dot(qr, kb + (int64_t)j * ks, hd) * scale;
                    if (s > mx) {
                        float c = expf(mx - s);
                        sum *= c;
#pragma omp simd
                        for (int i = 0; i < hd; i++) o[i] *= c;
                        mx = s;
                    }
                    float e = expf(s - mx);
                    sum += e;
                    const float *vr = vb + (int64_t)j * ks;
#pragma omp simd
                    for (int i = 0; i < hd; i++) o[i] += e * vr[i];
                }
                float inv = 1.0f / sum;
                for (int i = 0; i < hd; i++) o[i] *= inv;
                lse[((int64_t)b * H + h) * T + t] = mx + logf(sum);
            }
}

/* Parallel over (batch row, kv head): every query head of a group and every query position
 * write the same dk/dv rows, so one thread owns them all (no races, fixed summation order). */
void ml_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                           const float *q, const float *k, const float *v, const int32_t *doc, int B, int T, int H,
                           int KV, int hd, int window) {
    const int group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < KV; kvh++) {
                const float *kb = k + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const float *vb = v + (int64_t)b * T * ks + (int64_t)kvh * hd;
                float *dkb = dk + (int64_t)b * T * ks + (int64_t)kvh * hd;
                float *dvb = dv + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const int32_t *db = doc ? doc + (int64_t)b * T : NULL;
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < hd; i++) dkb[(int64_t)t * ks + i] = dvb[(int64_t)t * ks + i] = 0.0f;
                for (int h = kvh * group; h < (kvh + 1) * group; h++)
                    for (int t = 0; t < T; t++) {
                        const int64_t qoff = ((int64_t)b * T + t) * qs + (int64_t)h * hd;
                        const float *qr = q + qoff, *dor = dout + qoff, *orow = out + qoff;
                        float *dqr = dq + qoff;
                        float L = lse[((int64_t)b * H + h) * T + t];
                        float D = dot(dor, orow, hd);
                        int lo = first_key(t, window);
                        for (int i = 0; i < hd; i++) dqr[i] = 0.0f;
                        for (int j = lo; j <= t; j++) {
                            if (db && db[j] != db[t]) continue;
                            const float *kr = kb + (int64_t)j * ks, *vr = vb + (int64_t)j * ks;
                            float pj = expf(dot(qr, kr, hd) * scale - L);
                            float ds = pj * (dot(dor, vr, hd) - D) * scale;
                            float *dkr = dkb + (int64_t)j * ks, *dvr = dvb + (int64_t)j * ks;
#pragma omp simd
                            for (int i = 0; i < hd; i++) {
                                dqr[i] += ds * kr[i];
                                dkr[i] += ds * qr[i];
                                dvr[i] += pj * dor[i];
                            }
                        }
                    }
            }
}
