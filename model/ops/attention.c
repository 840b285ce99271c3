/* Causal grouped-query attention with optional sliding window and document mask, tiled.
 *
 * Queries and keys are cut into 64-row tiles. The forward keeps only the output and one
 * log-sum-exp per row (online softmax across key tiles); the backward recomputes each tile's
 * probabilities from q, k and the log-sum-exp, so memory stays O(T) per head, never O(T^2).
 * Inside a tile the products are small dense matrix products over contiguous rows (keys and
 * values transposed once per tile), and exp runs 16 lanes at a time (common/vmath.h).
 * Tiles that no query of the tile can see are skipped: beyond the diagonal, before a sliding
 * window, and, when document ids never decrease along a row (packed documents), in earlier
 * documents. GQA reads the shared K/V head directly; nothing is repeated.
 * The same forward serves a KV-cached decoder: queries are then the last Tq of Tk keys
 * (ml_attn_dims.q_start), so training, evaluation and decoding run one attention kernel.
 * Scratch comes from a caller's workspace (ml_attention_work_floats), so a training step
 * allocates nothing; without one, the kernel allocates its own.
 * bf16 kernels (ml_attn_dims.kernel, products in attention_bf16.c) take the same loops; each operand is
 * converted once where it is reused: the forward converts every K/V tile once before the query tiles (all
 * query heads of a group read it), the backward converts its row's Q and dO once per (row, kv head) and
 * each K/V tile once, and accumulates dK^T and dV^T of a key tile over all its query tiles, so that P and
 * dS serve as the pair-layout right operand and are never transposed. Their softmax rows go straight to bf16
 * (ml_attn_softmax_row, ml_attn_grad_rows: one pass from the raw scores to the next products' operands), and
 * O and dQ accumulate in fp32 buffers that the tile products add into. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "common/vmath.h"
#include "model/ops/attention_bf16.h"
#include "model/ops/ops.h"

enum { TILE = 64 }; /* query and key tile rows; 64 x 64 scores fit L1 next to a K tile */

/* Lowest key index visible from query t (window only; the document test is per key). */
static inline int first_key(int t, int window) { return (window > 0 && t - window + 1 > 0) ? t - window + 1 : 0; }

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static bool nondecreasing(const int32_t *d, int T) {
    for (int t = 1; t < T; t++)
        if (d[t] < d[t - 1]) return false;
    return true;
}

/* Workspace: a header (threads it was sized for), one flag per batch row (do its document ids never
 * decrease, i.e. packed documents whose tiles may be skipped), one scratch block per thread, then the
 * bf16 kernels' K/V tiles of the forward. */
enum { WORK_HEADER = 16 };

static inline int up32(int x) { return (x + 31) & ~31; }
static inline int up64(int x) { return (x + 63) & ~63; }
static inline size_t r16(size_t n) { return (n + 15) / 16 * 16; } /* 64-byte steps between buffers */

/* Floats of the bf16 backward's per-thread buffers (carved in this order in ml_attention_backward). */
static size_t bf16_bwd_floats(int T, int H, int KV, int hd) {
    const size_t hdp = (size_t)up32(hd), Tp = (size_t)up64(T), g = (size_t)(H / KV), tt = (size_t)TILE * TILE;
    return 2 * r16(tt) + r16(g * T)             /* p, ds, rowdot (fp32) */
           + 4 * r16(g * Tp * hdp / 2)          /* Q and dO rows, Q^T and dO^T of every head of the group (bf16) */
           + r16(g * Tp * hdp)                  /* dQ of every head of the group, accumulated over key tiles (fp32) */
           + 3 * r16((size_t)TILE * hdp / 2)    /* K^T, V^T, K of the key tile (pairs) */
           + 2 * r16((size_t)TILE * hdp)        /* dK^T, dV^T accumulators (fp32) */
           + 3 * r16(tt / 2);                   /* dS rows, P and dS pairs (bf16) */
}

