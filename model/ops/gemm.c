/* The GEMM dispatcher (see gemm.h). */
#include "model/ops/gemm.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/arena.h"
#include "common/sysinfo.h"
#include "model/ops/gemm_bf16.h"
#include "model/ops/gemm_int8.h"
#include "model/ops/gemm_onednn.h"
#include "model/ops/ops.h"

static const char *const names[ML_GEMM_NUM_ENGINES] = {"auto", "openblas", "bf16", "onednn", "int8"};

const char *ml_gemm_engine_name(ml_gemm_engine e) { return e >= 0 && e < ML_GEMM_NUM_ENGINES ? names[e] : "?"; }

ml_status ml_gemm_engine_parse(const char *name, ml_gemm_engine *e) {
    for (int i = 0; i < ML_GEMM_NUM_ENGINES; i++)
        if (name && !strcmp(name, names[i])) {
            *e = (ml_gemm_engine)i;
            return ML_OK;
        }
    return ml_fail(ML_ERR_ARG, "unknown GEMM engine '%s' (auto | openblas | bf16 | onednn | int8)", name ? name : "");
}

/* ---------------------------------------------------------------- CPU features */

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static ml_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

/* CPUID leaf 7: EBX bit 16 AVX512F; ECX bit 11 AVX512-VNNI; EDX bit 22 AMX-BF16, 23 AVX512-FP16, 24 AMX-TILE,
 * 25 AMX-INT8; subleaf 1 EAX bit 5 AVX512-BF16. The OS must save the state: XCR0 bits 5-7 (opmask, ZMM) for
 * AVX-512 and bits 17-18 (XTILECFG, XTILEDATA) for AMX. */
static void detect(void) {
    ml_cpu_features *f = &features;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* no OSXSAVE: no AVX state at all */
    const uint64_t xcr0 = xgetbv0();
    const int os_avx512 = (xcr0 & 0xE6) == 0xE6, os_amx = (xcr0 & 0x60000) == 0x60000;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    f->avx512f = os_avx512 && (b >> 16 & 1);
    f->avx512_vnni = f->avx512f && (c >> 11 & 1);
    f->avx512_fp16 = f->avx512f && (d >> 23 & 1);
    f->amx_tile = os_amx && (d >> 24 & 1);
    f->amx_bf16 = f->amx_tile && (d >> 22 & 1);
    f->amx_int8 = f->amx_tile && (d >> 25 & 1);
    unsigned max_sub = a;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) f->avx512_bf16 = f->avx512f && (a >> 5 & 1);
}

const ml_cpu_features *ml_cpu_features_get(void) {
    pthread_once(&features_once, detect);
    return &features;
}

void ml_cpu_features_describe(char *buf, size_t n) {
    const ml_cpu_features *f = ml_cpu_features_get();
    const struct {
        int on;
        const char *name;
    } list[] = {{f->avx512f, "avx512f"},     {f->avx512_vnni, "avx512_vnni"}, {f->avx512_bf16, "avx512_bf16"},
                {f->avx512_fp16, "avx512_fp16"}, {f->amx_tile, "amx_tile"},       {f->amx_bf16, "amx_bf16"},
                {f->amx_int8, "amx_int8"}};
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].on && len < n) len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? " " : "", list[i].name);
    if (!len) snprintf(buf, n, "no AVX-512");
}

/* ---------------------------------------------------------------- engines */

int ml_gemm_engine_available(ml_gemm_engine e) {
    switch (e) {
    case ML_GEMM_AUTO:
    case ML_GEMM_OPENBLAS: return 1;
    case ML_GEMM_BF16: return ml_bf16_available();
    case ML_GEMM_ONEDNN: return ml_onednn_available();
    case ML_GEMM_INT8: return 1; /* the portable kernel runs anywhere */
    default: return 0;
    }
}

