#include <stdio.h>

#include "cli/args.h"
#include "common/sysinfo.h"
#include "train/bench.h"

int ml_cmd_bench(int argc, char **argv) {
    const char *config = NULL;
    ml_bench_args a = {.B = 4, .T = 256, .steps = 3, .warmup = 1, .seed = 1};
    int json = 0;
    ml_opt opts[] = {
        {"config", ML_OPT_STR, &config, "HF-style config.json (see configs/)", 1, 0},
        {"batch", ML_OPT_INT, &a.B, "sequences per step (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &a.T, "tokens per sequence (default 256)", 0, 0},
        {"steps", ML_OPT_INT, &a.steps, "timed steps (default 3)", 0, 0},
        {"warmup", ML_OPT_INT, &a.warmup, "untimed steps first (default 1)", 0, 0},
        {"json", ML_OPT_FLAG, &json, "print one JSON line only", 0, 0},
    };
    int rc = ml_args_parse("bench", "--config CFG [--batch B] [--seq T] [--steps N]", opts, 6, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if (a.B < 1 || a.T < 1 || a.steps < 1 || a.warmup < 0) {
        fprintf(stderr, "mobilellm bench: --batch, --seq and --steps must be positive\n");
        return 2;
    }
    ml_config cfg;
    ml_bench_result r;
    if (ml_config_load(&cfg, config) != ML_OK || ml_bench_run(&cfg, &a, &r) != ML_OK) return ml_cli_fail("bench");
    const char *warn = ml_blas_kernel_warning();
    if (!json) {
        printf("model        %s, %lld parameters, %.3f GFLOP per token (train)\n", cfg.name, (long long)r.params,
               r.flops_per_token / 1e9);
        printf("batch        %d x %d, %d threads\n", a.B, a.T, r.threads);
        printf("step         %.1f ms (forward %.1f, head+loss %.1f, backward %.1f, update %.1f)\n", r.ms_per_step,
               r.ms_forward, r.ms_head, r.ms_backward, r.ms_update);
        printf("throughput   %.1f tokens/s, %.1f GFLOP/s\n", r.tokens_per_s, r.gflops);
        printf("sgemm probe  %.1f GFLOP/s  ->  MFU %.1f%%\n", r.sgemm_gflops, 100 * r.mfu);
        printf("peak RSS     %.1f MiB\n", (double)r.peak_rss / 1048576.0);
        printf("%s\n", r.blas);
        if (warn) printf("%s\n", warn);
    }
    printf("{\"impl\":\"mobilellm.c\",\"model\":\"%s\",\"params\":%lld,\"batch\":%d,\"seq\":%d,\"threads\":%d,"
           "\"ms_per_step\":%.2f,\"tokens_per_s\":%.2f,\"gflops\":%.2f,\"sgemm_gflops\":%.2f,\"mfu\":%.4f,"
           "\"peak_rss_mib\":%.1f,\"blas_kernel\":\"%s\"}\n",
           cfg.name, (long long)r.params, a.B, a.T, r.threads, r.ms_per_step, r.tokens_per_s, r.gflops, r.sgemm_gflops,
           r.mfu, (double)r.peak_rss / 1048576.0, ml_blas_corename());
    return 0;
}
