/* Integer GEMM (see gemm_int8.h).
 *
 * Micro-kernel: an MR x 32 tile of Y. Per group it keeps MR x 2 int32 accumulators (vpdpbusd: four u8 x s8
 * products per lane added to an int32, no saturation) and MR x 2 fp32 ones; per four columns it loads the panel's
 * two vectors of codes and broadcasts each row's four u8. At a group's end the int32 sums become exact fp32 integers,
 * lose the offset term and are added with the group's weight scales. 6 x 32 uses 12 + 12 accumulators, two code
 * vectors, a broadcast and the group's scale and code-sum vectors of the 32 zmm registers.
 *
 * Blocking: the groups are taken in blocks of KB columns (16 KiB of a panel's codes, which stay in L1 while a chunk
 * of activation rows passes); between blocks the fp32 running sums wait in Y, exactly, so blocking changes no bit.
 * Threads: over (panel of 32 weight rows, chunk of CHUNK tiles of MR rows), panel-major. Every Y element has one
 * owner. */
#include "model/ops/gemm_int8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#define NR 32
#define MR 6
#define MAX_GROUP 512
#define KB 512    /* columns per block: 16 KiB of a panel's codes, in L1 while the rows of a chunk pass */
#define CHUNK 32  /* tiles of MR rows per task (192 rows: 108 KiB of u8 inputs at K = 576) */

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static int gcd(int a, int b) {
    while (b) {
        const int t = a % b;
        a = b, b = t;
    }
    return a;
}

int ml_int8_group(int K, int wgroup, int xgroup) {
    if (K <= 0 || wgroup <= 0 || xgroup <= 0 || K % wgroup || K % xgroup) return 0;
    int g = gcd(wgroup, xgroup);
    while (g > MAX_GROUP && g % 8 == 0) g /= 2;
    return g % 4 || g > MAX_GROUP ? 0 : g;
}

size_t ml_int8_matrix_bytes(int N, int K, int group, int plain) {
    const size_t panels = ((size_t)N + NR - 1) / NR, groups = (size_t)K / (size_t)group;
    return round64(panels * (size_t)K * NR) + 2 * round64(panels * groups * NR * sizeof(float)) +
           (plain ? round64((size_t)N * K) + 2 * round64((size_t)N * sizeof(float)) : 0);
}

void ml_int8_layout(ml_int8_matrix *w, void *mem, int N, int K, int group, int plain) {
    const int panels = (N + NR - 1) / NR, groups = K / group;
    char *p = mem;
    w->N = N, w->K = K, w->group = group;
    w->q = (int8_t *)p;
    w->scale = (float *)(p + round64((size_t)panels * K * NR));
    w->qsum = (float *)((char *)w->scale + round64((size_t)panels * groups * NR * sizeof(float)));
    w->plain = NULL, w->row_scale = NULL, w->row_sum = NULL;
    if (plain) {
        w->plain = (int8_t *)((char *)w->qsum + round64((size_t)panels * groups * NR * sizeof(float)));
        w->row_scale = (float *)((char *)w->plain + round64((size_t)N * K));
        w->row_sum = (int32_t *)((char *)w->row_scale + round64((size_t)N * sizeof(float)));
    }
}

void ml_int8_pack_panel(ml_int8_matrix *w, int pn, const int8_t *codes, const float *scales, int wgroup) {
    const int N = w->N, K = w->K, group = w->group, groups = K / group, wgroups = K / wgroup;
    int8_t *q = w->q + (size_t)pn * K * NR;
    float *sc = w->scale + (size_t)pn * groups * NR, *qs = w->qsum + (size_t)pn * groups * NR;
    for (int r = 0; r < NR; r++) {
        const int o = pn * NR + r;
        const int8_t *c = codes + (size_t)r * K;
        if (o >= N) { /* rows past the edge: zero codes and scales */
            for (int k = 0; k < K; k += 4) memset(q + ((size_t)(k / 4) * NR + r) * 4, 0, 4);
            for (int g = 0; g < groups; g++) sc[(size_t)g * NR + r] = qs[(size_t)g * NR + r] = 0.0f;
            continue;
        }
        for (int k = 0; k < K; k += 4) memcpy(q + ((size_t)(k / 4) * NR + r) * 4, c + k, 4);
        int32_t total = 0;
        for (int g = 0; g < groups; g++) {
            int32_t sum = 0;
            for (int k = g * group; k < (g + 1) * group; k++) sum += c[k];
            sc[(size_t)g * NR + r] = scales[(size_t)r * wgroups + (size_t)g * group / wgroup];
            qs[(size_t)g * NR + r] = (float)sum;
            total += sum;
        }
        if (w->plain) {
            memcpy(w->plain + (size_t)o * K, c, (size_t)K);
            w->row_scale[o] = scales[(size_t)r * wgroups], w->row_sum[o] = total;
        }
    }
}

