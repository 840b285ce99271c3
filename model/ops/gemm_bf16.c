/* bf16 GEMM, fp32 accumulation (see gemm_bf16.h).
 *
 * Layout. Both operands are converted and packed once per call, whole, into panels: op(A) into
 * panels of MR rows, op(B) into panels of NR columns. A panel is [ceil(K/2)][width] 32-bit words,
 * each word the bf16 pair (k = 2p, k = 2p + 1) of one row/column, which is what vdpbf16ps multiplies
 * lane by lane: lane j of acc += a.lo * b.lo + a.hi * b.hi. An odd K gets a zero partner; rows and
 * columns past the edge are zero pairs, so the micro-kernel never branches inside its loop.
 *
 * Micro-kernel: an MR x NR tile of C in MR x NR/16 zmm accumulators; per k pair it loads NR/16
 * vectors of B pairs and broadcasts one A pair per row. 14 x 32 uses 28 accumulators + 2 B vectors
 * + 1 broadcast of the 32 zmm registers.
 *
 * Blocking (Goto): a block of MCP A panels x KCP pairs (14*16 rows x 2*288 k = 252 KiB) stays in L2
 * while the thread sweeps its column panels; one B micro-panel (288 pairs x 32 columns = 36 KiB) stays
 * in L1 (48 KiB on Zen 5) while the A panels of the block stream past it. KCP = 288 covers K = 576
 * (MobileLLM-125M's width) in one slice, so C is written once; 224-row blocks keep the C rows touched
 * per column panel few enough for the TLB (measured on the 32000-column head: 360 GFLOP/s vs 200 with
 * 336-row blocks and 192-pair slices, one thread). K is consumed in KCP-pair slices; the first
 * slice writes C (beta 0) or adds to it (beta 1), the later ones add.
 *
 * Threads: packing is split over panels; the product over column panels (or row panels when there are
 * too few column panels), so every C element has one owner and no reduction is needed. */
#include "model/ops/gemm_bf16.h"

#include <string.h>

#include <immintrin.h>
#include <omp.h>

#include "common/arena.h"
#include "model/ops/transpose16.h"

#define MR 14
#define NR 32
#ifndef MCP
#define MCP 16 /* A panels per L2 block */
#endif
#ifndef KCP
#define KCP 288 /* k pairs per slice */
#endif

#define ML_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

float ml_bf16_round(float x) { return ml_bf16_value(ml_bf16_bits(x)); }

void ml_bf16_convert(uint16_t *dst, const float *src, int rows, int cols, int ld) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) ml_bf16_round_row(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}

void ml_bf16_widen(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = ml_bf16_value(src[i]);
}

/* ---------------------------------------------------------------- packing */

/* Panels of width W from a source whose panel lanes are its rows: element (r, k) at src[r*ld + k]
 * (op(A) without transA, op(B) with transB). 16 rows x 32 k are converted into 16 x 16 pair words,
 * transposed in registers and stored as 16 pair rows of the panel. */
ML_BF16_TARGET static void pack_lanes_are_rows(uint32_t *dst, const float *src, int ld, int R, int K, int W) {
    const int kp = (K + 1) / 2, npan = (R + W - 1) / W;
#pragma omp for schedule(static)
    for (int q = 0; q < npan; q++) {
        uint32_t *d = dst + (size_t)q * W * kp;
        for (int k0 = 0; k0 < K; k0 += 32) {
            const int left = K - k0, np = left >= 32 ? 16 : (left + 1) / 2;
            const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            const __mmask16 m1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
            for (int r0 = 0; r0 < W; r0 += 16) {
                const int lanes = W - r0 < 16 ? W - r0 : 16;
                __m512i v[16];
                for (int i = 0; i < 16; i++) {
                    const int row = q * W + r0 + i;
                    if (i >= lanes || row >= R) {
                        v[i] = _mm512_setzero_si512();
                        continue;
                    }
                    const float *s = src + (size_t)row * ld + k0;
                    v[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + 16), _mm512_maskz_loadu_ps(m0, s));
                }
                ml_transpose16(v);
                const __mmask16 sm = lanes >= 16 ? 0xFFFF : (__mmask16)((1u << lanes) - 1);
                for (int j = 0; j < np; j++) _mm512_mask_storeu_epi32(d + (size_t)(k0 / 2 + j) * W + r0, sm, v[j]);
            }
        }
    }
}

/* Panels of width W from a source whose panel lanes are contiguous: element (r, k) at src[k*ld + r]
 * (op(A) with transA, op(B) without transB). Rows 2p and 2p+1 are converted together and their
 * bf16 halves interleaved into pairs with one vpermw. */
