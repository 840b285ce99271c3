#include "train/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "common/atomic_file.h"
#include "common/prof.h"
#include "common/rng.h"
#include "common/sysinfo.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/ops/gemm.h"
#include "model/ops/gemm_int8.h"
#include "model/ops/gemm_onednn.h"
#include "optim/optimizer.h"
#include "quant/quant.h"
#include "train/trainer.h"

double ml_sgemm_probe(int n, int reps) { return ml_gemm_probe(ML_GEMM_OPENBLAS, n, reps); }

double ml_gemm_probe(ml_gemm_engine engine, int n, int reps) {
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
    ml_gemm(engine, 0, 0, n, n, n, a, n, b, n, 0.0f, c, n); /* warm up */
    double t0 = ml_now_seconds();
    for (int r = 0; r < reps; r++) ml_gemm(engine, 0, 0, n, n, n, a, n, b, n, 0.0f, c, n);
    double dt = ml_now_seconds() - t0;
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n * reps / dt / 1e9;
}

/* The forward Y = X W^T on the int8 engine, X as int8-token codes (quant/), W packed once: int4-g32 codes on our
 * kernel (gflops[ML_GEMM_INT8]), per-row int4 codes (int4-channel-lsq's grid) on our kernel and on oneDNN's u8 x s8
 * matmul with the finish (int8_row_gops, int8_onednn_gops). The products alone are timed, calls alternating (quantizing
 * X is not: the fp32 path's fake quantization of X costs the same). */
static ml_status bench_int8(ml_gemm_bench_row *r, const float *x, const float *w, float *y, int tokens, int in, int out,
                            double seconds) {
    const int onednn = ml_onednn_int8_available();
    int8_t *codes = malloc((size_t)out * in), *rcodes = malloc((size_t)out * in);
    float *ws = malloc(sizeof(float) * (size_t)out * (in / 32)), *rs = malloc(sizeof(float) * (size_t)out),
          *xs = malloc(sizeof(float) * (size_t)tokens);
    uint8_t *u = malloc((size_t)tokens * in);
    int32_t *off = malloc(sizeof(int32_t) * (size_t)tokens), *acc = malloc(sizeof(int32_t) * (size_t)tokens * out);
    const int g32 = ml_int8_group(in, 32, in), grow = ml_int8_group(in, in, in);
    void *mem = ml_aligned_calloc(ml_int8_matrix_bytes(out, in, g32, 0)),
         *rmem = ml_aligned_calloc(ml_int8_matrix_bytes(out, in, grow, onednn));
    ml_status s = ML_OK;
    if (!codes || !rcodes || !ws || !rs || !xs || !u || !off || !acc || !mem || !rmem)
        s = ml_fail(ML_ERR_NOMEM, "GEMM benchmark: out of memory");
    if (s == ML_OK) {
        for (int o = 0; o < out; o++) {
            ml_q_sym(codes + (size_t)o * in, ws + (size_t)o * (in / 32), w + (size_t)o * in, in, 32, 4);
            ml_q_sym(rcodes + (size_t)o * in, rs + o, w + (size_t)o * in, in, in, 4);
        }
        for (int t = 0; t < tokens; t++) ml_q_act_int8_token(u + (size_t)t * in, xs + t, off + t, x + (size_t)t * in, in);
        ml_int8_matrix W, R;
        ml_int8_pack(&W, mem, codes, ws, 32, out, in, g32, 0);
        ml_int8_pack(&R, rmem, rcodes, rs, in, out, in, grow, onednn);
        double best[3] = {1e30, 1e30, 1e30}, spent = 0;
        for (int rep = 0; rep < 3 || (spent < seconds && rep < 1000); rep++)
            for (int k = 0; k < 2 + onednn; k++) {
                const double t0 = ml_now_seconds();
                if (k == 0) ml_gemm_int8(y, u, xs, in, off, &W, tokens);
                else if (k == 1) ml_gemm_int8(y, u, xs, in, off, &R, tokens);
                else if (ml_onednn_gemm_u8s8(tokens, out, in, u, R.plain, acc) == 0)
                    ml_int8_finish_rows(y, acc, xs, off, &R, tokens);
                const double dt = ml_now_seconds() - t0;
                if (rep > 0 && dt < best[k]) best[k] = dt;
                spent += dt;
            }
        const double ops = 2.0 * tokens * (double)in * out / 1e9;
        r->gflops[ML_GEMM_INT8] = ops / best[0];
        r->int8_row_gops = ops / best[1];
        r->int8_onednn_gops = onednn ? ops / best[2] : 0;
        ml_onednn_int8_impl_name(tokens, out, in, r->onednn_int8_impl, sizeof r->onednn_int8_impl);
    }
    free(codes), free(rcodes), free(ws), free(rs), free(xs), free(u), free(off), free(acc), free(mem), free(rmem);
    return s;
}