int ml_gemm_overwrite_pays(ml_gemm_engine e) {
    /* AUTO and int8's other products go to oneDNN where it is present */
    const int onednn = e == ML_GEMM_ONEDNN || ((e == ML_GEMM_AUTO || e == ML_GEMM_INT8) && ml_onednn_available());
    return !(onednn && ml_cpu_features_get()->amx_bf16);
}

static const char *why_absent(ml_gemm_engine e) {
    return e == ML_GEMM_BF16 ? "this CPU has no AVX512-BF16 (vdpbf16ps)"
                             : "this build has no oneDNN (apt-get install libdnnl-dev, then rebuild) or oneDNN has no bf16 "
                               "matmul for this CPU";
}

ml_status ml_gemm_engine_resolve(ml_gemm_engine requested, int bf16_allowed, ml_gemm_engine *out) {
    if (requested == ML_GEMM_AUTO) {
        const char *env = getenv("ML_GEMM_ENGINE");
        if (env && *env && ml_gemm_engine_parse(env, &requested) != ML_OK)
            return ml_fail(ML_ERR_ARG, "ML_GEMM_ENGINE: unknown GEMM engine '%s' (auto | openblas | bf16 | onednn | int8)", env);
        /* fp32: the float products are sgemm's whatever it says; openblas and int8 choose the integer-grid forwards
         * (commands without --gemm-engine, e.g. logits and eval, take the fake-quant forward so) */
        if (!bf16_allowed && requested != ML_GEMM_OPENBLAS && requested != ML_GEMM_INT8) requested = ML_GEMM_AUTO;
        if (requested == ML_GEMM_AUTO) {
            *out = ML_GEMM_AUTO;
            return ML_OK;
        }
    }
    if (!ml_gemm_engine_available(requested))
        return ml_fail(ML_ERR_UNSUPPORTED, "GEMM engine %s is not available: %s", names[requested], why_absent(requested));
    if (!bf16_allowed && (requested == ML_GEMM_BF16 || requested == ML_GEMM_ONEDNN))
        return ml_fail(ML_ERR_ARG, "GEMM engine %s computes on bf16 inputs: it needs --precision bf16", names[requested]);
    *out = requested;
    return ML_OK;
}

/* Products below this many multiply-adds, or of fewer than 8 rows (decoding), stay on sgemm: converting and
 * packing both operands costs more than bf16 saves. */
#define SMALL_MACS (1 << 20)
/* Our kernel packs both operands on every call. On Zen 4 (bench --gemm, bench/RESULTS.md) it ran the products of
 * MobileLLM-125M's wide matrices (gate/up/down: 576 x 1536; the head) at 2-3x sgemm, but those of the narrow
 * q/o (576 x 576) and k/v (192 x 576) projections at 0.4-0.9x, at 1024 and at 64 tokens: below this many entries
 * in the weight-sized operand (B of the forward and dX layouts, C of the dW layout, i.e. A transposed) sgemm
 * keeps them. It is auto's choice only in builds without oneDNN. */
#define BF16_MIN_WEIGHT (576 * 1536)

ml_gemm_engine ml_gemm_choose(int bf16_allowed, int transA, int transB, int M, int N, int K) {
    if (!bf16_allowed || (double)M * N * K < SMALL_MACS || M < 8) return ML_GEMM_OPENBLAS;
    const ml_cpu_features *f = ml_cpu_features_get();
    /* oneDNN where the CPU multiplies bf16 (AMX, or AVX512-BF16): it reads the model's bf16 copies of weights and
     * activations and writes bf16 outputs, so no product rounds its operands. On the AMX Xeon its AMX kernels run
     * at 2-4x sgemm; on Zen 4 its avx512_core_bf16 kernels ran every 125M product at 310-380 GFLOP/s (sgemm ~170)
     * and the bf16 step 1.14-1.23x faster than with our kernel and sgemm (bench/RESULTS.md). */
    if ((f->amx_bf16 || f->avx512_bf16) && ml_onednn_available()) return ML_GEMM_ONEDNN;
    if (f->amx_bf16) return ML_GEMM_OPENBLAS; /* our kernel loses to sgemm on those Xeons (0.56-0.61x) */
    const double weight = transA ? (double)M * N : (double)N * K;
    return ml_bf16_available() && weight >= BF16_MIN_WEIGHT ? ML_GEMM_BF16 : ML_GEMM_OPENBLAS;
}

