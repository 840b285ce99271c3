#include <stdio.h>

#include "cli/args.h"
#include "common/prof.h"
#include "common/sysinfo.h"
#include "model/model.h"
#include "model/ops/gemm.h"
#include "train/bench.h"

int ml_cmd_bench(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    ml_bench_args a = {.B = 4, .T = 256, .steps = 3, .warmup = 1, .seed = 1};
    int json = 0, gemm = 0, tokens = 1024;
    const char *precision = "fp32", *engine = "auto";
    ml_opt opts[] = {
        {"config", ML_OPT_STR, &config, "HF-style config.json (see configs/)", 0, 0},
        {"batch", ML_OPT_INT, &a.B, "sequences per step (default 4)", 0, 0},
        {"seq", ML_OPT_INT, &a.T, "tokens per sequence (default 256)", 0, 0},
        {"steps", ML_OPT_INT, &a.steps, "timed steps (default 3)", 0, 0},
        {"warmup", ML_OPT_INT, &a.warmup, "untimed steps first (default 1)", 0, 0},
        {"profile", ML_OPT_FLAG, &a.profile, "time every kernel over the timed steps and print the table", 0, 0},
        {"recompute", ML_OPT_FLAG, &a.recompute, "activation recomputation: keep only block inputs", 0, 0},
        {"out", ML_OPT_STR, &out, "also write the result (with the profile) as JSON to this file", 0, 0},
        {"json", ML_OPT_FLAG, &json, "print one JSON line only", 0, 0},
        {"scheme", ML_OPT_STR, &a.quant_scheme, "time a QAT step: fake-quantized weights (quant/quant.h schemes)", 0, 0},
        {"embedding", ML_OPT_STR, &a.quant_embedding, "with --scheme: the embedding's grid", 0, 0},
        {"act", ML_OPT_STR, &a.quant_act, "with --scheme: activation rounding (q8_0 | int8-token)", 0, 0},
        {"paired", ML_OPT_FLAG, &a.paired, "with --scheme: full-precision steps alternating with the QAT steps (same load); with --precision bf16: fp32 steps alternating with the bf16 ones", 0, 0},
        {"paired-engine", ML_OPT_STR, &a.paired_engine, "with --paired --scheme: the paired steps are the same QAT step on this GEMM engine (e.g. openblas against --gemm-engine int8)", 0, 0},
        {"teacher", ML_OPT_FLAG, &a.teacher, "also time a full-precision teacher's forward on the batch (reported apart)", 0, 0},
        {"precision", ML_OPT_STR, &precision, "fp32 | bf16: arithmetic of the model's GEMMs and attention tiles (default fp32)", 0, 0},
        {"gemm-engine", ML_OPT_STR, &engine, "auto | openblas | bf16 | onednn | int8: engine of the bf16 GEMMs and of QAT's integer-grid forwards (openblas: fp32 fake-quant forward; default auto)", 0, 0},
        {"gemm", ML_OPT_FLAG, &gemm, "instead: every GEMM engine on MobileLLM-125M's shapes (no --config)", 0, 0},
        {"tokens", ML_OPT_INT, &tokens, "with --gemm: rows (tokens) of each product (default 1024)", 0, 0},
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    int rc = ml_args_parse("bench",
                           "--config CFG [--batch B] [--seq T] [--steps N] [--precision fp32|bf16] [--gemm-engine E] [--profile] "
                           "[--recompute] [--out FILE.json] | --gemm [--tokens N]",
                           opts, n_opts, argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    const char *warn = ml_blas_kernel_warning();
    if (gemm) {
        ml_gemm_bench_row rows[ML_GEMM_BENCH_ROWS];
        int n = 0;
        if (tokens < 1) {
            fprintf(stderr, "mobilellm bench: --tokens must be positive\n");
            return 2;
        }
        if (ml_bench_gemm(tokens, 1.0, rows, &n) != ML_OK) return ml_cli_fail("bench");
        char engines[1024];
        ml_gemm_engines_describe(engines, sizeof engines);
        if (!json) {
            printf("%s\n", engines);
            if (warn) printf("%s\n", warn);
            printf("%-36s %6s %6s %6s  %9s %9s %9s %9s  %-8s %s\n", "GEMM (GFLOP/s, best of repetitions)", "M", "N", "K",
                   "openblas", "bf16", "onednn", "int8", "auto", "oneDNN kernel");
            for (int i = 0; i < n; i++) {
                char col[ML_GEMM_NUM_ENGINES - 1][16];
                for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++)
                    if (rows[i].gflops[e] > 0) snprintf(col[e - 1], sizeof col[0], "%.1f", rows[i].gflops[e]);
                    else snprintf(col[e - 1], sizeof col[0], "-");
                printf("%-36s %6d %6d %6d  %9s %9s %9s %9s  %-8s %s\n", rows[i].name, rows[i].M, rows[i].N, rows[i].K,
                       col[0], col[1], col[2], col[3], ml_gemm_engine_name(rows[i].chosen), rows[i].onednn_impl);
            }
            printf("int8 forward (GOP/s; int8-token inputs): int4-g32 and per-row int4 weights on our kernel, per-row on "
                   "oneDNN\n%-36s %9s %9s %9s  %s\n", "shape", "g32", "row", "row dnnl", "oneDNN int8 kernel");
            for (int i = 0; i < n; i++)
                if (rows[i].gflops[ML_GEMM_INT8] > 0)
                    printf("%-36s %9.1f %9.1f %9.1f  %s\n", rows[i].name, rows[i].gflops[ML_GEMM_INT8], rows[i].int8_row_gops,
                           rows[i].int8_onednn_gops, rows[i].onednn_int8_impl);
        }
        for (int i = 0; i < n; i++)
            printf("{\"gemm\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"openblas_gflops\":%.1f,\"bf16_gflops\":%.1f,"
                   "\"onednn_gflops\":%.1f,\"int8_gops\":%.1f,\"int8_row_gops\":%.1f,\"int8_onednn_gops\":%.1f,"
                   "\"onednn_int8_impl\":\"%s\",\"auto\":\"%s\",\"onednn_impl\":\"%s\",\"blas_kernel\":\"%s\",\"threads\":%d}\n",
                   rows[i].name, rows[i].M, rows[i].N, rows[i].K, rows[i].gflops[ML_GEMM_OPENBLAS],
                   rows[i].gflops[ML_GEMM_BF16], rows[i].gflops[ML_GEMM_ONEDNN], rows[i].gflops[ML_GEMM_INT8],
                   rows[i].int8_row_gops, rows[i].int8_onednn_gops, rows[i].onednn_int8_impl,
                   ml_gemm_engine_name(rows[i].chosen), rows[i].onednn_impl, ml_blas_corename(), ml_num_threads());
        return 0;
    }
    if (!config) {
        fprintf(stderr, "mobilellm bench: missing --config (or --gemm)\n");
        return 2;
    }
    ml_precision prec;
    if (ml_precision_parse(precision, &prec) != ML_OK) return ml_cli_fail("bench");
    a.bf16 = prec == ML_PRECISION_BF16;
    if (ml_gemm_engine_parse(engine, &a.gemm_engine) != ML_OK) return ml_cli_fail("bench");
    if (a.B < 1 || a.T < 1 || a.steps < 1 || a.warmup < 0) {
        fprintf(stderr, "mobilellm bench: --batch, --seq and --steps must be positive\n");
        return 2;
    }
    if (ml_prof_enable_from_env()) a.profile = 1;
    ml_prof_enable(0); /* the profile covers the timed steps only */
    ml_config cfg;
    ml_bench_result r;
    if (ml_config_load(&cfg, config) != ML_OK || ml_bench_run(&cfg, &a, &r) != ML_OK) return ml_cli_fail("bench");
    if (out && ml_bench_write_json(out, &cfg, &a, &r) != ML_OK) return ml_cli_fail("bench");
    const double MiB = 1048576.0;
    if (!json) {
        printf("model        %s, %lld parameters, %.3f GFLOP per token (train)\n", cfg.name, (long long)r.params,
               r.flops_per_token / 1e9);
        printf("batch        %d x %d, %d threads, precision %s, attention tiles %s\n", a.B, a.T, r.threads, precision,
               ml_attn_kernel_name(r.attn_kernel));
        printf("step         %.1f ms (forward %.1f, head+loss %.1f, backward %.1f, update %.1f)\n", r.ms_per_step,
               r.ms_forward, r.ms_head, r.ms_backward, r.ms_update);
        printf("throughput   %.1f tokens/s, %.1f GFLOP/s\n", r.tokens_per_s, r.gflops);
        if (a.quant_scheme)
            printf("quantized    %s: fake quantization of the weights %.1f ms of the forward\n", a.quant_scheme, r.ms_refresh);
        if (a.teacher) printf("teacher      full-precision forward %.1f ms (not in the step)\n", r.ms_teacher);
        if (a.paired && a.quant_scheme && a.paired_engine)
            printf("paired       QAT step on %s %.1f ms, on %s %.1f ms: %.3fx\n", a.paired_engine, r.ms_per_step_fp, engine,
                   r.ms_per_step, r.ms_per_step / r.ms_per_step_fp);
        else if (a.paired && a.quant_scheme)
            printf("paired       full-precision step %.1f ms, QAT step %.1f ms: %.3fx\n", r.ms_per_step_fp, r.ms_per_step,
                   r.ms_per_step / r.ms_per_step_fp);
        else if (a.paired && a.bf16)
            printf("paired       fp32 step %.1f ms, bf16 step %.1f ms: bf16 takes %.3fx the fp32 time\n", r.ms_per_step_fp,
                   r.ms_per_step, r.ms_per_step / r.ms_per_step_fp);
        printf("sgemm probe  %.1f GFLOP/s  ->  MFU %.1f%%\n", r.sgemm_gflops, 100 * r.mfu);
        if (a.bf16 && r.bf16_probe_gflops > 0)
            printf("bf16 probe   %.1f GFLOP/s on %s  ->  %.1f%% of the bf16 ceiling\n", r.bf16_probe_gflops,
                   ml_gemm_engine_name(r.probe_engine), 100 * r.gflops / r.bf16_probe_gflops);
        printf("memory       minimum %.1f MiB = parameters %.1f + gradients %.1f + AdamW moments %.1f + saved "
               "activations %.1f (scratch %.1f more)\n",
               (double)r.min_bytes / MiB, (double)r.param_bytes / MiB, (double)r.grad_bytes / MiB,
               (double)r.moment_bytes / MiB, (double)r.act_saved_bytes / MiB, (double)r.act_scratch_bytes / MiB);
        if (r.bf16_activations) printf("activations  bf16 where only products or SwiGLU read them (norm outputs, gate, up)\n");
        printf("peak RSS     %.1f MiB = %.2fx the minimum\n", (double)r.peak_rss / MiB, r.mem_ratio);
        printf("%s\n", r.blas);
        if (warn) printf("%s\n", warn);
        printf("products     engine per product over the timed steps (layout: A, B transposed or not)\n");
        for (int i = 0; i < r.n_gemm; i++) {
            const ml_gemm_stat *g = &r.gemm[i];
            printf("  %6d x %6d x %6d %c%c  %-8s %5.1f calls/step %8.2f ms/step (%6.2f converting) %8.1f GFLOP/s\n",
                   g->M, g->N, g->K, g->transA ? 'T' : 'N', g->transB ? 'T' : 'N', ml_gemm_engine_name(g->engine),
                   (double)g->calls / a.steps, 1e3 * g->seconds / a.steps, 1e3 * g->convert_seconds / a.steps,
                   g->seconds > 0 ? g->flops / g->seconds / 1e9 : 0);
        }
        if (r.profiled) {
            printf("profile (%d timed steps)\n", a.steps);
            char table[8192];
            size_t len = 0;
            ml_prof_table(table, sizeof table, &len, r.wall_seconds, a.steps);
            fputs(table, stdout);
        }
    }
    size_t need = ml_bench_json(NULL, 0, &cfg, &a, &r) + 1;
    char line[16384];
    if (need > sizeof line) need = sizeof line;
    ml_bench_json(line, need, &cfg, &a, &r);
    printf("%s\n", line);
    return 0;
}