static size_t per_thread_floats(int T, int H, int KV, int hd) {
    const size_t fwd = (size_t)TILE * hd + (size_t)TILE * TILE;
    const size_t bwd = 2 * (size_t)TILE * hd + 3 * (size_t)TILE * TILE + (size_t)(H / KV) * T;
    const size_t hdp = (size_t)up32(hd);
    const size_t fwd16 = r16((size_t)TILE * TILE) + r16((size_t)TILE * hdp / 2) + r16((size_t)TILE * TILE / 2) +
                         r16((size_t)TILE * hdp);
    const size_t bwd16 = bf16_bwd_floats(T, H, KV, hd);
    size_t n = fwd > bwd ? fwd : bwd;
    if (fwd16 > n) n = fwd16;
    if (bwd16 > n) n = bwd16;
    return r16(n);
}

static size_t flag_floats(int B) { return ((size_t)B + 15) / 16 * 16; }

/* K^T and V of every key tile in the pair layout, bf16: B x KV x Tp x hdp halves each */
static size_t kv_floats(int B, int T, int KV, int hd) { return (size_t)B * KV * up64(T) * up32(hd); }

size_t ml_attention_work_floats(int B, int T, int H, int KV, int hd, int threads) {
    return WORK_HEADER + flag_floats(B) + (size_t)threads * per_thread_floats(T, H, KV, hd) + kv_floats(B, T, KV, hd);
}

void ml_attention_work_init(float *work, int threads) { memcpy(work, &threads, sizeof threads); }

typedef struct {
    float *own;    /* allocated here when the caller gave no workspace */
    float *base;
    int threads;
    float *mono;   /* [B] 1 when the row's document ids never decrease */
    size_t stride; /* floats per thread */
    float *kv;     /* the bf16 forward's K/V tiles (kv_floats) */
} workspace;

static void work_open(workspace *w, float *work, const int32_t *doc, int B, int T, int H, int KV, int hd) {
    memset(w, 0, sizeof *w);
    if (work) {
        memcpy(&w->threads, work, sizeof w->threads);
        w->base = work;
    } else {
        w->threads = omp_get_max_threads();
        w->own = malloc(sizeof(float) * ml_attention_work_floats(B, T, H, KV, hd, w->threads));
        w->base = w->own;
    }
    if (w->threads > omp_get_max_threads()) w->threads = omp_get_max_threads();
    w->mono = w->base + WORK_HEADER;
    w->stride = per_thread_floats(T, H, KV, hd);
    w->kv = w->base + WORK_HEADER + flag_floats(B) + (size_t)w->threads * w->stride;
    if (doc)
        for (int b = 0; b < B; b++) w->mono[b] = nondecreasing(doc + (int64_t)b * T, T) ? 1.0f : 0.0f;
}

static inline float *work_thread(const workspace *w, int B) {
    return w->base + WORK_HEADER + flag_floats(B) + (size_t)omp_get_thread_num() * w->stride;
}

/* The kernel a call runs: as asked, or fp32 where this CPU lacks it. */
static ml_attn_kernel call_kernel(const ml_attn_dims *dims) {
    const ml_attn_kernel k = dims->kernel;
    return k > ML_ATTN_FP32 && k < ML_ATTN_NUM_KERNELS && ml_attn_kernel_available(k) ? k : ML_ATTN_FP32;
}

/* The next buffer of n floats from a thread's block. */
static inline float *carve(float **at, size_t n) {
    float *p = *at;
    *at += r16(n);
    return p;
}

/* Where queries [q0, q0+nq) meet keys [k0, k0+nk) of one row. */
typedef enum { TILE_SKIP, TILE_FULL, TILE_MASKED } tile_kind;