int ml_gemm_int8_forward(ml_gemm_engine engine) {
    return engine == ML_GEMM_INT8 || (engine == ML_GEMM_AUTO && ml_int8_vnni_available());
}

void ml_gemm_engines_describe(char *buf, size_t n) {
    char blas[256], dnnl[160], attn[160];
    ml_blas_describe(blas, sizeof blas);
    ml_onednn_describe(dnnl, sizeof dnnl);
    ml_attn_kernels_describe(attn, sizeof attn);
    const ml_gemm_engine big = ml_gemm_choose(1, 0, 1, 1024, 1536, 576); /* what a 125M FFN product gets */
    snprintf(buf, n,
             "openblas  available: %s\n"
             "bf16      %s\n"
             "onednn    %s: %s\n"
             "int8      available: %s (forward of integer-grid products with int8 activations)\n"
             "auto      with --precision bf16: %s on products of 2^20+ multiply-adds%s, sgemm below\n"
             "attention %s",
             blas, ml_bf16_available() ? "available: AVX512-BF16 kernel (vdpbf16ps)" : "absent: no AVX512-BF16",
             ml_onednn_available() ? "available" : "absent", dnnl,
             ml_int8_vnni_available() ? "AVX512-VNNI kernel (vpdpbusd), auto uses it"
                                      : "portable kernel only (no AVX512-VNNI), auto leaves it",
             names[big], big == ML_GEMM_ONEDNN  ? " (bf16 activations where no QAT --act needs fp32 inputs)"
                         : big == ML_GEMM_BF16 ? " with a 576 x 1536+ weight"
                                               : "",
             attn);
}

/* ---------------------------------------------------------------- statistics */

enum { MAX_STATS = 256 };
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static ml_gemm_stat stats[MAX_STATS];
static int n_stats;

static void record(ml_gemm_engine e, int ta, int tb, int M, int N, int K, double seconds, double convert_seconds) {
    pthread_mutex_lock(&stats_lock);
    ml_gemm_stat *s = NULL;
    for (int i = n_stats - 1; i >= 0 && !s; i--) {
        ml_gemm_stat *q = &stats[i];
        if (q->M == M && q->N == N && q->K == K && q->transA == ta && q->transB == tb && q->engine == e) s = q;
    }
    if (!s && n_stats < MAX_STATS) {
        s = &stats[n_stats++];
        *s = (ml_gemm_stat){.M = M, .N = N, .K = K, .transA = ta, .transB = tb, .engine = e};
    }
    if (s) {
        s->calls++;
        s->seconds += seconds;
        s->convert_seconds += convert_seconds;
        s->flops += 2.0 * M * (double)N * K;
    }
    pthread_mutex_unlock(&stats_lock);
}

void ml_gemm_stats_reset(void) {
    pthread_mutex_lock(&stats_lock);
    n_stats = 0;
    pthread_mutex_unlock(&stats_lock);
}

int ml_gemm_stats(ml_gemm_stat *rows, int max) {
    pthread_mutex_lock(&stats_lock);
    const int n = n_stats;
    for (int i = 0; i < n && i < max; i++) rows[i] = stats[i];
    pthread_mutex_unlock(&stats_lock);
    return n;
}

/* ---------------------------------------------------------------- the product */

int ml_gemm_reads_bf16_copies(ml_gemm_engine requested) {
    if (requested == ML_GEMM_ONEDNN) return 1;
    const ml_cpu_features *f = ml_cpu_features_get();
    return (requested == ML_GEMM_AUTO || requested == ML_GEMM_INT8) && (f->amx_bf16 || f->avx512_bf16) &&
           ml_onednn_available();
}

