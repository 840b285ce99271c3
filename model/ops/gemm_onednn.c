/* oneDNN bf16 matmul engine (see gemm_onednn.h). Built only with ML_HAVE_DNNL (CMake finds libdnnl-dev);
 * without it the engine reports itself absent and the dispatcher never picks it. */
#include "model/ops/gemm_onednn.h"

#include <stdio.h>
#include <string.h>

#ifdef ML_HAVE_DNNL

#include <pthread.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#include "common/arena.h"

/* One created product: the primitive, its memory objects (data handles set per call) and scratchpad size. */
typedef struct {
    int M, N, K, ta, tb, acc, ldc;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, pad;
    size_t pad_bytes;
} product;

enum { CACHE = 256 }; /* distinct products kept; beyond that, created and destroyed per call */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static product cache[CACHE];
static int n_cached;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int state = -1; /* -1 unknown, 0 unusable, 1 usable */

static void release(product *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->a) dnnl_memory_destroy(p->a);
    if (p->b) dnnl_memory_destroy(p->b);
    if (p->c) dnnl_memory_destroy(p->c);
    if (p->pad) dnnl_memory_destroy(p->pad);
    memset(p, 0, sizeof *p);
}

/* `acc` of a product: what C is. F32: fp32 C = the product; F32_ACC: fp32 C += it (a sum post-op); INT8: u8 A, s8 B,
 * s32 C (no post-op); BF16_OUT: bf16 C = the product, each fp32 sum rounded once. */
enum { F32 = 0, F32_ACC = 1, INT8 = 2, BF16_OUT = 3 };

/* Primitive descriptor of one product: bf16 A [M,K] and B [K,N] compact in their stored layout, C as `acc` says. */
static dnnl_primitive_desc_t describe(int ta, int tb, int M, int N, int K, int acc, int ldc) {
    dnnl_memory_desc_t a_md, b_md, c_md;
    const dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    const dnnl_dims_t as = {ta ? 1 : K, ta ? M : 1}, bs = {tb ? 1 : N, tb ? K : 1}, cs = {ldc, 1};
    const int i8 = acc == INT8;
    const dnnl_data_type_t ct = i8 ? dnnl_s32 : acc == BF16_OUT ? dnnl_bf16 : dnnl_f32;
    acc = acc == F32_ACC;
    if (dnnl_memory_desc_init_by_strides(&a_md, 2, ad, i8 ? dnnl_u8 : dnnl_bf16, as) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&b_md, 2, bd, i8 ? dnnl_s8 : dnnl_bf16, bs) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&c_md, 2, cd, ct, cs) != dnnl_success)
        return NULL;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &a_md, &b_md, NULL, &c_md) != dnnl_success) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && acc)
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    if (ok && dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL) != dnnl_success) pd = NULL;
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return pd;
}

static int create(product *p, int ta, int tb, int M, int N, int K, int acc, int ldc) {
    memset(p, 0, sizeof *p);
    dnnl_primitive_desc_t pd = describe(ta, tb, M, N, K, acc, ldc);
    if (!pd) return -1;
    const dnnl_memory_desc_t *pad_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    int ok = dnnl_primitive_create(&p->prim, pd) == dnnl_success &&
             dnnl_memory_create(&p->a, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), engine,
                                DNNL_MEMORY_NONE) == dnnl_success &&
             dnnl_memory_create(&p->b, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), engine,
                                DNNL_MEMORY_NONE) == dnnl_success &&
             dnnl_memory_create(&p->c, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), engine,
                                DNNL_MEMORY_NONE) == dnnl_success;
    p->pad_bytes = pad_md ? dnnl_memory_desc_get_size(pad_md) : 0;
    if (ok && p->pad_bytes) ok = dnnl_memory_create(&p->pad, pad_md, engine, DNNL_MEMORY_NONE) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    if (!ok) {
        release(p);
        return -1;
    }
    p->M = M, p->N = N, p->K = K, p->ta = ta, p->tb = tb, p->acc = acc, p->ldc = ldc;
    return 0;
}

static int int8_state = -1; /* a u8 x s8 matmul on this CPU: -1 unknown, 0, 1 */

/* Under `lock`. */
static int init_once(void) {
    if (state >= 0) return state;
    int ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
             dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success;
    dnnl_primitive_desc_t pd = ok ? describe(0, 1, 4, 4, 4, 0, 4) : NULL; /* a bf16 matmul on this CPU? */
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_t pi = ok ? describe(0, 1, 4, 4, 4, INT8, 4) : NULL; /* and an integer one? */
    if (pi) dnnl_primitive_desc_destroy(pi);
    int8_state = pi ? 1 : 0;
    __atomic_store_n(&state, pd ? 1 : 0, __ATOMIC_RELEASE);
    return state;
}

int ml_onednn_int8_available(void) {
    ml_onednn_available();
    return int8_state == 1;
}

/* A cached (or, past the cache, a local) primitive for the product; NULL when oneDNN cannot make it. */
static product *find_or_create(product *local, int ta, int tb, int M, int N, int K, int acc, int ldc) {
    product *p = NULL;
    pthread_mutex_lock(&lock);
    if (init_once() || acc == INT8) {
        for (int i = 0; i < n_cached && !p; i++) {
            product *q = &cache[i];
            if (q->M == M && q->N == N && q->K == K && q->ta == ta && q->tb == tb && q->acc == acc && q->ldc == ldc)
                p = q;
        }
        if (!p && n_cached < CACHE && create(&cache[n_cached], ta, tb, M, N, K, acc, ldc) == 0) p = &cache[n_cached++];
        if (!p && create(local, ta, tb, M, N, K, acc, ldc) == 0) p = local;
    }
    pthread_mutex_unlock(&lock);
    return p;
}