void ml_int8_pack(ml_int8_matrix *w, void *mem, const int8_t *codes, const float *scales, int wgroup, int N, int K,
                  int group, int plain) {
    ml_int8_layout(w, mem, N, K, group, plain && wgroup == K);
    const int panels = (N + NR - 1) / NR, wgroups = K / wgroup;
#pragma omp parallel for schedule(static)
    for (int pn = 0; pn < panels; pn++)
        ml_int8_pack_panel(w, pn, codes + (size_t)pn * NR * K, scales + (size_t)pn * NR * wgroups, wgroup);
}

/* ---------------------------------------------------------------- portable kernel */

/* One row t, one panel, groups [g0, g1): the same operations in the same order as the vector kernel, so the same
 * bits. Unless first, the running sums come from y (stored there exactly by the previous block of groups); unless
 * last, they go back there unscaled. */
static void row_portable(float *y, const uint8_t *x, const float *xs, int per_row, int xgroup, int32_t off,
                         const int8_t *q, const float *sc, const float *qs, int group, int g0, int g1, int first,
                         int last, int cols) {
    float acc[NR] = {0};
    if (!first)
        for (int r = 0; r < cols; r++) acc[r] = y[r];
    const float c = (float)off;
    for (int g = g0; g < g1; g++) {
        int32_t raw[NR] = {0};
        for (int k = g * group; k < (g + 1) * group; k += 4)
            for (int r = 0; r < NR; r++)
                for (int j = 0; j < 4; j++) raw[r] += (int32_t)x[k + j] * q[((size_t)(k / 4) * NR + r) * 4 + j];
        const float xsg = per_row ? 1.0f : xs[(size_t)g * group / xgroup];
        for (int r = 0; r < NR; r++) {
            const float isum = fmaf(-c, qs[(size_t)g * NR + r], (float)raw[r]); /* exact: integers below 2^24 */
            const float coef = per_row ? sc[(size_t)g * NR + r] : sc[(size_t)g * NR + r] * xsg;
            acc[r] = fmaf(coef, isum, acc[r]);
        }
    }
    for (int r = 0; r < cols; r++) y[r] = per_row && last ? acc[r] * xs[0] : acc[r];
}

/* ---------------------------------------------------------------- AVX512-VNNI kernel */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))