int ml_gemm_int8_onednn(void) {
    static int on = -1;
    if (on < 0) {
        const char *force = getenv("ML_INT8_ONEDNN"); /* tests: take this path without AMX too */
        on = ml_onednn_int8_available() && ((force && !strcmp(force, "1")) || ml_cpu_features_get()->amx_int8);
    }
    return on;
}

/* oneDNN's s32 products, kept by the calling thread between calls */
static _Thread_local ml_scratch q8_acc;

void ml_gemm_q8(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                const ml_int8_matrix *W, int M) {
    if (M <= 0 || W->N <= 0) return;
    const double t0 = ml_now_seconds();
    int done = 0;
    if (W->plain && xgroup == W->K && ml_gemm_int8_onednn()) {
        int32_t *acc = ml_scratch_get(&q8_acc, (size_t)M * W->N * sizeof(int32_t));
        if (acc && ml_onednn_gemm_u8s8(M, W->N, W->K, X, W->plain, acc) == 0) {
            ml_int8_finish_rows(Y, acc, xscale, xoffset, W, M);
            done = 1;
        }
    }
    if (!done) ml_gemm_int8(Y, X, xscale, xgroup, xoffset, W, M); /* ours (also when oneDNN failed) */
    record(ML_GEMM_INT8, 0, 1, M, W->N, W->K, ml_now_seconds() - t0, 0);
}

int ml_gemm_reads_bf16(ml_gemm_engine engine, int ta, int tb, int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    const ml_gemm_engine e =
        engine == ML_GEMM_AUTO || engine == ML_GEMM_INT8 ? ml_gemm_choose(1, ta, tb, M, N, K) : engine;
    return e == ML_GEMM_ONEDNN;
}

/* Operand buffers of the calling thread, kept between calls: A's, B's and an fp32 C's. */
static _Thread_local ml_scratch slots[3];

static void *slot(int i, size_t bytes) { return ml_scratch_get(&slots[i], bytes); }

/* The operand's bf16 bits (rows x cols as stored): its own, or f32 rounded into slot i; NULL without memory. */
static const uint16_t *as_bf16(ml_gemm_operand x, int rows, int cols, int i) {
    if (x.b16) return x.b16;
    uint16_t *d = slot(i, (size_t)rows * cols * sizeof(uint16_t));
    if (d) ml_bf16_convert(d, x.f32, rows, cols, x.ld);
    return d;
}

/* The operand's fp32 values and stride: its own, or b16 widened into slot i (compact). */
static const float *as_f32(ml_gemm_operand x, int rows, int cols, int i, int *ld) {
    *ld = x.ld;
    if (x.f32) return x.f32;
    float *d = slot(i, (size_t)rows * cols * sizeof(float));
    if (d) ml_bf16_widen(d, x.b16, (size_t)rows * cols);
    *ld = cols;
    return d;
}

/* Element (i, k) of x, or with trans of x^T; cols: x's stored row length (the bf16 copy's stride). */
static float element(ml_gemm_operand x, int trans, int cols, int i, int k) {
    const size_t r = trans ? (size_t)k : (size_t)i, c = trans ? (size_t)i : (size_t)k;
    return x.f32 ? x.f32[r * x.ld + c] : ml_bf16_value(x.b16[r * cols + c]);
}

/* C (or, given C16, its bf16 bits, compact) = beta C + op(A) op(B), summed in double: the route when no memory is
 * left for an operand's other form. */