ml_status ml_bench_gemm(int tokens, double seconds_each, ml_gemm_bench_row *rows, int *n_rows) {
    static const struct {
        const char *name;
        int in, out;
    } shapes[] = {{"576->576 (q, o)", 576, 576},         {"576->192 (k, v)", 576, 192},
                  {"576->1728 (qkv-ish)", 576, 1728},   {"576->1536 (gate/up)", 576, 1536},
                  {"1536->576 (down)", 1536, 576},      {"576->32000 (head)", 576, 32000}};
    enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
    if (tokens < 1) return ml_fail(ML_ERR_ARG, "GEMM benchmark: tokens must be positive");
    int engines[ML_GEMM_NUM_ENGINES], n_eng = 0;
    for (int e = ML_GEMM_OPENBLAS; e < ML_GEMM_NUM_ENGINES; e++) /* int8 has its own operands: timed below */
        if (e != ML_GEMM_INT8 && ml_gemm_engine_available((ml_gemm_engine)e)) engines[n_eng++] = e;
    *n_rows = 0;
    for (int s = 0; s < NSHAPES; s++) {
        const int in = shapes[s].in, out = shapes[s].out;
        float *x = malloc(sizeof(float) * (size_t)tokens * in), *w = malloc(sizeof(float) * (size_t)out * in),
              *y = malloc(sizeof(float) * (size_t)tokens * out), *dx = malloc(sizeof(float) * (size_t)tokens * in),
              *dw = calloc((size_t)out * in, sizeof(float));
        if (!x || !w || !y || !dx || !dw) {
            free(x), free(w), free(y), free(dx), free(dw);
            return ml_fail(ML_ERR_NOMEM, "GEMM benchmark: out of memory");
        }
        ml_rng rng;
        ml_rng_seed(&rng, 7);
        for (size_t i = 0; i < (size_t)tokens * in; i++) x[i] = (float)ml_rng_normal(&rng);
        for (size_t i = 0; i < (size_t)out * in; i++) w[i] = 0.02f * (float)ml_rng_normal(&rng);
        for (size_t i = 0; i < (size_t)tokens * out; i++) y[i] = 1e-3f * (float)ml_rng_normal(&rng);
        for (int layout = 0; layout < 3; layout++) {
            ml_gemm_bench_row *r = &rows[(*n_rows)++];
            memset(r, 0, sizeof *r);
            /* forward Y[t,out] = X W^T; dX[t,in] = dY W; dW[out,in] += dY^T X */
            static const char *lname[3] = {"fwd Y=XW^T", "bwd dX=dYW", "bwd dW+=dY^TX"};
            snprintf(r->name, sizeof r->name, "%s %s", shapes[s].name, lname[layout]);
            int M = layout == 2 ? out : tokens, N = layout == 0 ? out : in, K = layout == 0 ? in : layout == 1 ? out : tokens;
            int ta = layout == 2, tb = layout == 0;
            const float *A = layout == 0 ? x : y, *B = layout == 2 ? x : w;
            int lda = ta ? M : K, ldb = tb ? K : N;
            float *C = layout == 0 ? y : layout == 1 ? dx : dw, beta = layout == 2 ? 1.0f : 0.0f;
            r->M = M, r->N = N, r->K = K, r->transA = ta, r->transB = tb;
            r->chosen = ml_gemm_choose(1, ta, tb, M, N, K);
            ml_onednn_impl_name(ta, tb, M, N, K, r->onednn_impl, sizeof r->onednn_impl);
            const double flops = 2.0 * M * (double)N * K;
            double best[ML_GEMM_NUM_ENGINES], spent = 0;
            for (int e = 0; e < ML_GEMM_NUM_ENGINES; e++) best[e] = 1e30;
            for (int rep = 0; rep < 3 || (spent < n_eng * seconds_each && rep < 1000); rep++)
                for (int i = 0; i < n_eng; i++) { /* engines alternate: the same load for each */
                    double t0 = ml_now_seconds();
                    ml_gemm((ml_gemm_engine)engines[i], ta, tb, M, N, K, A, lda, B, ldb, beta, C, N);
                    double dt = ml_now_seconds() - t0;
                    if (rep > 0 && dt < best[engines[i]]) best[engines[i]] = dt; /* the first is a warm-up */
                    spent += dt;
                }
            for (int i = 0; i < n_eng; i++) r->gflops[engines[i]] = flops / best[engines[i]] / 1e9;
            if (layout == 0) { /* the forward on int8 codes (int4-g32 weights, int8-token inputs) */
                ML_TRY(bench_int8(r, x, w, y, tokens, in, out, n_eng * seconds_each));
            }
        }
        free(x), free(w), free(y), free(dx), free(dw);
    }
    return ML_OK;
}