VNNI_TARGET static inline __attribute__((always_inline)) void tile_vnni(
    const int R, float *Y, int ldy, const uint8_t *X, int ldx, const float *xs, int xs_ld, int per_row, int xgroup,
    const int32_t *off, const int8_t *q, const float *sc, const float *qs, int group, int g0, int g1, int first, int last,
    int cols) {
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
    __m512 acc[MR][2];
    __m512 c[MR];
    for (int i = 0; i < R; i++) {
        if (first) {
            acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        } else { /* the running sums the previous block of groups left in Y */
            acc[i][0] = _mm512_maskz_loadu_ps(m0, Y + (size_t)i * ldy);
            acc[i][1] = _mm512_maskz_loadu_ps(m1, Y + (size_t)i * ldy + 16);
        }
        c[i] = _mm512_set1_ps((float)off[i]);
    }
    for (int g = g0; g < g1; g++) {
        __m512i raw[MR][2];
        for (int i = 0; i < R; i++) raw[i][0] = raw[i][1] = _mm512_setzero_si512();
        const int8_t *qg = q + (size_t)g * group * NR;
        for (int k = g * group; k < (g + 1) * group; k += 4, qg += 4 * NR) {
            const __m512i b0 = _mm512_loadu_si512(qg), b1 = _mm512_loadu_si512(qg + 64);
            for (int i = 0; i < R; i++) {
                int32_t a4;
                memcpy(&a4, X + (size_t)i * ldx + k, 4);
                const __m512i a = _mm512_set1_epi32(a4);
                raw[i][0] = _mm512_dpbusd_epi32(raw[i][0], a, b0);
                raw[i][1] = _mm512_dpbusd_epi32(raw[i][1], a, b1);
            }
        }
        const __m512 s0 = _mm512_loadu_ps(sc + (size_t)g * NR), s1 = _mm512_loadu_ps(sc + (size_t)g * NR + 16);
        const __m512 z0 = _mm512_loadu_ps(qs + (size_t)g * NR), z1 = _mm512_loadu_ps(qs + (size_t)g * NR + 16);
        for (int i = 0; i < R; i++) {
            const __m512 i0 = _mm512_fnmadd_ps(c[i], z0, _mm512_cvtepi32_ps(raw[i][0]));
            const __m512 i1 = _mm512_fnmadd_ps(c[i], z1, _mm512_cvtepi32_ps(raw[i][1]));
            if (per_row) {
                acc[i][0] = _mm512_fmadd_ps(s0, i0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(s1, i1, acc[i][1]);
            } else {
                const __m512 xsg = _mm512_set1_ps(xs[(size_t)i * xs_ld + (size_t)g * group / xgroup]);
                acc[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(s0, xsg), i0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(s1, xsg), i1, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < R; i++) {
        __m512 y0 = acc[i][0], y1 = acc[i][1];
        if (per_row && last) {
            const __m512 x = _mm512_set1_ps(xs[(size_t)i * xs_ld]);
            y0 = _mm512_mul_ps(y0, x), y1 = _mm512_mul_ps(y1, x);
        }
        _mm512_mask_storeu_ps(Y + (size_t)i * ldy, m0, y0);
        _mm512_mask_storeu_ps(Y + (size_t)i * ldy + 16, m1, y1);
    }
}

VNNI_TARGET static void tile_dispatch(int R, float *Y, int ldy, const uint8_t *X, int ldx, const float *xs, int xs_ld,
                                      int per_row, int xgroup, const int32_t *off, const int8_t *q, const float *sc,
                                      const float *qs, int group, int g0, int g1, int first, int last, int cols) {
#define TILE(r) tile_vnni(r, Y, ldy, X, ldx, xs, xs_ld, per_row, xgroup, off, q, sc, qs, group, g0, g1, first, last, cols)
    switch (R) {
    case 6: TILE(6); break;
    case 5: TILE(5); break;
    case 4: TILE(4); break;
    case 3: TILE(3); break;
    case 2: TILE(2); break;
    default: TILE(1); break;
    }
#undef TILE
}

int ml_int8_vnni_available(void) {
    static int avail = -1;
    if (avail < 0) {
        __builtin_cpu_init();
        const char *off = getenv("ML_DISABLE_VNNI");
        avail = (!off || !*off || !strcmp(off, "0")) && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
    }
    return avail;
}

static void product(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                    const ml_int8_matrix *W, int M, int vnni) {
    const int N = W->N, K = W->K, group = W->group, panels = (N + NR - 1) / NR, groups = K / group;
    const int per_row = xgroup == K, xs_ld = per_row ? 1 : K / xgroup;
    const int tiles = (M + MR - 1) / MR, chunks = (tiles + CHUNK - 1) / CHUNK;
    const int gb = KB / group > 0 ? KB / group : 1; /* groups per block of columns */
#pragma omp parallel for collapse(2) schedule(static)
    for (int pn = 0; pn < panels; pn++)
        for (int ch = 0; ch < chunks; ch++) {
            const int o0 = pn * NR, cols = N - o0 < NR ? N - o0 : NR;
            const int8_t *q = W->q + (size_t)pn * K * NR;
            const float *sc = W->scale + (size_t)pn * groups * NR, *qs = W->qsum + (size_t)pn * groups * NR;
            const int ti1 = (ch + 1) * CHUNK < tiles ? (ch + 1) * CHUNK : tiles;
            for (int g0 = 0; g0 < groups; g0 += gb) { /* a block of the panel stays in L1 while the chunk's rows pass */
                const int g1 = g0 + gb < groups ? g0 + gb : groups, first = g0 == 0, last = g1 == groups;
                for (int ti = ch * CHUNK; ti < ti1; ti++) {
                    const int t0 = ti * MR, rows = M - t0 < MR ? M - t0 : MR;
                    if (vnni) {
                        tile_dispatch(rows, Y + (size_t)t0 * N + o0, N, X + (size_t)t0 * K, K,
                                      xscale + (size_t)t0 * xs_ld, xs_ld, per_row, xgroup, xoffset + t0, q, sc, qs,
                                      group, g0, g1, first, last, cols);
                        continue;
                    }
                    for (int i = 0; i < rows; i++) {
                        const int t = t0 + i;
                        row_portable(Y + (size_t)t * N + o0, X + (size_t)t * K, xscale + (size_t)t * xs_ld, per_row,
                                     xgroup, xoffset[t], q, sc, qs, group, g0, g1, first, last, cols);
                    }
                }
            }
        }
}

void ml_gemm_int8(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                  const ml_int8_matrix *W, int M) {
    product(Y, X, xscale, xgroup, xoffset, W, M, ml_int8_vnni_available());
}

void ml_gemm_int8_portable(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                           const ml_int8_matrix *W, int M) {
    product(Y, X, xscale, xgroup, xoffset, W, M, 0);
}

void ml_int8_finish_rows(float *Y, const int32_t *acc, const float *xscale, const int32_t *xoffset,
                         const ml_int8_matrix *W, int M) {
    const int N = W->N;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < M; t++)
        for (int o = 0; o < N; o++) {
            const int64_t isum = (int64_t)acc[(size_t)t * N + o] - (int64_t)xoffset[t] * W->row_sum[o];
            Y[(size_t)t * N + o] = (float)isum * W->row_scale[o] * xscale[t];
        }
}