static tile_kind classify(int q0, int nq, int k0, int nk, int window, const int32_t *db, bool mono) {
    int qlast = q0 + nq - 1, klast = k0 + nk - 1;
    if (k0 > qlast) return TILE_SKIP;                                 /* all keys in the future */
    if (window > 0 && klast < first_key(q0, window)) return TILE_SKIP; /* all keys out of window */
    if (db && mono && db[klast] < db[q0]) return TILE_SKIP;           /* all keys in earlier documents */
    bool masked = klast > q0 || nk < TILE || (window > 0 && k0 < first_key(qlast, window));
    if (db && !(mono && db[k0] == db[qlast])) masked = true;
    return masked ? TILE_MASKED : TILE_FULL;
}


/* dst[d*TILE + j] = src[j*stride + d] for j < n, zero for n <= j < TILE. */
static void transpose_tile(float *dst, const float *src, int64_t stride, int n, int hd) {
    for (int j = 0; j < n; j++)
        for (int d = 0; d < hd; d++) dst[d * TILE + j] = src[j * stride + d];
    for (int d = 0; d < hd && n < TILE; d++)
        for (int j = n; j < TILE; j++) dst[d * TILE + j] = 0.0f;
}

/* dst[j*TILE + i] = src[i*TILE + j] for i < m, j < n */
static void transpose_square(float *dst, const float *src, int m, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) dst[j * TILE + i] = src[i * TILE + j];
}