int ml_onednn_available(void) {
    const int known = __atomic_load_n(&state, __ATOMIC_ACQUIRE); /* asked per product on AMX machines: no lock */
    if (known >= 0) return known;
    pthread_mutex_lock(&lock);
    int s = init_once();
    pthread_mutex_unlock(&lock);
    return s;
}

/* The scratchpad, kept by the calling thread between calls. */
static _Thread_local ml_scratch scratchpad;

/* Run a created product on its operands (oneDNN reads A and B only). */
/* Run the product (describe's arguments) on its operands: the cached primitive, or one made for this call past the
 * cache. 0, or -1 when oneDNN cannot make or run it. oneDNN reads A and B only. */
static int run(int ta, int tb, int M, int N, int K, int acc, int ldc, const void *A, const void *B, void *C) {
    if (M <= 0 || N <= 0 || K <= 0) return -1;
    product local;
    product *p = find_or_create(&local, ta, tb, M, N, K, acc, ldc);
    if (!p) return -1;
    char *w = p->pad_bytes ? ml_scratch_get(&scratchpad, p->pad_bytes) : NULL;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c},
                               {DNNL_ARG_SCRATCHPAD, p->pad}};
    const int ok = (!p->pad_bytes || w) && dnnl_memory_set_data_handle(p->a, (void *)A) == dnnl_success &&
                   dnnl_memory_set_data_handle(p->b, (void *)B) == dnnl_success &&
                   dnnl_memory_set_data_handle(p->c, C) == dnnl_success &&
                   (!p->pad || dnnl_memory_set_data_handle(p->pad, w) == dnnl_success) &&
                   dnnl_primitive_execute(p->prim, stream, p->pad ? 4 : 3, args) == dnnl_success &&
                   dnnl_stream_wait(stream) == dnnl_success;
    if (p == &local) release(&local);
    return ok ? 0 : -1;
}

int ml_onednn_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A16, const uint16_t *B16, float beta,
                        float *C, int ldc) {
    if (beta != 0.0f && beta != 1.0f) return -1; /* the dispatcher handles these */
    return run(ta, tb, M, N, K, beta != 0.0f ? F32_ACC : F32, ldc, A16, B16, C);
}

int ml_onednn_gemm_bf16_out(int ta, int tb, int M, int N, int K, const uint16_t *A16, const uint16_t *B16,
                            uint16_t *C16) {
    return run(ta, tb, M, N, K, BF16_OUT, N, A16, B16, C16);
}

int ml_onednn_gemm_u8s8(int M, int N, int K, const uint8_t *A, const int8_t *B, int32_t *C) {
    if (!ml_onednn_int8_available()) return -1;
    return run(0, 1, M, N, K, INT8, N, A, B, C);
}

/* The kernel oneDNN picks for one product (describe's arguments), or "-" when it cannot create one. */
static void impl_name(int usable, int ta, int tb, int M, int N, int K, int kind, char *buf, size_t n) {
    snprintf(buf, n, "-");
    if (!usable) return;
    pthread_mutex_lock(&lock);
    dnnl_primitive_desc_t pd = describe(ta, tb, M, N, K, kind, N);
    pthread_mutex_unlock(&lock);
    if (!pd) return;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(buf, n, "%s", impl);
    dnnl_primitive_desc_destroy(pd);
}

void ml_onednn_int8_impl_name(int M, int N, int K, char *buf, size_t n) {
    impl_name(ml_onednn_int8_available(), 0, 1, M, N, K, INT8, buf, n);
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx2: return "avx2";
    default: return "older";
    }
}

void ml_onednn_describe(char *buf, size_t n) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, n, "oneDNN %d.%d.%d (%s threads), ISA %s%s", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "non-OpenMP", isa_name(dnnl_get_effective_cpu_isa()),
             ml_onednn_available() ? "" : ": no bf16 matmul on this CPU");
}

void ml_onednn_impl_name(int ta, int tb, int M, int N, int K, char *buf, size_t n) {
    impl_name(ml_onednn_available(), ta, tb, M, N, K, 0, buf, n);
}

#else /* built without oneDNN */

int ml_onednn_available(void) { return 0; }

int ml_onednn_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A16, const uint16_t *B16, float beta,
                        float *C, int ldc) {
    return -1;
}

int ml_onednn_gemm_bf16_out(int ta, int tb, int M, int N, int K, const uint16_t *A16, const uint16_t *B16,
                            uint16_t *C16) {
    return -1;
}

void ml_onednn_describe(char *buf, size_t n) { snprintf(buf, n, "oneDNN: not built in (apt-get install libdnnl-dev)"); }

int ml_onednn_int8_available(void) { return 0; }

int ml_onednn_gemm_u8s8(int M, int N, int K, const uint8_t *A, const int8_t *B, int32_t *C) { return -1; }

void ml_onednn_int8_impl_name(int M, int N, int K, char *buf, size_t n) { snprintf(buf, n, "-"); }

void ml_onednn_impl_name(int ta, int tb, int M, int N, int K, char *buf, size_t n) { snprintf(buf, n, "-"); }

#endif