ML_BF16_TARGET static void pack_lanes_are_cols(uint32_t *dst, const float *src, int ld, int R, int K, int W) {
    const int kp = (K + 1) / 2, npan = (R + W - 1) / W;
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
#pragma omp for schedule(static)
    for (int q = 0; q < npan; q++) {
        uint32_t *d = dst + (size_t)q * W * kp;
        for (int p = 0; p < kp; p++) {
            const float *s0 = src + (size_t)(2 * p) * ld;
            const int has1 = 2 * p + 1 < K;
            for (int r0 = 0; r0 < W; r0 += 16) {
                const int c0 = q * W + r0, lanes = W - r0 < 16 ? W - r0 : 16;
                int n = R - c0 < lanes ? R - c0 : lanes;
                const __mmask16 m = n <= 0 ? 0 : n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
                __m512 lo = _mm512_maskz_loadu_ps(m, s0 + c0);
                __m512 hi = has1 ? _mm512_maskz_loadu_ps(m, s0 + ld + c0) : _mm512_setzero_ps();
                __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(d + (size_t)p * W + r0, lanes >= 16 ? 0xFFFF : (__mmask16)((1u << lanes) - 1),
                                         v);
            }
        }
    }
}

/* ---------------------------------------------------------------- micro-kernel */

/* C[m x n] (= or +=) sum over kc pairs of the A panel (MR wide) times the B panel (NR wide). */
ML_BF16_TARGET static void kernel(int kc, const uint32_t *restrict a, const uint32_t *restrict b, float *c, int ldc,
                                  int m, int n, int accumulate) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
        a += MR;
        b += NR;
    }
    const __mmask16 k0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1),
                    k1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        if (i >= m) break;
        float *ci = c + (size_t)i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, ci));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, ci + 16));
        }
        _mm512_mask_storeu_ps(ci, k0, v0);
        _mm512_mask_storeu_ps(ci + 16, k1, v1);
    }
}

/* ---------------------------------------------------------------- driver */

/* The packed panels, kept by the calling thread between calls. */
static _Thread_local ml_scratch panels;

static uint32_t *workspace(size_t words) { return ml_scratch_get(&panels, words * sizeof(uint32_t)); }

ML_BF16_TARGET static void gemm_fast(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                                     int ldb, int accumulate, float *C, int ldc, uint32_t *Ap, uint32_t *Bp) {
    const int kp = (K + 1) / 2, mpan = (M + MR - 1) / MR, npan = (N + NR - 1) / NR;
#pragma omp parallel
    {
        if (ta)
            pack_lanes_are_cols(Ap, A, lda, M, K, MR);
        else
            pack_lanes_are_rows(Ap, A, lda, M, K, MR);
        if (tb)
            pack_lanes_are_rows(Bp, B, ldb, N, K, NR);
        else
            pack_lanes_are_cols(Bp, B, ldb, N, K, NR); /* the omp for's barrier: packing is done */
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int m_lo = 0, m_hi = mpan, n_lo = 0, n_hi = npan;
        if (npan >= 2 * nt || mpan < 2 * nt) {
            n_lo = (int)((int64_t)npan * t / nt), n_hi = (int)((int64_t)npan * (t + 1) / nt);
        } else {
            m_lo = (int)((int64_t)mpan * t / nt), m_hi = (int)((int64_t)mpan * (t + 1) / nt);
        }
        for (int ic = m_lo; ic < m_hi; ic += MCP) {
            const int ie = ic + MCP < m_hi ? ic + MCP : m_hi;
            for (int pc = 0; pc < kp; pc += KCP) {
                const int kc = kp - pc < KCP ? kp - pc : KCP, acc = accumulate || pc > 0;
                for (int jp = n_lo; jp < n_hi; jp++) {
                    const uint32_t *bp = Bp + (size_t)jp * NR * kp + (size_t)pc * NR;
                    const int n = N - jp * NR < NR ? N - jp * NR : NR;
                    for (int ip = ic; ip < ie; ip++) {
                        const int m = M - ip * MR < MR ? M - ip * MR : MR;
                        kernel(kc, Ap + (size_t)ip * MR * kp + (size_t)pc * MR, bp, C + (size_t)ip * MR * ldc + jp * NR,
                               ldc, m, n, acc);
                    }
                }
            }
        }
    }
}

/* Portable path: the same bf16 roundings, fp32 sums in k order. */
static void gemm_portable(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                          int accumulate, float *C, int ldc) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += ml_bf16_round(a) * ml_bf16_round(b);
            }
            C[(size_t)i * ldc + j] = accumulate ? C[(size_t)i * ldc + j] + s : s;
        }
}

void ml_gemm_bf16(int transA, int transB, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (beta != 0.0f && beta != 1.0f)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] *= beta;
    const int accumulate = beta != 0.0f;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    if (!ml_bf16_available()) {
        gemm_portable(transA, transB, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
        return;
    }
    const size_t kp = (size_t)(K + 1) / 2, a_words = (size_t)((M + MR - 1) / MR) * MR * kp,
                 b_words = (size_t)((N + NR - 1) / NR) * NR * kp;
    uint32_t *w = workspace(a_words + b_words + 16);
    if (!w) { /* out of memory for the panels: the portable path needs none */
        gemm_portable(transA, transB, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
        return;
    }
    gemm_fast(transA, transB, M, N, K, A, lda, B, ldb, accumulate, C, ldc, w, w + ((a_words + 15) & ~(size_t)15));
}
