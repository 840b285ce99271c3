/* The GEMM engine layer: every product of the model (model/ops/matmul.c) goes through ml_gemm, which runs it on
 * one of these engines:
 *   openblas  OpenBLAS sgemm, fp32 inputs
 *   bf16      our AVX512-BF16 kernel (model/ops/gemm_bf16.h): inputs rounded to bf16, fp32 accumulation
 *   onednn    oneDNN matmul on bf16 inputs with fp32 accumulation and output (model/ops/gemm_onednn.c; AMX where
 *             the CPU has it, else its AVX-512 bf16/VNNI kernels); present when the build found oneDNN
 *   int8      integer products (model/ops/gemm_int8.h) for the forward of the products whose weight sits on an
 *             integer grid and whose input is quantized to int8 (QAT's int4/q4_0/q8_0 weights with --act int8-token
 *             or q8_0): s8 codes x u8 codes summed exactly in int32 per group, times the scales in fp32, so the
 *             result is the fake-quantized product up to fp32 rounding. Every other product (their backward, and
 *             products without such transforms) runs as under auto. AVX512-VNNI kernel, portable fallback.
 *
 *   C[M,N] = beta * C + op(A)[M,K] . op(B)[K,N]     row-major, beta 0 or 1, transposes as in gemm_bf16.h
 *
 * Choosing (ML_GEMM_AUTO). fp32 precision: always openblas. bf16 precision: a rule on the CPU's features and the
 * shape (ml_gemm_choose), fixed per machine, so that a run stays a function of (config, data, seed) and resume is
 * bit-exact; a timing on first use would let machine load flip a shape between engines of different arithmetic.
 * The rule comes from `mobilellm bench` step profiles (bench/RESULTS.md): a CPU that multiplies bf16 (AMX or
 * AVX512-BF16) with oneDNN built in -> onednn, which reads the model's bf16 weight copies and bf16 activations and
 * writes bf16 outputs (AMX Xeon: 2-4x sgemm per product; Zen 4: 310-380 GFLOP/s on every 125M product, sgemm ~170);
 * AVX512-BF16 without oneDNN -> bf16 for products with a wide weight operand (2-3x sgemm on Zen 4), sgemm for
 * narrow ones (our kernel lost on 576 x 576 and 192 x 576); otherwise, and for products too small to amortise the
 * bf16 conversion, -> openblas.
 * Integer-grid forward products (either precision): auto -> int8 where the CPU has AVX512-VNNI (a fixed rule, as
 * above); forcing openblas (or bf16, onednn) keeps them on the fp32 (bf16) product of the fake-quantized operands,
 * the reference the int8 engine is tested against.
 * The environment variable ML_GEMM_ENGINE (auto | openblas | bf16 | onednn | int8) replaces "auto" in bf16
 * precision, and in fp32 where it says openblas or int8 (ml_gemm_engine_resolve): `ML_GEMM_ENGINE=openblas` gives
 * commands without --gemm-engine (logits, eval, sample) the fake-quant forward. An engine given explicitly
 * (--gemm-engine) wins over it. */
#ifndef ML_GEMM_H
#define ML_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum {
    ML_GEMM_AUTO = 0,
    ML_GEMM_OPENBLAS,
    ML_GEMM_BF16,
    ML_GEMM_ONEDNN,
    ML_GEMM_INT8,
    ML_GEMM_NUM_ENGINES
} ml_gemm_engine;

const char *ml_gemm_engine_name(ml_gemm_engine e);
/* "auto" | "openblas" | "bf16" | "onednn" | "int8"; ML_ERR_ARG with a one-line message otherwise. */
ml_status ml_gemm_engine_parse(const char *name, ml_gemm_engine *e);
/* 1 when the engine runs on this machine at speed (openblas always; bf16: AVX512-BF16; onednn: built with
 * oneDNN and its bf16 matmul is implemented on this CPU; int8: always, slowly without AVX512-VNNI). */
int ml_gemm_engine_available(ml_gemm_engine e);
/* `requested`, with AUTO replaced by ML_GEMM_ENGINE when that is set and bf16 is allowed; fails (one line) for an
 * unknown name, an engine this machine lacks, or a bf16 engine asked for with fp32 precision (bf16_allowed 0). */
ml_status ml_gemm_engine_resolve(ml_gemm_engine requested, int bf16_allowed, ml_gemm_engine *out);
/* The engine AUTO picks for one product. */
ml_gemm_engine ml_gemm_choose(int bf16_allowed, int transA, int transB, int M, int N, int K);
/* 1 when products asked of `engine` (as resolved) run their integer-grid forwards on the int8 engine: int8, or
 * auto on a CPU with AVX512-VNNI. */
int ml_gemm_int8_forward(ml_gemm_engine engine);

