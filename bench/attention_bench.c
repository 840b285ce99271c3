/* Attention kernel timing: the current kernels (fp32 tiles, and the bf16 tiles where this CPU has a bf16
 * kernel) against another version's attention.c, built into the same binary with its symbols renamed
 * (bench/attention_bench.sh does that), same inputs, same run.
 *   attention_bench B T [WINDOW]   (MobileLLM-125M heads: H = 9, KV = 3, head_dim = 64) */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/ops/ops.h"

void base_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                            const int32_t *doc, int B, int T, int H, int KV, int hd, int window);
void base_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                             const float *q, const float *k, const float *v, const int32_t *doc, int B, int T, int H,
                             int KV, int hd, int window);

static float *filled(size_t n, unsigned seed) {
    float *x = malloc(n * sizeof(float));
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return x;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s B T [WINDOW]\n", argv[0]);
        return 2;
    }
    const int B = atoi(argv[1]), T = atoi(argv[2]), W = argc > 3 ? atoi(argv[3]) : 0, H = 9, KV = 3, hd = 64;
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KV * hd;
    float *q = filled(nq, 1), *k = filled(nk, 2), *v = filled(nk, 3), *dout = filled(nq, 4);
    float *out = malloc(nq * 4), *lse = malloc((size_t)B * H * T * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4),
          *dv = malloc(nk * 4);
    /* visible (query, key) pairs: causal, or T*W minus the first window's triangle */
    double pairs = W > 0 && W < T ? (double)T * W - (double)W * (W - 1) / 2 : (double)T * (T + 1) / 2;
    double fwd_flop = 4.0 * B * H * pairs * hd, bwd_flop = 2.5 * fwd_flop; /* 2 and 5 products of 2*hd flops */
    /* base, this tree's fp32 tiles, this tree's bf16 tiles (the kernel bf16 precision picks here, if any);
     * repetitions alternate between them so that all see the same machine load; best of 5 each */
    ml_attn_kernel bf16k = ML_ATTN_FP32;
    if (ml_attn_kernel_resolve(1, &bf16k) != ML_OK) bf16k = ML_ATTN_FP32;
    const int n_impl = bf16k == ML_ATTN_FP32 ? 2 : 3;
    char bf16_name[32];
    snprintf(bf16_name, sizeof bf16_name, "current-%s", ml_attn_kernel_name(bf16k));
    const char *names[3] = {"base", "current", bf16_name};
    double tf[3] = {1e30, 1e30, 1e30}, tb[3] = {1e30, 1e30, 1e30};
    for (int rep = 0; rep < 5; rep++)
        for (int impl = 0; impl < n_impl; impl++) {
            const ml_attn_dims d = {B, T, T, 0, H, KV, hd, W, impl == 2 ? bf16k : ML_ATTN_FP32};
            double t0 = omp_get_wtime();
            if (impl) ml_attention_forward(out, lse, q, k, v, NULL, &d, NULL);
            else base_attention_forward(out, lse, q, k, v, NULL, B, T, H, KV, hd, W);
            double t1 = omp_get_wtime();
            if (impl) ml_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, NULL, &d, NULL);
            else base_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, NULL, B, T, H, KV, hd, W);
            double t2 = omp_get_wtime();
            tf[impl] = t1 - t0 < tf[impl] ? t1 - t0 : tf[impl];
            tb[impl] = t2 - t1 < tb[impl] ? t2 - t1 : tb[impl];
        }
    for (int impl = 0; impl < n_impl; impl++)
        printf("{\"impl\":\"%s\",\"B\":%d,\"T\":%d,\"window\":%d,\"threads\":%d,\"fwd_ms\":%.2f,\"fwd_gflops\":%.1f,"
               "\"bwd_ms\":%.2f,\"bwd_gflops\":%.1f}\n",
               names[impl], B, T, W, omp_get_max_threads(), tf[impl] * 1e3, fwd_flop / tf[impl] * 1e-9, tb[impl] * 1e3,
               bwd_flop / tb[impl] * 1e-9);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
    return 0;
}
