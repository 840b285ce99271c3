#include "train/bench.h"

#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/rng.h"
#include "common/sysinfo.h"
#include "optim/optimizer.h"
#include "train/model.h"
#include "train/trainer.h"

double ml_sgemm_probe(int n, int reps) {
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
          *c = malloc(sizeof(float) * (size_t)n * n);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm up */
    double t0 = ml_now_seconds();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = ml_now_seconds() - t0;
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n * reps / dt / 1e9;
}

ml_status ml_bench_run(const ml_config *cfg, const ml_bench_args *a, ml_bench_result *r) {
    memset(r, 0, sizeof *r);
    ml_model m;
    ML_TRY(ml_model_create(&m, cfg));
    ml_model_init_weights(&m, a->seed);
    ml_status s = ml_model_reserve(&m, a->B, a->T, a->T);
    ml_optimizer opt;
    ml_optim_config oc = ml_optim_defaults(ML_OPTIM_ADAMW);
    memset(&opt, 0, sizeof opt);
    if (s == ML_OK) s = ml_optimizer_for_model(&opt, &m, &oc);
    if (s != ML_OK) {
        ml_model_free(&m);
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
    double t_fwd = 0, t_head = 0, t_bwd = 0, t_upd = 0;
    for (int step = 0; step < a->warmup + a->steps && s == ML_OK; step++) {
        double t0 = ml_now_seconds();
        ml_model_zero_grad(&m);
        s = ml_model_forward(&m, &b);
        double t1 = ml_now_seconds();
        double loss;
        int64_t n;
        if (s == ML_OK) s = ml_model_head_loss(&m, &b, 1.0f / (float)N, &loss, &n);
        double t2 = ml_now_seconds();
        if (s == ML_OK) s = ml_model_backward(&m, &b);
        double t3 = ml_now_seconds();
        if (s == ML_OK) s = ml_optim_step(&opt, m.param_arena.base, m.grad_arena.base, 1e-4f);
        double t4 = ml_now_seconds();
        if (step >= a->warmup) {
            t_fwd += t1 - t0, t_head += t2 - t1, t_bwd += t3 - t2, t_upd += t4 - t3;
        }
    }
    if (s == ML_OK) {
        double total = t_fwd + t_head + t_bwd + t_upd;
        r->ms_per_step = 1e3 * total / a->steps;
        r->ms_forward = 1e3 * t_fwd / a->steps;
        r->ms_head = 1e3 * t_head / a->steps;
        r->ms_backward = 1e3 * t_bwd / a->steps;
        r->ms_update = 1e3 * t_upd / a->steps;
        r->tokens_per_s = (double)N * a->steps / total;
        r->flops_per_token = ml_config_train_flops_per_token(cfg, a->T);
        r->gflops = r->flops_per_token * r->tokens_per_s / 1e9;
        r->params = ml_config_num_params(cfg);
        r->peak_rss = ml_peak_rss_bytes();
        r->threads = ml_num_threads();
        ml_blas_describe(r->blas, sizeof r->blas);
        r->sgemm_gflops = ml_sgemm_probe(2048, 5);
        r->mfu = r->gflops / r->sgemm_gflops;
    }
    free(tok), free(tgt);
    ml_optim_free(&opt);
    ml_model_free(&m);
    return s;
}
