/* Attention's bf16 tile products and the choice of attention kernel (see attention_bf16.h and ops.h).
 *
 * AMX: eight tiles of 16 rows x 64 bytes. A product sweeps C in 32 x 32 blocks held in tiles 0-3 (fp32), with
 * two A tiles (4, 5: 16 rows x 32 bf16) and two B tiles (6, 7: 16 k pairs x 16 columns) per 32-wide slice of k.
 * AVX512-BF16: blocks of 4 rows x 64 columns in 16 zmm accumulators; per k pair one broadcast A word per row and
 * four B vectors, as attention.c's fp32 products do with FMAs. */
#include "model/ops/attention_bf16.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <immintrin.h>

#include "common/vmath.h"
#include "model/ops/gemm.h"
#include "model/ops/transpose16.h"

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

/* ---------------------------------------------------------------- which kernel */

static const char *const names[ML_ATTN_NUM_KERNELS] = {"fp32", "avx512bf16", "amx"};

const char *ml_attn_kernel_name(ml_attn_kernel k) { return k >= 0 && k < ML_ATTN_NUM_KERNELS ? names[k] : "?"; }

/* Linux hands out the AMX tile data state only to a process that asks for it (ARCH_REQ_XCOMP_PERM for
 * XFEATURE_XTILEDATA); the permission then holds for all its threads. */
static int amx_permitted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static void amx_request(void) { amx_permitted = syscall(SYS_arch_prctl, 0x1023, 18) == 0; }

int ml_attn_kernel_available(ml_attn_kernel k) {
    const ml_cpu_features *f = ml_cpu_features_get();
    switch (k) {
    case ML_ATTN_FP32: return 1;
    case ML_ATTN_AVX512BF16: return f->avx512_bf16;
    case ML_ATTN_AMX:
        if (!f->amx_bf16 || !f->avx512_bf16) return 0; /* the converters use AVX512-BF16 */
        pthread_once(&amx_once, amx_request);
        return amx_permitted;
    default: return 0;
    }
}

static ml_attn_kernel best(void) {
    return ml_attn_kernel_available(ML_ATTN_AMX) ? ML_ATTN_AMX
           : ml_attn_kernel_available(ML_ATTN_AVX512BF16) ? ML_ATTN_AVX512BF16
                                                          : ML_ATTN_FP32;
}

ml_status ml_attn_kernel_resolve(int bf16, ml_attn_kernel *out) {
    *out = ML_ATTN_FP32;
    if (!bf16) return ML_OK;
    const char *env = getenv("ML_ATTN_KERNEL");
    if (!env || !*env || !strcmp(env, "auto")) {
        *out = best();
        return ML_OK;
    }
    for (int i = 0; i < ML_ATTN_NUM_KERNELS; i++)
        if (!strcmp(env, names[i])) {
            if (!ml_attn_kernel_available((ml_attn_kernel)i))
                return ml_fail(ML_ERR_UNSUPPORTED, "ML_ATTN_KERNEL=%s: this CPU (or OS) does not run it", env);
            *out = (ml_attn_kernel)i;
            return ML_OK;
        }
    return ml_fail(ML_ERR_ARG, "ML_ATTN_KERNEL: unknown attention kernel '%s' (auto | fp32 | avx512bf16 | amx)", env);
}

void ml_attn_kernels_describe(char *buf, size_t n) {
    ml_attn_kernel k;
    const int ok = ml_attn_kernel_resolve(1, &k) == ML_OK;
    const char *env = getenv("ML_ATTN_KERNEL");
    snprintf(buf, n, "fp32 tiles; with --precision bf16: %s%s (amx %s, avx512bf16 %s)", ok ? names[k] : "invalid",
             env && *env ? " (ML_ATTN_KERNEL)" : "", ml_attn_kernel_available(ML_ATTN_AMX) ? "available" : "absent",
             ml_attn_kernel_available(ML_ATTN_AVX512BF16) ? "available" : "absent");
}

/* ---------------------------------------------------------------- AMX */