ml_status ml_bench_run(const ml_config *cfg, const ml_bench_args *a, ml_bench_result *r) {
    memset(r, 0, sizeof *r);
    ml_model m;
    ML_TRY(ml_model_create(&m, cfg));
    {
        ml_status ps = ml_model_set_precision(&m, a->bf16 ? ML_PRECISION_BF16 : ML_PRECISION_FP32);
        if (ps == ML_OK) ps = ml_model_set_gemm_engine(&m, a->gemm_engine);
        if (ps != ML_OK) {
            ml_model_free(&m);
            return ps;
        }
    }
    ml_model_init_weights(&m, a->seed);
    m.recompute = a->recompute;
    ml_model teacher;
    memset(&teacher, 0, sizeof teacher);
    ml_status s = ML_OK;
    if (a->teacher) { /* the full-precision copy, forward only (as the trainer keeps it) */
        s = ml_model_create(&teacher, cfg);
        if (s == ML_OK) {
            memcpy(teacher.param_arena.base, m.param_arena.base, m.param_arena.capacity * sizeof(float));
            teacher.recompute = 1;
            s = ml_model_reserve(&teacher, a->B, a->T, a->T);
        }
    }
    ml_model fpm; /* paired: the same weights, no recipe (with a scheme) or fp32 GEMMs (bf16 without one) */
    ml_optimizer fpo;
    memset(&fpm, 0, sizeof fpm);
    memset(&fpo, 0, sizeof fpo);
    const int paired = a->paired && (a->quant_scheme || a->bf16);
    if (s == ML_OK && paired) {
        s = ml_model_create(&fpm, cfg);
        if (s == ML_OK) {
            memcpy(fpm.param_arena.base, m.param_arena.base, m.param_arena.capacity * sizeof(float));
            fpm.recompute = a->recompute;
            if (a->quant_scheme) {
                fpm.precision = m.precision;
                fpm.gemm_request = m.gemm_request;
                fpm.gemm_engine = m.gemm_engine;
                fpm.attn_kernel = m.attn_kernel;
            }
            if (a->quant_scheme && a->paired_engine) { /* the same QAT step on another engine */
                ml_gemm_engine pe;
                s = ml_gemm_engine_parse(a->paired_engine, &pe);
                if (s == ML_OK) s = ml_model_set_gemm_engine(&fpm, pe);
                if (s == ML_OK)
                    s = ml_quant_prepare(&fpm, a->quant_scheme, a->quant_embedding, a->quant_act, cfg->name);
            }
            if (s == ML_OK) s = ml_model_reserve(&fpm, a->B, a->T, a->T);
        }
        ml_optim_config foc = ml_optim_defaults(ML_OPTIM_ADAMW);
        if (s == ML_OK) s = ml_optimizer_for_model(&fpo, &fpm, &foc);
    }
    if (s == ML_OK && a->quant_scheme) s = ml_quant_prepare(&m, a->quant_scheme, a->quant_embedding, a->quant_act, cfg->name);
    if (s == ML_OK) s = ml_model_reserve(&m, a->B, a->T, a->T);
    ml_optimizer opt;
    ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAMW);
    memset(&opt, 0, sizeof opt);
    if (s == ML_OK) s = ml_optimizer_for_model(&opt, &m, &oc);
    if (s != ML_OK) {
        ml_model_free(&m);
        if (a->teacher) ml_model_free(&teacher);
        ml_optim_free(&fpo);
        ml_model_free(&fpm);
        return s;
    }
    const size_t N = (size_t)a->B * a->T;
    int32_t *tok = malloc(N * sizeof(int32_t)), *tgt = malloc(N * sizeof(int32_t));
    ml_rng rng;
    ml_rng_seed(&rng, a->seed);
    for (size_t i = 0; i < N; i++) {
        tok[i] = (int32_t)ml_rng_below(&rng, cfg->vocab_size);
        tgt[i] = (int32_t)ml_rng_below(&rng, cfg->vocab_size);
    }
    ml_batch b = {.tokens = tok, .targets = tgt, .B = a->B, .T = a->T};
    double t_fwd = 0, t_head = 0, t_bwd = 0, t_upd = 0, t_ref = 0, t_teach = 0, t_fp = 0;
    const int prof_was = ml_prof_enabled();
    for (int step = 0; step < a->warmup + a->steps && s == ML_OK; step++) {
        if (step == a->warmup) ml_gemm_stats_reset(); /* the products of the timed steps */
        if (step == a->warmup && a->profile) { /* profile the timed steps only */
            ml_prof_reset();
            ml_prof_enable(1);
        }
        if (paired) { /* the full-precision (or fp32) step first, then the measured one: same load for both */
            double f0 = ml_now_seconds(), fl;
            int64_t fn;
            ml_model_zero_grad(&fpm);
            s = ml_model_forward(&fpm, &b);
            if (s == ML_OK) s = ml_model_head_loss(&fpm, &b, 1.0f / (float)N, &fl, &fn);
            if (s == ML_OK) s = ml_model_backward(&fpm, &b);
            if (s == ML_OK) ml_model_grads_to_latent(&fpm);
            if (s == ML_OK) s = ml_optim_step(&fpo, fpm.param_arena.base, fpm.grad_arena.base, 1e-4f);
            ml_model_weights_changed(&fpm);
            if (step >= a->warmup) t_fp += ml_now_seconds() - f0;
            if (s != ML_OK) break;
        }
        double t0 = ml_now_seconds();
        ml_model_zero_grad(&m);
        double tr = ml_now_seconds();
        s = ml_model_refresh_weights(&m);
        tr = ml_now_seconds() - tr;
        if (s == ML_OK) s = ml_model_forward(&m, &b);
        double t1 = ml_now_seconds();
        if (s == ML_OK && a->teacher) {
            s = ml_model_forward(&teacher, &b);
            double tt = ml_now_seconds() - t1;
            if (step >= a->warmup) t_teach += tt;
            t1 = ml_now_seconds();
            t0 += tt; /* not part of the step's figure */
        }
        double loss;
        int64_t n;
        if (s == ML_OK) s = ml_model_head_loss(&m, &b, 1.0f / (float)N, &loss, &n);
        double t2 = ml_now_seconds();
        if (s == ML_OK) s = ml_model_backward(&m, &b);
        if (s == ML_OK) ml_model_grads_to_latent(&m);
        double t3 = ml_now_seconds();
        uint16_t *mirror = ml_model_bf16_mirror(&m);
        if (s == ML_OK)
            ML_PROFILE(ML_PROF_OPTIMIZER) s = ml_optim_step_mirrored(&opt, m.param_arena.base, m.grad_arena.base, 1e-4f, mirror);
        ml_model_weights_stepped(&m, mirror && s == ML_OK);
        double t4 = ml_now_seconds();
        if (step >= a->warmup) {
            t_fwd += t1 - t0, t_head += t2 - t1, t_bwd += t3 - t2, t_upd += t4 - t3, t_ref += tr;
        }
    }
    if (a->profile) ml_prof_enable(prof_was);
    if (s == ML_OK) {
        double total = t_fwd + t_head + t_bwd + t_upd;
        r->wall_seconds = total;
        r->profiled = a->profile;
        r->ms_per_step = 1e3 * total / a->steps;
        r->ms_forward = 1e3 * t_fwd / a->steps;
        r->ms_head = 1e3 * t_head / a->steps;
        r->ms_backward = 1e3 * t_bwd / a->steps;
        r->ms_update = 1e3 * t_upd / a->steps;
        r->ms_refresh = 1e3 * t_ref / a->steps;
        r->ms_teacher = 1e3 * t_teach / a->steps;
        r->ms_per_step_fp = 1e3 * t_fp / a->steps;
        r->tokens_per_s = (double)N * a->steps / total;
        r->flops_per_token = ml_config_train_flops_per_token(cfg, a->T);
        r->gflops = r->flops_per_token * r->tokens_per_s / 1e9;
        r->params = ml_config_num_params(cfg);
        r->peak_rss = ml_peak_rss_bytes();
        r->param_bytes = m.param_arena.capacity * sizeof(float);
        r->grad_bytes = m.grad_arena.capacity * sizeof(float);
        r->moment_bytes = (size_t)ml_optim_num_state(&opt) * opt.num_floats * sizeof(float);
        r->act_saved_bytes = m.act_saved_floats * sizeof(float);
        r->bf16_activations = m.act16;
        r->act_scratch_bytes = (m.act_arena.capacity - m.act_saved_floats) * sizeof(float);
        r->min_bytes = r->param_bytes + r->grad_bytes + r->moment_bytes + r->act_saved_bytes;
        r->mem_ratio = (double)r->peak_rss / (double)r->min_bytes;
        r->threads = ml_num_threads();
        r->attn_kernel = m.attn_kernel;
        ml_blas_describe(r->blas, sizeof r->blas);
        r->n_gemm = ml_gemm_stats(r->gemm, (int)(sizeof r->gemm / sizeof r->gemm[0]));
        if (r->n_gemm > (int)(sizeof r->gemm / sizeof r->gemm[0])) r->n_gemm = (int)(sizeof r->gemm / sizeof r->gemm[0]);
        r->sgemm_gflops = ml_sgemm_probe(2048, 5);
        r->mfu = r->gflops / r->sgemm_gflops;
        if (a->bf16) { /* the ceiling of the engine this run's large products use */
            r->probe_engine = m.gemm_engine == ML_GEMM_AUTO ? ml_gemm_choose(1, 0, 0, 2048, 2048, 2048) : m.gemm_engine;
            r->bf16_probe_gflops = ml_gemm_probe(r->probe_engine, 2048, 5);
        }
    }
    free(tok), free(tgt);
    ml_optim_free(&opt);
    ml_model_free(&m);
    if (a->teacher) ml_model_free(&teacher);
    if (paired) {
        ml_optim_free(&fpo);
        ml_model_free(&fpm);
    }
    return s;
}