static void gemm_elementwise(int ta, int tb, int M, int N, int K, ml_gemm_operand A, ml_gemm_operand B, float beta,
                             float *C, int ldc, uint16_t *C16) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)element(A, ta, ta ? M : K, i, k) * element(B, !tb, tb ? K : N, j, k);
            if (C16)
                C16[(size_t)i * N + j] = ml_bf16_bits((float)s);
            else
                C[(size_t)i * ldc + j] = (float)s + (beta == 0.0f ? 0.0f : C[(size_t)i * ldc + j]);
        }
}

void ml_gemm(ml_gemm_engine engine, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
             int ldb, float beta, float *C, int ldc) {
    ml_gemm_ops(engine, ta, tb, M, N, K, ml_gemm_f32(A, lda), ml_gemm_f32(B, ldb), beta, C, ldc);
}

void ml_gemm_ops(ml_gemm_engine engine, int ta, int tb, int M, int N, int K, ml_gemm_operand A, ml_gemm_operand B,
                 float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta C, which no engine needs to see */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    /* int8 computes only integer-grid forwards (ml_gemm_q8); its other products are auto's */
    ml_gemm_engine e = engine == ML_GEMM_AUTO || engine == ML_GEMM_INT8 ? ml_gemm_choose(1, ta, tb, M, N, K) : engine;
    /* stored shapes: A is [M,K] or, transposed, [K,M]; B is [K,N] or [N,K] */
    const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const double t0 = ml_now_seconds();
    double converted = 0;
    if (e == ML_GEMM_ONEDNN) {
        const uint16_t *a16 = as_bf16(A, ar, ac, 0), *b16 = as_bf16(B, br, bc, 1);
        converted = ml_now_seconds() - t0;
        if (!a16 || !b16 || ml_onednn_gemm_bf16(ta, tb, M, N, K, a16, b16, beta, C, ldc) != 0)
            e = ml_bf16_available() ? ML_GEMM_BF16 : ML_GEMM_OPENBLAS; /* oneDNN failed (memory): same product elsewhere */
    }
    if (e != ML_GEMM_ONEDNN) {
        const double t1 = ml_now_seconds();
        int lda, ldb;
        const float *a = as_f32(A, ar, ac, 0, &lda), *b = as_f32(B, br, bc, 1, &ldb);
        converted += ml_now_seconds() - t1;
        if (!a || !b) /* no memory to widen a bf16-only operand: element by element */
            gemm_elementwise(ta, tb, M, N, K, A, B, beta, C, ldc, NULL);
        else if (e == ML_GEMM_BF16)
            ml_gemm_bf16(ta, tb, M, N, K, a, lda, b, ldb, beta, C, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a,
                        lda, b, ldb, beta, C, ldc);
    }
    record(e, ta, tb, M, N, K, ml_now_seconds() - t0, converted);
}

void ml_gemm_ops_to_bf16(ml_gemm_engine engine, int ta, int tb, int M, int N, int K, ml_gemm_operand A,
                         ml_gemm_operand B, uint16_t *C16) {
    if (M <= 0 || N <= 0) return;
    if (ml_gemm_reads_bf16(engine, ta, tb, M, N, K)) {
        const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        const double t0 = ml_now_seconds();
        const uint16_t *a16 = as_bf16(A, ar, ac, 0), *b16 = as_bf16(B, br, bc, 1);
        const double converted = ml_now_seconds() - t0;
        if (a16 && b16 && ml_onednn_gemm_bf16_out(ta, tb, M, N, K, a16, b16, C16) == 0) {
            record(ML_GEMM_ONEDNN, ta, tb, M, N, K, ml_now_seconds() - t0, converted);
            return;
        }
    }
    /* fp32 C on the engine the product would run on, rounded once */
    float *C = slot(2, (size_t)M * N * sizeof(float));
    if (!C) { /* no memory for it: element by element */
        gemm_elementwise(ta, tb, M, N, K, A, B, 0.0f, NULL, N, C16);
        return;
    }
    ml_gemm_ops(engine, ta, tb, M, N, K, A, B, 0.0f, C, N);
    ml_bf16_convert(C16, C, M, N, N);
}
