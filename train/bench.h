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

ml_status ml_bench_run(const ml_config *cfg, const ml_bench_args *a, ml_bench_result *r);

#endif