typedef struct __attribute__((packed, aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Static: GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes only, so stores into a local
 * configuration beyond those were dropped as dead (every tile then unconfigured: SIGILL at the first use). */
static const tile_config amx_config = {.palette = 1,
                                       .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
                                       .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

AMX_TARGET static void amx_begin(void) { _tile_loadconfig(&amx_config); }

AMX_TARGET static void amx_end(void) { _tile_release(); }

void ml_attn_tiles_begin(ml_attn_kernel k) {
    if (k == ML_ATTN_AMX) amx_begin();
}

void ml_attn_tiles_end(ml_attn_kernel k) {
    if (k == ML_ATTN_AMX) amx_end();
}

AMX_TARGET static void mm_amx(float *C, int ldc, const uint16_t *A, int lda, const uint32_t *B, int ldb, int m, int n,
                              int k, int accumulate) {
    const int mp = (m + 31) & ~31;
    const long sc = 4L * ldc, sa = 2L * lda, sb = 4L * ldb;
    __asm__ volatile("" ::: "memory"); /* _tile_loadd declares no memory read: keep earlier stores before it */
    for (int i = 0; i < mp; i += 32)
        for (int j = 0; j < n; j += 32) {
            float *c = C + (long)i * ldc + j;
            if (accumulate) {
                _tile_loadd(0, c, sc);
                _tile_loadd(1, c + 16, sc);
                _tile_loadd(2, c + 16L * ldc, sc);
                _tile_loadd(3, c + 16L * ldc + 16, sc);
            } else {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
            }
            for (int kk = 0; kk < k; kk += 32) {
                _tile_loadd(4, A + (long)i * lda + kk, sa);
                _tile_loadd(5, A + (long)(i + 16) * lda + kk, sa);
                _tile_loadd(6, B + (long)(kk / 2) * ldb + j, sb);
                _tile_loadd(7, B + (long)(kk / 2) * ldb + j + 16, sb);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, c, sc);
            _tile_stored(1, c + 16, sc);
            _tile_stored(2, c + 16L * ldc, sc);
            _tile_stored(3, c + 16L * ldc + 16, sc);
        }
}

/* ---------------------------------------------------------------- AVX512-BF16 */

BF16_TARGET static inline __attribute__((always_inline)) void dp_block(float *C, int ldc, const uint16_t *A, int lda,
                                                                       const uint32_t *B, int ldb, int pairs,
                                                                       const int MR, const int NV, int accumulate) {
    __m512 c[4][4];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            c[r][v] = accumulate ? _mm512_loadu_ps(C + (long)r * ldc + 16 * v) : _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        __m512bh b[4];
        for (int v = 0; v < NV; v++) b[v] = (__m512bh)_mm512_loadu_si512(B + (long)p * ldb + 16 * v);
        for (int r = 0; r < MR; r++) {
            uint32_t w;
            memcpy(&w, A + (long)r * lda + 2 * p, sizeof w);
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)w);
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_dpbf16_ps(c[r][v], a, b[v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + (long)r * ldc + 16 * v, c[r][v]);
}

#define DP_BLOCK(MR)                                                                   \
    switch (nv) {                                                                      \
    case 4: dp_block(Ci, ldc, Ai, lda, Bj, ldb, pairs, MR, 4, accumulate); break;      \
    case 3: dp_block(Ci, ldc, Ai, lda, Bj, ldb, pairs, MR, 3, accumulate); break;      \
    case 2: dp_block(Ci, ldc, Ai, lda, Bj, ldb, pairs, MR, 2, accumulate); break;      \
    default: dp_block(Ci, ldc, Ai, lda, Bj, ldb, pairs, MR, 1, accumulate); break;     \
    }

BF16_TARGET static void mm_avx512(float *C, int ldc, const uint16_t *A, int lda, const uint32_t *B, int ldb, int m,
                                  int n, int k, int accumulate) {
    const int pairs = k / 2;
    for (int j0 = 0; j0 < n; j0 += 64) {
        const int nv = (n - j0) / 16 > 4 ? 4 : (n - j0) / 16;
        const uint32_t *Bj = B + j0;
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            float *Ci = C + (long)i * ldc + j0;
            const uint16_t *Ai = A + (long)i * lda;
            DP_BLOCK(4)
        }
        for (; i < m; i++) {
            float *Ci = C + (long)i * ldc + j0;
            const uint16_t *Ai = A + (long)i * lda;
            DP_BLOCK(1)
        }
    }
}

void ml_attn_mm(ml_attn_kernel kern, float *C, int ldc, const uint16_t *A, int lda, const uint32_t *B, int ldb, int m,
                int n, int k, int accumulate) {
    if (kern == ML_ATTN_AMX)
        mm_amx(C, ldc, A, lda, B, ldb, m, n, k, accumulate);
    else
        mm_avx512(C, ldc, A, lda, B, ldb, m, n, k, accumulate);
}

/* ---------------------------------------------------------------- converters */

/* the first `left` of 16 lanes (none for left <= 0, all for left >= 16) */
static inline __mmask16 first_lanes(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* (lo, hi) bf16 halves of 16 columns as pair words */
BF16_TARGET static inline __m512i pair16(__m256i lo, __m256i hi) {
    return _mm512_or_si512(_mm512_cvtepu16_epi32(lo), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
}

/* 16 bf16 of src[0, 16) (lanes at or past `left` read as zero) */
BF16_TARGET static inline __m256i cvt16(const float *src, int left) {
    const __mmask16 m = first_lanes(left);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src));
}

BF16_TARGET void ml_attn_to_rows(uint16_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols,
                                 int rows_pad, int cols_pad) {
    for (int r = 0; r < rows_pad; r++) {
        uint16_t *d = dst + (long)r * ldd;
        if (r >= rows) {
            memset(d, 0, sizeof(uint16_t) * cols_pad);
            continue;
        }
        for (int c = 0; c < cols_pad; c += 16) _mm256_storeu_si256((__m256i *)(d + c), cvt16(src + r * lds + c, cols - c));
    }
}

/* 16 rows of src [r0, r0 + 16) x columns [c0, c0 + 16) as words (zero past rows x cols): v[i] = row r0 + i */
BF16_TARGET static inline void load16x16(__m512i v[16], const float *src, int64_t lds, int r0, int c0, int rows,
                                         int cols) {
    const int left = cols - c0;
    const __mmask16 m = first_lanes(left);
    for (int i = 0; i < 16; i++)
        v[i] = r0 + i < rows ? _mm512_castps_si512(_mm512_maskz_loadu_ps(m, src + (int64_t)(r0 + i) * lds + c0))
                             : _mm512_setzero_si512();
}

BF16_TARGET void ml_attn_to_cols(uint16_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols,
                                 int rows_pad, int cols_pad) {
    __m512i v[16];
    for (int r0 = 0; r0 < rows_pad; r0 += 16)
        for (int c0 = 0; c0 < cols_pad; c0 += 16) { /* 16 x 16 blocks: transposed as fp32, then rounded */
            load16x16(v, src, lds, r0, c0, rows, cols);
            ml_transpose16(v);
            for (int c = 0; c < 16; c++)
                _mm256_storeu_si256((__m256i *)(dst + (long)(c0 + c) * ldd + r0),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_castsi512_ps(v[c])));
        }
}

BF16_TARGET void ml_attn_to_pairs(uint32_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols,
                                  int rows_pad, int cols_pad) {
    for (int p = 0; p < rows_pad / 2; p++) {
        const int r0 = 2 * p, r1 = 2 * p + 1;
        for (int c = 0; c < cols_pad; c += 16) {
            const __m256i lo = r0 < rows ? cvt16(src + r0 * lds + c, cols - c) : _mm256_setzero_si256();
            const __m256i hi = r1 < rows ? cvt16(src + r1 * lds + c, cols - c) : _mm256_setzero_si256();
            _mm512_storeu_si512(dst + (long)p * ldd + c, pair16(lo, hi));
        }
    }
}

BF16_TARGET void ml_attn_to_pairs_t(uint32_t *dst, int ldd, const float *src, int64_t lds, int rows, int cols,
                                    int rows_pad, int cols_pad) {
    __m512i v[16], hi[16];
    for (int r0 = 0; r0 < rows_pad; r0 += 16)
        for (int c0 = 0; c0 < cols_pad; c0 += 32) { /* 16 rows x 32 columns: one row's 16 pair words per vector */
            load16x16(v, src, lds, r0, c0, rows, cols);
            load16x16(hi, src, lds, r0, c0 + 16, rows, cols);
            for (int i = 0; i < 16; i++)
                v[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(hi[i]), _mm512_castsi512_ps(v[i]));
            ml_transpose16(v);
            const int words = cols_pad - c0 >= 32 ? 16 : (cols_pad - c0) / 2;
            for (int p = 0; p < words; p++) _mm512_storeu_si512(dst + (long)(c0 / 2 + p) * ldd + r0, v[p]);
        }
}

/* ---------------------------------------------------------------- softmax rows straight to bf16 */

/* e[j] = exp(s[j] * scale - shift) for j < n (the product first, then the difference, as the fp32 tiles do), zero
 * up to 64; returns the sum of e[0, n). */
BF16_TARGET static inline float exp_row(float *e, const float *s, float scale, float shift, int n) {
    const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    for (int j = 0; j < 64; j += 16) {
        const __mmask16 m = first_lanes(n - j);
        const __m512 x = _mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), sc), sh);
        const __m512 y = _mm512_maskz_mov_ps(m, ml_exp16(x));
        _mm512_storeu_ps(e + j, y);
        acc = _mm512_add_ps(acc, y);
    }
    return _mm512_reduce_add_ps(acc);
}

