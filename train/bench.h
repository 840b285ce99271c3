/* Training-step benchmark: times forward + loss + backward + optimizer update on random tokens,
 * and an sgemm probe on the same threads, so MFU is measured against what this machine's BLAS
 * actually reaches rather than a datasheet number. Optionally profiles every kernel
 * (common/prof.h) and accounts for memory: the theoretical minimum of a step (parameters,
 * gradients, the two AdamW moments and the activations forward keeps for backward) next to the
 * process's peak RSS. */
#ifndef ML_BENCH_H
#define ML_BENCH_H

#include <stddef.h>

#include "model/config.h"
#include "model/ops/gemm.h"
#include "model/ops/ops.h"

typedef struct {
    int B, T, steps, warmup;
    uint64_t seed;
    int profile; /* 1: time every kernel over the timed steps (common/prof.h) */
    int recompute; /* activation recomputation (ml_model.recompute) */
    int bf16; /* --precision bf16: the model's GEMMs on bf16 inputs (model/ops/gemm.h) */
    ml_gemm_engine gemm_engine; /* engine of the bf16 GEMMs (AUTO: per shape, or ML_GEMM_ENGINE) */
    /* QAT step (quant/quant.h): the recipe on the model (scheme NULL: full precision); teacher: also time the
     * forward of a full-precision copy on the same batch (self-distillation's teacher), reported apart */
    const char *quant_scheme, *quant_embedding, *quant_act;
    int teacher;
    int paired; /* with a scheme: also a full-precision copy, its steps alternating with the QAT steps in this one
                   process (both see the same machine load), reported as ms_per_step_fp; with bf16 and no scheme the
                   copy is an fp32 model (fp32 vs bf16 under the same load) */
    const char *paired_engine; /* with paired and a scheme: the copy has the same recipe on this GEMM engine (e.g.
                                  "openblas": the fp32 fake-quant forward against int8), NULL: full precision */
} ml_bench_args;

typedef struct {
    double ms_per_step, tokens_per_s, gflops, sgemm_gflops, mfu;
    double ms_forward, ms_head, ms_backward, ms_update; /* per step */
    double ms_refresh; /* part of ms_forward: the weight transforms' forward (fake quantization), once per step */
    double ms_teacher; /* not in ms_per_step: a full-precision teacher's forward on the batch (with `teacher`) */
    double ms_per_step_fp; /* with `paired`: the full-precision step, timed alternately with the QAT step */
    double flops_per_token;
    double wall_seconds; /* of the timed steps, all together (the profile's denominator) */
    int64_t params;
    size_t peak_rss;
    /* memory, bytes: parameters, gradients and AdamW moments as allocated (fp32), the activations
     * the step keeps from forward to backward, and the activation arena's scratch (gradient
     * buffers, the LM-head chunk, RoPE tables). min_bytes = params + grads + moments + saved
     * activations; mem_ratio = peak_rss / min_bytes. */
    size_t param_bytes, grad_bytes, moment_bytes, act_saved_bytes, act_scratch_bytes, min_bytes;
    double mem_ratio;
    int threads;
    int profiled;
    char blas[256];
    ml_attn_kernel attn_kernel; /* the measured model's attention tiles */
    /* bf16 runs: the probe of the engine the large products use, at 2048^3 (the step's bf16 ceiling) */
    ml_gemm_engine probe_engine;
    double bf16_probe_gflops;
    int bf16_activations; /* the model kept bf16 activations (ml_model.act16) */
    /* every distinct product of the timed steps and the engine that ran it */
    ml_gemm_stat gemm[48];
    int n_gemm;
} ml_bench_result;

/* Sustained sgemm rate (GFLOP/s) of an n x n x n product on the current threads. */
double ml_sgemm_probe(int n, int reps);
/* The same on one GEMM engine (model/ops/gemm.h): the bf16 ceiling a bf16 step is held against. */
double ml_gemm_probe(ml_gemm_engine engine, int n, int reps);

/* One GEMM shape of the model in one of its layouts, timed on every engine this machine has (model/ops/gemm.h),
 * calls alternating so all see the same machine load; the best of the repetitions counts. gflops[e] is 0 for an
 * engine that is absent here. */
typedef struct {
    char name[48];
    int M, N, K, transA, transB;
    double gflops[ML_GEMM_NUM_ENGINES]; /* [ML_GEMM_OPENBLAS], [ML_GEMM_BF16], [ML_GEMM_ONEDNN]; [ML_GEMM_INT8]: the
                                           forward layout on int4-g32 x int8-token codes (GOP/s), 0 otherwise */
    double int8_row_gops, int8_onednn_gops; /* the forward with per-row int4 weights: our kernel, oneDNN (0: absent) */
    char onednn_int8_impl[64];              /* oneDNN's kernel for that ("brg:avx512_core_amx_int8", ...) or "-" */
    ml_gemm_engine chosen;              /* what the dispatcher picks for it in bf16 precision */
    char onednn_impl[64];               /* oneDNN's kernel for it ("brg:avx512_core_amx_bf16", ...) or "-" */
} ml_gemm_bench_row;

/* MobileLLM-125M's GEMMs at `tokens` rows (576->576 q and o, 576->192 k and v, 576->1728 qkv-ish, 576->1536
 * gate/up, 1536->576 down, 576->32000 head), each as forward Y = X W^T, backward dX = dY W and dW += dY^T X; the
 * forward also on the int8 engine (QAT's integer forward).
 * rows holds ML_GEMM_BENCH_ROWS. */
#define ML_GEMM_BENCH_ROWS 18
ml_status ml_bench_gemm(int tokens, double seconds_each, ml_gemm_bench_row *rows, int *n_rows);

ml_status ml_bench_run(const ml_config *cfg, const ml_bench_args *a, ml_bench_result *r);

/* The result as one JSON object (no newline) into buf (truncated to n): the figures above, and,
 * when the run was profiled, "profile": [{"name","ms_per_step","share","calls_per_step"}, ...,
 * {"name":"other",...}] (common/prof.h). Returns the length it needed. */
size_t ml_bench_json(char *buf, size_t n, const ml_config *cfg, const ml_bench_args *a, const ml_bench_result *r);
/* Write ml_bench_json's object and a newline to path, atomically. */
ml_status ml_bench_write_json(const char *path, const ml_config *cfg, const ml_bench_args *a,
                              const ml_bench_result *r);

#endif