size_t ml_bench_json(char *buf, size_t n, const ml_config *cfg, const ml_bench_args *a, const ml_bench_result *r) {
    const double MiB = 1048576.0;
    size_t len = 0;
    int k = snprintf(
        buf, n,
        "{\"impl\":\"mobilellm.c\",\"model\":\"%s\",\"params\":%lld,\"batch\":%d,\"seq\":%d,\"threads\":%d,"
        "\"recompute\":%s,\"precision\":\"%s\",\"quant\":\"%s%s%s%s%s\",\"ms_refresh\":%.2f,\"ms_teacher\":%.2f,\"ms_per_step_fp\":%.2f,\"steps\":%d,\"ms_per_step\":%.2f,\"ms_forward\":%.2f,\"ms_head\":%.2f,\"ms_backward\":%.2f,"
        "\"ms_update\":%.2f,\"tokens_per_s\":%.2f,\"flops_per_token\":%.6g,\"gflops\":%.2f,\"sgemm_gflops\":%.2f,"
        "\"mfu\":%.4f,\"peak_rss_mib\":%.1f,\"param_mib\":%.1f,\"grad_mib\":%.1f,\"moment_mib\":%.1f,"
        "\"act_saved_mib\":%.1f,\"act_scratch_mib\":%.1f,\"bf16_activations\":%s,\"min_mib\":%.1f,"
        "\"mem_ratio\":%.3f,\"blas_kernel\":\"%s\"",
        cfg->name, (long long)r->params, a->B, a->T, r->threads, a->recompute ? "true" : "false", a->bf16 ? "bf16" : "fp32",
        a->quant_scheme ? a->quant_scheme : "none", a->quant_embedding ? " embedding=" : "",
        a->quant_embedding ? a->quant_embedding : "", a->quant_act ? " act=" : "", a->quant_act ? a->quant_act : "",
        r->ms_refresh, r->ms_teacher, r->ms_per_step_fp, a->steps, r->ms_per_step, r->ms_forward, r->ms_head,
        r->ms_backward, r->ms_update, r->tokens_per_s, r->flops_per_token, r->gflops, r->sgemm_gflops, r->mfu,
        (double)r->peak_rss / MiB, (double)r->param_bytes / MiB, (double)r->grad_bytes / MiB,
        (double)r->moment_bytes / MiB, (double)r->act_saved_bytes / MiB, (double)r->act_scratch_bytes / MiB,
        r->bf16_activations ? "true" : "false", (double)r->min_bytes / MiB, r->mem_ratio, ml_blas_corename());
    if (k > 0) len = (size_t)k;
    k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0,
                 ",\"gemm_engine\":\"%s\",\"paired_engine\":\"%s\",\"bf16_probe_engine\":\"%s\",\"bf16_probe_gflops\":%.2f,"
                 "\"attn_kernel\":\"%s\",\"gemm\":[",
                 ml_gemm_engine_name(a->gemm_engine), a->paired && a->paired_engine ? a->paired_engine : "",
                 a->bf16 ? ml_gemm_engine_name(r->probe_engine) : "",
                 r->bf16_probe_gflops, ml_attn_kernel_name(r->attn_kernel));
    if (k > 0) len += (size_t)k;
    for (int i = 0; i < r->n_gemm; i++) {
        const ml_gemm_stat *g = &r->gemm[i];
        k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0,
                     "%s{\"M\":%d,\"N\":%d,\"K\":%d,\"layout\":\"%c%c\",\"engine\":\"%s\",\"calls_per_step\":%.2f,"
                     "\"ms_per_step\":%.3f,\"ms_converting_per_step\":%.3f,\"gflops\":%.1f}",
                     i ? "," : "", g->M, g->N, g->K, g->transA ? 'T' : 'N', g->transB ? 'T' : 'N',
                     ml_gemm_engine_name(g->engine), (double)g->calls / a->steps, 1e3 * g->seconds / a->steps,
                     1e3 * g->convert_seconds / a->steps,
                     g->seconds > 0 ? g->flops / g->seconds / 1e9 : 0.0);
        if (k > 0) len += (size_t)k;
    }
    k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "]");
    if (k > 0) len += (size_t)k;
    if (r->profiled) {
        k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, ",\"profile\":");
        if (k > 0) len += (size_t)k;
        ml_prof_json(buf, n, &len, r->wall_seconds, a->steps);
    }
    k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "}");
    if (k > 0) len += (size_t)k;
    return len;
}

ml_status ml_bench_write_json(const char *path, const ml_config *cfg, const ml_bench_args *a,
                              const ml_bench_result *r) {
    size_t need = ml_bench_json(NULL, 0, cfg, a, r) + 1;
    char *buf = malloc(need);
    if (!buf) return ml_fail(ML_ERR_NOMEM, "out of memory for the benchmark JSON");
    ml_bench_json(buf, need, cfg, a, r);
    ml_atomic_file f;
    ml_status s = ml_atomic_begin(&f, path, 1);
    if (s == ML_OK) {
        if (fprintf(f.fp, "%s\n", buf) < 0) {
            ml_atomic_abort(&f);
            s = ml_fail(ML_ERR_IO, "%s: write failed", path);
        } else {
            s = ml_atomic_commit(&f);
        }
    }
    free(buf);
    return s;
}