BF16_TARGET float ml_attn_softmax_row(uint16_t *dst, const float *s, float scale, float shift, int n, int cols_pad) {
    float e[64] __attribute__((aligned(64)));
    const float sum = exp_row(e, s, scale, shift, n);
    for (int c = 0; c < cols_pad; c += 16) _mm256_storeu_si256((__m256i *)(dst + c), cvt16(e + c, 16));
    return sum;
}

BF16_TARGET void ml_attn_grad_rows(uint16_t *ds_rows, uint32_t *p_pairs, uint32_t *ds_pairs, const float *s,
                                   const float *dp, int ld, const float *lse, const float *D, float scale, int rows,
                                   int cols, int rows_pad) {
    float p[2][64] __attribute__((aligned(64))), ds[2][64] __attribute__((aligned(64)));
    for (int r0 = 0; r0 < rows_pad; r0 += 2) {
        for (int h = 0; h < 2; h++) {
            const int r = r0 + h;
            if (r >= rows) {
                memset(p[h], 0, sizeof p[h]);
                memset(ds[h], 0, sizeof ds[h]);
                continue;
            }
            exp_row(p[h], s + (long)r * ld, scale, lse[r], cols); /* P = exp(S * scale - lse); masked keys give 0 */
            const float *dpr = dp + (long)r * ld;
            const __m512 dr = _mm512_set1_ps(D[r]), sc = _mm512_set1_ps(scale);
            for (int j = 0; j < 64; j += 16) { /* dS = P (dP - D) scale; zero past `cols` since P is */
                const __mmask16 m = first_lanes(cols - j);
                const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dpr + j), dr);
                _mm512_storeu_ps(ds[h] + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(p[h] + j), g), sc));
            }
        }
        for (int c = 0; c < 64; c += 16) {
            const __m256i p0 = cvt16(p[0] + c, 16), p1 = cvt16(p[1] + c, 16);
            const __m256i d0 = cvt16(ds[0] + c, 16), d1 = cvt16(ds[1] + c, 16);
            _mm256_storeu_si256((__m256i *)(ds_rows + (long)r0 * 64 + c), d0);
            _mm256_storeu_si256((__m256i *)(ds_rows + (long)(r0 + 1) * 64 + c), d1);
            _mm512_storeu_si512(p_pairs + (long)(r0 / 2) * 64 + c, pair16(p0, p1));
            _mm512_storeu_si512(ds_pairs + (long)(r0 / 2) * 64 + c, pair16(d0, d1));
        }
    }
}

BF16_TARGET void ml_attn_from_cols(float *dst, int64_t ldd, const float *src, int lds, int rows, int cols) {
    __m512i v[16];
    for (int r0 = 0; r0 < rows; r0 += 16)
        for (int c0 = 0; c0 < cols; c0 += 16) {
            for (int i = 0; i < 16; i++) v[i] = _mm512_loadu_si512(src + (long)(c0 + i) * lds + r0);
            ml_transpose16(v);
            const __mmask16 m = first_lanes(cols - c0);
            for (int r = 0; r < 16 && r0 + r < rows; r++)
                _mm512_mask_storeu_ps(dst + (int64_t)(r0 + r) * ldd + c0, m, _mm512_castsi512_ps(v[r]));
        }
}