/* Every product inside a tile is one small GEMM: C[m,n] (+)= A[m,k] . B[k,n], all row-major with
 * row strides. With AVX-512 and n a multiple of 16, blocks of 4 rows x 64 columns keep their 16
 * accumulators in registers across k; anything else takes the plain loop. */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline __attribute__((always_inline)) void gemm_block(float *C, int64_t ldc, const float *A, int64_t lda,
                                                             const float *Bm, int64_t ldb, int k, const int MR,
                                                             const int NV, int accumulate) {
    __m512 c[4][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            c[r][v] = accumulate ? _mm512_loadu_ps(C + r * ldc + 16 * v) : _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        __m512 b[4];
        for (int v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(Bm + kk * ldb + 16 * v);
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(A[r * lda + kk]);
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

#define GEMM_BLOCK(MR)                                                               \
    switch (nv) {                                                                    \
    case 4: gemm_block(Ci, ldc, Ai, lda, Bj, ldb, k, MR, 4, accumulate); break;      \
    case 3: gemm_block(Ci, ldc, Ai, lda, Bj, ldb, k, MR, 3, accumulate); break;      \
    case 2: gemm_block(Ci, ldc, Ai, lda, Bj, ldb, k, MR, 2, accumulate); break;      \
    default: gemm_block(Ci, ldc, Ai, lda, Bj, ldb, k, MR, 1, accumulate); break;     \
    }
#endif

static void small_gemm(float *C, int64_t ldc, const float *A, int64_t lda, const float *Bm, int64_t ldb, int m, int n,
                       int k, int accumulate) {
#if defined(__AVX512F__)
    if (n % 16 == 0) {
        for (int j0 = 0; j0 < n; j0 += 64) {
            const int nv = (n - j0) / 16 > 4 ? 4 : (n - j0) / 16;
            const float *Bj = Bm + j0;
            int i = 0;
            for (; i + 4 <= m; i += 4) {
                float *Ci = C + i * ldc + j0;
                const float *Ai = A + i * lda;
                GEMM_BLOCK(4)
            }
            for (; i < m; i++) {
                float *Ci = C + i * ldc + j0;
                const float *Ai = A + i * lda;
                GEMM_BLOCK(1)
            }
        }
        return;
    }
#endif
    for (int i = 0; i < m; i++) {
        float *ci = C + i * ldc;
        if (!accumulate) memset(ci, 0, sizeof(float) * n);
        for (int kk = 0; kk < k; kk++) {
            const float a = A[i * lda + kk], *br = Bm + kk * ldb;
#pragma omp simd
            for (int j = 0; j < n; j++) ci[j] += a * br[j];
        }
    }
}

/* Keys [jlo, jhi] of the tile (offsets from k0) pass the causal and window tests for query t;
 * everything else in row s[0, nk) is set to `fill`, and so are keys of other documents. */
static void mask_row(float *s, int t, int k0, int nk, int window, const int32_t *db, bool mono, float fill) {
    int jlo = first_key(t, window) - k0, jhi = t - k0;
    if (jlo < 0) jlo = 0;
    if (jhi > nk - 1) jhi = nk - 1;
    for (int j = 0; j < nk && j < jlo; j++) s[j] = fill;
    for (int j = jhi + 1 > 0 ? jhi + 1 : 0; j < nk; j++) s[j] = fill;
    if (db && jlo <= jhi && !(mono && db[k0 + jlo] == db[t] && db[k0 + jhi] == db[t]))
        for (int j = jlo; j <= jhi; j++)
            if (db[k0 + j] != db[t]) s[j] = fill;
}

/* Mask row s[0, nk) of a masked tile for query t (-inf), and return its largest entry (-inf: no visible key). */
static inline float masked_row_max(float *s, tile_kind kind, int t, int k0, int nk, int window, const int32_t *db,
                                   bool mono) {
    if (kind == TILE_MASKED) mask_row(s, t, k0, nk, window, db, mono, -INFINITY);
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < nk; j++) m = s[j] > m ? s[j] : m;
    return m;
}

void ml_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *doc, const ml_attn_dims *dims, float *work) {
    const int B = dims->B, Tq = dims->Tq, Tk = dims->Tk, qs0 = dims->q_start, H = dims->H, KV = dims->KV,
              hd = dims->hd, window = dims->window;
    const int group = H / KV, ntiles = (Tq + TILE - 1) / TILE;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd; /* token strides */
    const ml_attn_kernel kern = call_kernel(dims);
    const int hdp = up32(hd), nkt = (Tk + TILE - 1) / TILE;
    const size_t kv_tile = (size_t)TILE * hdp / 2, kv_row = (size_t)up64(Tk) * hdp / 2; /* pair words */
    workspace w;
    work_open(&w, work, doc, B, Tk, H, KV, hd);
    uint32_t *kw_all = (uint32_t *)w.kv, *vp_all = kw_all + (size_t)B * KV * kv_row;
#pragma omp parallel num_threads(w.threads)
    {
        float *kt = work_thread(&w, B);
        float *s = kt + TILE * hd;
        float mx[TILE], sum[TILE];
        /* bf16: the Q tile, P and a product's result */
        float *at = kt;
        float *s16 = carve(&at, (size_t)TILE * TILE);
        uint16_t *qa = (uint16_t *)carve(&at, (size_t)TILE * hdp / 2);
        uint16_t *pa = (uint16_t *)carve(&at, (size_t)TILE * TILE / 2);
        float *ct = carve(&at, (size_t)TILE * hdp);
        if (kern) {
            s = s16;
            ml_attn_tiles_begin(kern);
#pragma omp for collapse(3) schedule(static)
            for (int b = 0; b < B; b++)
                for (int kvh = 0; kvh < KV; kvh++)
                    for (int t = 0; t < nkt; t++) {
                        const int k0 = t * TILE, nk = Tk - k0 < TILE ? Tk - k0 : TILE;
                        const int64_t off = ((int64_t)b * Tk + k0) * ks + (int64_t)kvh * hd;
                        const size_t at_tile = ((size_t)b * KV + kvh) * kv_row + (size_t)t * kv_tile;
                        ml_attn_to_pairs_t(kw_all + at_tile, TILE, k + off, ks, nk, hd, TILE, hdp); /* K^T */
                        ml_attn_to_pairs(vp_all + at_tile, hdp, v + off, ks, nk, hd, TILE, hdp);   /* V */
                    }
        }
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int qt = 0; qt < ntiles; qt++) {
                    /* queries [qi0, qi0 + nq) of this row sit at key positions [q0, q0 + nq) */
                    const int qi0 = qt * TILE, nq = Tq - qi0 < TILE ? Tq - qi0 : TILE, q0 = qs0 + qi0, kvh = h / group;
                    const float *qb = q + ((int64_t)b * Tq + qi0) * qs + (int64_t)h * hd;
                    const float *kb = k + (int64_t)b * Tk * ks + (int64_t)kvh * hd;
                    const float *vb = v + (int64_t)b * Tk * ks + (int64_t)kvh * hd;
                    const int32_t *db = doc ? doc + (int64_t)b * Tk : NULL;
                    const bool mono = db && w.mono[b] != 0.0f;
                    float *ob = out + ((int64_t)b * Tq + qi0) * qs + (int64_t)h * hd;
                    for (int i = 0; i < nq; i++) {
                        mx[i] = -INFINITY;
                        sum[i] = 0.0f;
                        if (!kern) memset(ob + i * qs, 0, sizeof(float) * hd);
                    }
                    if (kern) { /* O accumulates in ct (fp32, contiguous); P's padding rows stay zero */
                        ml_attn_to_rows(qa, hdp, qb, qs, nq, hd, up32(nq), hdp);
                        memset(ct, 0, sizeof(float) * up32(nq) * hdp);
                        memset(pa + (size_t)nq * TILE, 0, sizeof(uint16_t) * (up32(nq) - nq) * TILE);
                    }
                    const size_t kv_at = ((size_t)b * KV + kvh) * kv_row;
                    for (int k0 = first_key(q0, window) / TILE * TILE; k0 <= q0 + nq - 1; k0 += TILE) {
                        const int nk = Tk - k0 < TILE ? Tk - k0 : TILE;
                        const tile_kind kind = classify(q0, nq, k0, nk, window, db, mono);
                        if (kind == TILE_SKIP) continue;
                        if (kern) {
                            ml_attn_mm(kern, s, TILE, qa, hdp, kw_all + kv_at + (size_t)(k0 / TILE) * kv_tile, TILE, nq,
                                       TILE, hdp, 0); /* S = Q K^T */
                            /* P = exp(S * scale - m) written as bf16 by the row kernel; O (in ct) += P V */
                            const int kp = up32(nk);
                            for (int i = 0; i < nq; i++) {
                                float *si = s + i * TILE;
                                uint16_t *pi = pa + (size_t)i * TILE;
                                float tmax = masked_row_max(si, kind, q0 + i, k0, nk, window, db, mono);
                                if (tmax == -INFINITY) { /* no visible key in this tile */
                                    memset(pi, 0, sizeof(uint16_t) * kp);
                                    continue;
                                }
                                tmax *= scale; /* scale > 0: the largest scaled score */
                                const float m_new = tmax > mx[i] ? tmax : mx[i];
                                if (m_new != mx[i]) { /* rescale what earlier tiles summed */
                                    const float c = expf(mx[i] - m_new);
                                    float *oi = ct + (size_t)i * hdp;
                                    sum[i] *= c;
#pragma omp simd
                                    for (int d = 0; d < hd; d++) oi[d] *= c;
                                }
                                sum[i] += ml_attn_softmax_row(pi, si, scale, m_new, nk, kp);
                                mx[i] = m_new;
                            }
                            ml_attn_mm(kern, ct, hdp, pa, TILE, vp_all + kv_at + (size_t)(k0 / TILE) * kv_tile, hdp, nq,
                                       hdp, kp, 1);
                            continue;
                        }
                        transpose_tile(kt, kb + k0 * ks, ks, nk, hd);
                        small_gemm(s, TILE, qb, qs, kt, TILE, nq, TILE, hd, 0); /* S = Q K^T */
                        for (int i = 0; i < nq; i++) {
                            float *si = s + i * TILE, *oi = ob + i * qs;
#pragma omp simd
                            for (int j = 0; j < nk; j++) si[j] *= scale;
                            const float tmax = masked_row_max(si, kind, q0 + i, k0, nk, window, db, mono);
                            if (tmax == -INFINITY) { /* no visible key in this tile */
                                memset(si, 0, sizeof(float) * nk);
                                continue;
                            }
                            const float m_new = tmax > mx[i] ? tmax : mx[i];
                            const float c = expf(mx[i] - m_new); /* rescales what earlier tiles summed */
                            sum[i] = sum[i] * c + ml_exp_shifted(si, si, m_new, nk);
                            mx[i] = m_new;
                            if (c != 1.0f)
#pragma omp simd
                                for (int d = 0; d < hd; d++) oi[d] *= c;
                        }
                        small_gemm(ob, qs, s, TILE, vb + k0 * ks, ks, nq, hd, nk, 1); /* O += P V */
                    }
                    for (int i = 0; i < nq; i++) { /* every query sees itself, so sum > 0 */
                        float inv = 1.0f / sum[i], *oi = ob + i * qs;
                        const float *acc = kern ? ct + (size_t)i * hdp : oi;
#pragma omp simd
                        for (int d = 0; d < hd; d++) oi[d] = acc[d] * inv;
                        if (lse) lse[((int64_t)b * H + h) * Tq + qi0 + i] = mx[i] + logf(sum[i]);
                    }
                }
        ml_attn_tiles_end(kern);
    }
    free(w.own);
}

