/* Training-step benchmark: times forward + loss + backward + optimizer update on random tokens,
 * and an sgemm probe on the same threads, so MFU is measured against what this machine's BLAS
 * actually reaches rather than a datasheet number. */
#ifndef ML_BENCH_H
#define ML_BENCH_H

#include <stddef.h>

#include "train/config.h"

typedef struct {
    int B, T, steps, warmup;
    uint64_t seed;
    int bf16; /* --precision bf16: the model's GEMMs on bf16 inputs (train/ops/gemm_bf16.h) */
} ml_bench_args;

typedef struct {
    double ms_per_step, tokens_per_s, gflops, sgemm_gflops, mfu;
    double ms_forward, ms_head, ms_backward, ms_update; /* per step */
    double flops_per_token;
    int64_t params;
    size_t peak_rss;
    int threads;
    char blas[256];
} ml_bench_result;

/* Sustained sgemm rate (GFLOP/s) of an n x n x n product on the current threads. */
double ml_sgemm_probe(int n, int reps);

/* One GEMM shape of the model in one of its layouts, timed with OpenBLAS sgemm and with the bf16
 * kernel, calls alternating so both see the same machine load; the best of the repetitions counts. */
typedef struct {
    char name[48];
    int M, N, K, transA, transB;
    double sgemm_gflops, bf16_gflops;
} ml_gemm_bench_row;

/* MobileLLM-125M's GEMMs at `tokens` rows (576->1728 qkv-ish, 576->1536 gate/up, 1536->576 down,
 * 576->32000 head), each as forward Y = X W^T, backward dX = dY W and dW += dY^T X. rows holds 12. */
ml_status ml_bench_gemm(int tokens, double seconds_each, ml_gemm_bench_row *rows, int *n_rows);

ml_status ml_bench_run(const ml_config *cfg, const ml_bench_args *a, ml_bench_result *r);

#endif