/* C = beta * C + op(A) op(B) on `engine` (AUTO: ml_gemm_choose with bf16 allowed). Called outside OpenMP
 * parallel regions: every engine runs on the threads of the calling team (oneDNN on OpenMP's too). */
void ml_gemm(ml_gemm_engine engine, int transA, int transB, int M, int N, int K, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* One operand of a product: its fp32 values (row stride ld), its bf16 bits (ml_bf16_convert, compact: the same
 * layout with ld = the row length), or both (the same values, b16 = the rounding of f32). Callers that keep a bf16
 * copy (the model's weights, refreshed once per optimizer step; bf16 activations; an output gradient read by two
 * products) pass it, and engines that multiply bf16 operands (onednn) read it instead of converting f32 in every
 * product; engines that need fp32 (openblas, bf16) read f32, or widen b16 when only that is given. */
typedef struct {
    const float *f32;
    const uint16_t *b16;
    int ld;
} ml_gemm_operand;
static inline ml_gemm_operand ml_gemm_f32(const float *f32, int ld) { return (ml_gemm_operand){f32, NULL, ld}; }

/* C = beta * C + op(A) op(B) as ml_gemm, on operands given as above. */
void ml_gemm_ops(ml_gemm_engine engine, int transA, int transB, int M, int N, int K, ml_gemm_operand A,
                 ml_gemm_operand B, float beta, float *C, int ldc);
/* C16 = op(A) op(B) as bf16 bits, compact [M,N]: each fp32 sum rounded once to nearest even (onednn writes bf16
 * itself; the others compute fp32 C and round it). For products whose output is only read as bf16 (the model's
 * bf16 activations). */
void ml_gemm_ops_to_bf16(ml_gemm_engine engine, int transA, int transB, int M, int N, int K, ml_gemm_operand A,
                         ml_gemm_operand B, uint16_t *C16);
/* 1 when ml_gemm_ops(engine, ...) of this shape reads bf16 operands (the engine it runs on is onednn), i.e. when
 * handing it a bf16 copy saves a conversion. */
int ml_gemm_reads_bf16(ml_gemm_engine engine, int transA, int transB, int M, int N, int K);
/* 1 when products asked of `requested` (AUTO or one engine) may run on an engine that reads bf16 copies (onednn),
 * i.e. when keeping such copies pays. */
int ml_gemm_reads_bf16_copies(ml_gemm_engine requested);

/* 1 when the int8 engine runs products whose weights have one scale per row (int4-channel-lsq, the int8 embedding
 * as head) with int8-token inputs on oneDNN's u8 x s8 matmul: where the CPU has AMX-INT8 (the Xeon: 4.2-5.4
 * TOP/s) and the build has oneDNN, or with ML_INT8_ONEDNN=1 (tests). Group-wise weights stay on our kernel: oneDNN
 * 2.6 has no per-group scales in one product. Fixed per machine, as the rule above. */
int ml_gemm_int8_onednn(void);
/* The int8 engine's product (model/ops/gemm_int8.h), recorded with the others (M x N x K, "NT", engine int8). */
struct ml_int8_matrix_s;
void ml_gemm_q8(float *Y, const uint8_t *X, const float *xscale, int xgroup, const int32_t *xoffset,
                const struct ml_int8_matrix_s *W, int M);

/* 1 when engine e's dW products (A transposed) are as fast writing C as adding to it, so that a gradient is better left
 * to its first product (ml_model_zero_grad) than zeroed beforehand. 0 for oneDNN on AMX, whose products on some of
 * these shapes ran 10-35% faster adding into zeros (bench/RESULTS.md, GEMM engines (j) and (l)). */
int ml_gemm_overwrite_pays(ml_gemm_engine e);

/* CPU features that matter to the engines (CPUID, and for AMX the OS's XSAVE state). */
typedef struct {
    int avx512f, avx512_bf16, avx512_vnni, avx512_fp16, amx_tile, amx_bf16, amx_int8;
} ml_cpu_features;
const ml_cpu_features *ml_cpu_features_get(void);
/* e.g. "avx512f avx512_bf16 avx512_vnni" (only those present) */
void ml_cpu_features_describe(char *buf, size_t n);
/* One line per engine: name, available or why not, and for oneDNN its version and the ISA it dispatches to. */
void ml_gemm_engines_describe(char *buf, size_t n);

/* What ran: each distinct product (shape, transposes, engine) since the last reset, with its calls and time.
 * Recorded by every ml_gemm call (a clock read and a table lookup). */
typedef struct {
    int M, N, K, transA, transB;
    ml_gemm_engine engine;
    int64_t calls;
    double seconds, flops;
    double convert_seconds; /* of `seconds`: rounding fp32 operands to bf16, or widening bf16 ones, for the engine */
} ml_gemm_stat;
void ml_gemm_stats_reset(void);
/* Copies up to max rows, returns how many there are. */
int ml_gemm_stats(ml_gemm_stat *rows, int max);

#endif