/* Parallel over (batch row, kv head): every query head of a group and every query position
 * write the same dk/dv rows, so one thread owns them all (no races, fixed summation order).
 * Key tiles are the outer loop so a tile's dk/dv stay in cache across all its queries. */
void ml_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                           const float *q, const float *k, const float *v, const int32_t *doc, const ml_attn_dims *dims,
                           float *work) {
    const int B = dims->B, T = dims->Tk, H = dims->H, KV = dims->KV, hd = dims->hd, window = dims->window;
    const int group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t qs = (int64_t)H * hd, ks = (int64_t)KV * hd;
    const ml_attn_kernel kern = call_kernel(dims);
    const int hdp = up32(hd), Tp = up64(T);
    workspace w;
    work_open(&w, work, doc, B, T, H, KV, hd);
#pragma omp parallel num_threads(w.threads)
    {
        float *kt = work_thread(&w, B);
        float *vt = kt + TILE * hd;
        float *p = vt + TILE * hd;
        float *ds = p + TILE * TILE;
        float *tr = ds + TILE * TILE;
        float *rowdot = tr + TILE * TILE; /* [group * T]: D_t = dout_t . out_t per head */
        /* bf16 (sizes as in bf16_bwd_floats): Q and dO rows and columns [group][Tp x hdp], the key tile's K^T, V^T
         * and K in pairs, dK^T and dV^T accumulated over the key tile's queries [hdp x TILE], dS rows, P and dS pairs */
        uint16_t *qa = NULL, *da = NULL, *qc = NULL, *dc = NULL, *dsa = NULL;
        uint32_t *kw = NULL, *vw = NULL, *kp = NULL, *pp = NULL, *dsp = NULL;
        float *dka = NULL, *dva = NULL, *dqa = NULL;
        if (kern) {
            const size_t gq = (size_t)group * Tp * hdp / 2, kvt = (size_t)TILE * hdp / 2, tt = (size_t)TILE * TILE;
            float *at = kt;
            p = carve(&at, tt), ds = carve(&at, tt), rowdot = carve(&at, (size_t)group * T);
            qa = (uint16_t *)carve(&at, gq), da = (uint16_t *)carve(&at, gq);
            qc = (uint16_t *)carve(&at, gq), dc = (uint16_t *)carve(&at, gq);
            dqa = carve(&at, (size_t)group * Tp * hdp);
            kw = (uint32_t *)carve(&at, kvt), vw = (uint32_t *)carve(&at, kvt), kp = (uint32_t *)carve(&at, kvt);
            dka = carve(&at, (size_t)TILE * hdp), dva = carve(&at, (size_t)TILE * hdp);
            dsa = (uint16_t *)carve(&at, tt / 2), pp = (uint32_t *)carve(&at, tt / 2), dsp = (uint32_t *)carve(&at, tt / 2);
            ml_attn_tiles_begin(kern);
        }
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < KV; kvh++) {
                const float *kb = k + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const float *vb = v + (int64_t)b * T * ks + (int64_t)kvh * hd;
                float *dkb = dk + (int64_t)b * T * ks + (int64_t)kvh * hd;
                float *dvb = dv + (int64_t)b * T * ks + (int64_t)kvh * hd;
                const int32_t *db = doc ? doc + (int64_t)b * T : NULL;
                const bool mono = db && w.mono[b] != 0.0f;
                for (int g = 0; g < group; g++) {
                    const int h = kvh * group + g;
                    for (int t = 0; t < T; t++) {
                        const int64_t off = ((int64_t)b * T + t) * qs + (int64_t)h * hd;
                        rowdot[(int64_t)g * T + t] = dot(dout + off, out + off, hd);
                        if (!kern) memset(dq + off, 0, sizeof(float) * hd);
                    }
                    if (kern) { /* this row's Q and dO of head h, converted once for all key tiles */
                        const int64_t off = (int64_t)b * T * qs + (int64_t)(kvh * group + g) * hd;
                        const size_t at = (size_t)g * Tp * hdp;
                        ml_attn_to_rows(qa + at, hdp, q + off, qs, T, hd, Tp, hdp);
                        ml_attn_to_rows(da + at, hdp, dout + off, qs, T, hd, Tp, hdp);
                        ml_attn_to_cols(qc + at, Tp, q + off, qs, T, hd, Tp, hdp);
                        ml_attn_to_cols(dc + at, Tp, dout + off, qs, T, hd, Tp, hdp);
                        memset(dqa + (size_t)g * Tp * hdp, 0, sizeof(float) * Tp * hdp);
                    }
                }
                for (int k0 = 0; k0 < T; k0 += TILE) {
                    const int nk = T - k0 < TILE ? T - k0 : TILE;
                    float *dkt = dkb + k0 * ks, *dvt = dvb + k0 * ks;
                    for (int j = 0; !kern && j < nk; j++) { /* bf16 tiles: written whole from dka, dva below */
                        memset(dkt + j * ks, 0, sizeof(float) * hd);
                        memset(dvt + j * ks, 0, sizeof(float) * hd);
                    }
                    if (kern) {
                        ml_attn_to_pairs_t(kw, TILE, kb + k0 * ks, ks, nk, hd, TILE, hdp);
                        ml_attn_to_pairs_t(vw, TILE, vb + k0 * ks, ks, nk, hd, TILE, hdp);
                        ml_attn_to_pairs(kp, hdp, kb + k0 * ks, ks, nk, hd, TILE, hdp);
                        memset(dka, 0, sizeof(float) * TILE * hdp);
                        memset(dva, 0, sizeof(float) * TILE * hdp);
                    } else {
                        transpose_tile(kt, kb + k0 * ks, ks, nk, hd);
                        transpose_tile(vt, vb + k0 * ks, ks, nk, hd);
                    }
                    for (int g = 0; g < group; g++) {
                        const int h = kvh * group + g;
                        const float *lh = lse + ((int64_t)b * H + h) * T, *Dh = rowdot + (int64_t)g * T;
                        for (int q0 = k0; q0 < T; q0 += TILE) {
                            const int nq = T - q0 < TILE ? T - q0 : TILE;
                            const tile_kind kind = classify(q0, nq, k0, nk, window, db, mono);
                            if (kind == TILE_SKIP) {
                                /* later query tiles are further from this key tile */
                                if (window > 0 && k0 + nk - 1 < first_key(q0, window)) break;
                                if (db && mono && db[k0 + nk - 1] < db[q0]) break;
                                continue;
                            }
                            const int64_t qoff = ((int64_t)b * T + q0) * qs + (int64_t)h * hd;
                            const float *qb = q + qoff, *dob = dout + qoff;
                            const size_t at = (size_t)g * Tp * hdp;
                            if (kern) { /* S = Q K^T, dP = dO V^T; P and dS straight to bf16 rows and pairs;
                                         * dQ += dS K, dV^T += dO^T P, dK^T += Q^T dS */
                                ml_attn_mm(kern, p, TILE, qa + at + (size_t)q0 * hdp, hdp, kw, TILE, nq, TILE, hdp, 0);
                                ml_attn_mm(kern, ds, TILE, da + at + (size_t)q0 * hdp, hdp, vw, TILE, nq, TILE, hdp, 0);
                                const int kq = up32(nq), kk = up32(nk);
                                if (kind == TILE_MASKED)
                                    for (int i = 0; i < nq; i++)
                                        mask_row(p + i * TILE, q0 + i, k0, nk, window, db, mono, -INFINITY);
                                ml_attn_grad_rows(dsa, pp, dsp, p, ds, TILE, lh + q0, Dh + q0, scale, nq, nk, kq);
                                ml_attn_mm(kern, dqa + (size_t)g * Tp * hdp + (size_t)q0 * hdp, hdp, dsa, TILE, kp, hdp,
                                           nq, hdp, kk, 1);
                                ml_attn_mm(kern, dva, TILE, dc + at + q0, Tp, pp, TILE, hdp, TILE, kq, 1);
                                ml_attn_mm(kern, dka, TILE, qc + at + q0, Tp, dsp, TILE, hdp, TILE, kq, 1);
                                continue;
                            }
                            small_gemm(p, TILE, qb, qs, kt, TILE, nq, TILE, hd, 0);   /* S = Q K^T */
                            small_gemm(ds, TILE, dob, qs, vt, TILE, nq, TILE, hd, 0); /* dP = dO V^T */
                            for (int i = 0; i < nq; i++) {
                                float *pi = p + i * TILE, *dsi = ds + i * TILE;
                                const float L = lh[q0 + i], Di = Dh[q0 + i];
#pragma omp simd
                                for (int j = 0; j < nk; j++) pi[j] = pi[j] * scale - L;
                                if (kind == TILE_MASKED) mask_row(pi, q0 + i, k0, nk, window, db, mono, -INFINITY);
                                ml_exp_inplace(pi, nk); /* P = exp(S - lse); masked keys give 0 */
#pragma omp simd
                                for (int j = 0; j < nk; j++) dsi[j] = pi[j] * (dsi[j] - Di) * scale;
                            }
                            small_gemm(dq + qoff, qs, ds, TILE, kb + k0 * ks, ks, nq, hd, nk, 1); /* dQ += dS K */
                            transpose_square(tr, p, nq, nk);
                            small_gemm(dvt, ks, tr, TILE, dob, qs, nk, hd, nq, 1); /* dV += P^T dO */
                            transpose_square(tr, ds, nq, nk);
                            small_gemm(dkt, ks, tr, TILE, qb, qs, nk, hd, nq, 1); /* dK += dS^T Q */
                        }
                    }
                    if (kern) { /* the key tile's sums, transposed back */
                        ml_attn_from_cols(dkt, ks, dka, TILE, nk, hd);
                        ml_attn_from_cols(dvt, ks, dva, TILE, nk, hd);
                    }
                }
                for (int g = 0; kern && g < group; g++) { /* the group's dQ sums */
                    const float *src = dqa + (size_t)g * Tp * hdp;
                    float *dst = dq + (int64_t)b * T * qs + (int64_t)(kvh * group + g) * hd;
                    for (int t = 0; t < T; t++) memcpy(dst + t * qs, src + (size_t)t * hdp, sizeof(float) * hd);
                }
            }
        ml_attn_tiles_end(kern);
    }
    free(w.own);
}
