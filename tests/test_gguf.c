/* GGUF: ggml's Q8_0/Q4_0 quantization on hand-computed blocks, writer/reader round trips, the
 * model export (metadata types, tensor names and shapes, Q/K row permutation, shared blocks,
 * tied embeddings, byte vocabulary, refusals), and the reader on truncated and lying files.
 * llama.cpp itself loads the exports in tests/cli/gguf_llamacpp.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "formats/gguf.h"
#include "formats/half.h"
#include "interop/gguf_export.h"
#include "tests/support/test_util.h"

static const char *dir;

static void test_quant_blocks(void **state) {
    (void)state;
    /* Q8_0: d = amax/127; q = roundf(x/d), halves away from zero (rintf would give 2 and -2). */
    float x[32] = {127.0f, 2.5f, -2.5f, 0.49f, -127.0f};
    uint8_t q8[34];
    ml_quantize_row_q8_0(q8, x, 32);
    assert_int_equal(q8[0] | q8[1] << 8, ml_f32_to_f16(1.0f));
    assert_int_equal((int8_t)q8[2], 127);
    assert_int_equal((int8_t)q8[3], 3);
    assert_int_equal((int8_t)q8[4], -3);
    assert_int_equal((int8_t)q8[5], 0);
    assert_int_equal((int8_t)q8[6], -127);
    float y[32];
    ml_dequantize_row_q8_0(y, q8, 32);
    assert_true(y[1] == 3.0f && y[4] == -127.0f);

    /* Q4_0: d = (signed value of largest |x|) / -8; q = min(15, (int8)(x/d + 8.5)); element j in
       the low nibble of byte j, element j+16 in the high nibble. */
    float z[32] = {-8.0f, 0.5f, -0.5f, 7.9f, -8.0f, 6.5f, -7.6f};
    z[16] = 1.0f;
    z[17] = -1.0f;
    uint8_t q4[18];
    ml_quantize_row_q4_0(q4, z, 32);
    assert_int_equal(q4[0] | q4[1] << 8, ml_f32_to_f16(1.0f));
    const int lo[7] = {0, 9, 8, 15, 0, 15, 0};
    for (int j = 0; j < 7; j++) assert_int_equal(q4[2 + j] & 0xF, lo[j]);
    assert_int_equal(q4[2] >> 4, 9);  /* 1.0 + 8.5 -> 9 */
    assert_int_equal(q4[3] >> 4, 7);  /* -1.0 + 8.5 -> 7 */
    assert_int_equal(q4[4] >> 4, 8);  /* 0 -> 8 */
    ml_dequantize_row_q4_0(y, q4, 32);
    assert_true(y[0] == -8.0f && y[1] == 1.0f && y[3] == 7.0f && y[16] == 1.0f && y[17] == -1.0f);

    /* a block of zeros: d = 0, codes 0 (Q8_0) / 8 (Q4_0) */
    float zero[32] = {0};
    ml_quantize_row_q8_0(q8, zero, 32);
    ml_quantize_row_q4_0(q4, zero, 32);
    assert_int_equal(q8[0] | q8[1] | q8[2], 0);
    assert_int_equal(q4[2], 0x88);

    /* round trip error bounds on random data: |x - deq| <= d/2 (Q8_0), <= |d| (Q4_0) */
    float r[256], back[256];
    uint8_t qb[8 * 34];
    uint32_t s = 12345;
    for (int i = 0; i < 256; i++) {
        s = s * 1664525u + 1013904223u;
        r[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (float)(1 + i % 7);
    }
    ml_quantize_row_q8_0(qb, r, 256);
    ml_dequantize_row_q8_0(back, qb, 256);
    for (int i = 0; i < 256; i++) {
        float d = ml_f16_to_f32((uint16_t)(qb[(i / 32) * 34] | qb[(i / 32) * 34 + 1] << 8));
        assert_true(fabsf(r[i] - back[i]) <= d * 0.5f + 1e-3f * fabsf(r[i]) + 1e-6f);
    }
    ml_quantize_row_q4_0(qb, r, 256);
    ml_dequantize_row_q4_0(back, qb, 256);
    for (int i = 0; i < 256; i++) {
        float d = fabsf(ml_f16_to_f32((uint16_t)(qb[(i / 32) * 18] | qb[(i / 32) * 18 + 1] << 8)));
        assert_true(fabsf(r[i] - back[i]) <= d + 1e-3f * fabsf(r[i]) + 1e-6f);
    }
}

/* A small file with every value kind and tensor type. */
static float data64[4 * 64];
static const int64_t order4[4] = {2, 0, 3, 1};

static void write_sample(const char *path) {
    for (int i = 0; i < 4 * 64; i++) data64[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    ml_gguf_writer *w;
    assert_int_equal(ml_gguf_writer_create(&w), ML_OK);
    assert_int_equal(ml_gguf_add_str(w, "general.architecture", "llama"), ML_OK);
    assert_int_equal(ml_gguf_add_u32(w, "a.u32", 0xDEADBEEFu), ML_OK);
    assert_int_equal(ml_gguf_add_i32(w, "a.i32", -7), ML_OK);
    assert_int_equal(ml_gguf_add_f32(w, "a.f32", 1e-5f), ML_OK);
    assert_int_equal(ml_gguf_add_bool(w, "a.bool", 1), ML_OK);
    const char *strs[3] = {"x", "", "<0x0A>"};
    assert_int_equal(ml_gguf_add_arr_str(w, "a.strs", strs, NULL, 3), ML_OK);
    const float fs[2] = {0.5f, -2.0f};
    assert_int_equal(ml_gguf_add_arr_f32(w, "a.f32s", fs, 2), ML_OK);
    const int32_t is[3] = {1, 6, 3};
    assert_int_equal(ml_gguf_add_arr_i32(w, "a.i32s", is, 3), ML_OK);
    assert_int_equal(ml_gguf_add_u32(w, "a.u32", 1), ML_ERR_ARG); /* duplicate */
    int64_t ne[2] = {64, 4}, ne1 = 7;
    assert_int_equal(ml_gguf_add_tensor(w, "t.f32", ML_GGML_F32, 2, ne, data64, order4), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "t.f16", ML_GGML_F16, 2, ne, data64, NULL), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "t.q8", ML_GGML_Q8_0, 2, ne, data64, NULL), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "t.q4", ML_GGML_Q4_0, 2, ne, data64, NULL), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "t.odd", ML_GGML_F32, 1, &ne1, data64, NULL), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "t.bad", ML_GGML_Q8_0, 1, &ne1, data64, NULL), ML_ERR_ARG);
    assert_int_equal(ml_gguf_add_tensor(w, "t.f32", ML_GGML_F32, 1, &ne1, data64, NULL), ML_ERR_ARG);
    assert_int_equal(ml_gguf_writer_write(w, path), ML_OK);
    ml_gguf_writer_free(w);
}

static void test_roundtrip(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "sample.gguf"));
    write_sample(path);
    ml_gguf_file f;
    assert_int_equal(ml_gguf_load(&f, path), ML_OK);
    assert_int_equal(f.version, 3);
    assert_int_equal(f.n_kv, 8);
    assert_int_equal(f.n_tensors, 5);
    assert_int_equal(f.data_offset % 32, 0);
    uint64_t total = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        assert_int_equal(f.tensors[i].offset, total);
        total += (f.tensors[i].nbytes + 31) / 32 * 32;
    }
    assert_int_equal(f.size, f.data_offset + total); /* every tensor padded, the last one too */
    assert_memory_equal(f.owned, "GGUF\x03\0\0\0\x05\0\0\0\0\0\0\0\x08\0\0\0\0\0\0\0", 24);

    uint32_t u;
    float fl;
    const char *s;
    uint64_t n;
    assert_int_equal(ml_gguf_get_u32(&f, "a.u32", &u), ML_OK);
    assert_int_equal(u, 0xDEADBEEFu);
    assert_int_equal(ml_gguf_get_f32(&f, "a.f32", &fl), ML_OK);
    assert_true(fl == 1e-5f);
    assert_int_equal(ml_gguf_get_f32(&f, "a.u32", &fl), ML_ERR_FORMAT); /* wrong type */
    assert_int_equal(ml_gguf_get_str(&f, "general.architecture", &s, &n), ML_OK);
    assert_true(n == 5 && !memcmp(s, "llama", 5));
    const ml_gguf_kv *kv = ml_gguf_find_kv(&f, "a.strs");
    assert_non_null(kv);
    assert_int_equal(kv->arr_type, ML_GGUF_STRING);
    assert_int_equal(ml_gguf_arr_str(kv, 1, &s, &n), ML_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ml_gguf_arr_str(kv, 2, &s, &n), ML_OK);
    assert_true(n == 6 && !memcmp(s, "<0x0A>", 6));
    assert_int_equal(ml_gguf_find_kv(&f, "a.bool")->value[0], 1);
    assert_int_equal(ml_gguf_find_kv(&f, "a.i32s")->arr_n, 3);

    float out[4 * 64], ref[4 * 64];
    const ml_gguf_tensor *t = ml_gguf_find_tensor(&f, "t.f32");
    assert_true(t->ne[0] == 64 && t->ne[1] == 4 && t->type == ML_GGML_F32 && t->nbytes == 1024);
    assert_int_equal(ml_gguf_tensor_to_f32(t, out), ML_OK);
    for (int r = 0; r < 4; r++) assert_memory_equal(out + 64 * r, data64 + 64 * order4[r], 64 * sizeof(float));
    t = ml_gguf_find_tensor(&f, "t.f16");
    assert_int_equal(t->nbytes, 512);
    ml_gguf_tensor_to_f32(t, out);
    for (int i = 0; i < 256; i++) assert_true(out[i] == ml_f16_to_f32(ml_f32_to_f16(data64[i])));
    uint8_t qb[8 * 34];
    t = ml_gguf_find_tensor(&f, "t.q8");
    assert_int_equal(t->nbytes, 8 * 34);
    ml_quantize_row_q8_0(qb, data64, 256);
    assert_memory_equal(t->data, qb, 8 * 34);
    ml_gguf_tensor_to_f32(t, out);
    ml_dequantize_row_q8_0(ref, qb, 256);
    assert_memory_equal(out, ref, sizeof ref);
    t = ml_gguf_find_tensor(&f, "t.q4");
    assert_int_equal(t->nbytes, 8 * 18);
    ml_quantize_row_q4_0(qb, data64, 256);
    assert_memory_equal(t->data, qb, 8 * 18);
    t = ml_gguf_find_tensor(&f, "t.odd");
    assert_true(t->n_dims == 1 && t->ne[0] == 7 && t->nbytes == 28);
    ml_gguf_file_free(&f);
}

/* ------------------------------------------------------------------------------------------ */

static int expect_parse_fail(const uint8_t *buf, size_t n, const char *needle) {
    ml_gguf_file f;
    ml_status s = ml_gguf_parse(&f, buf, n, "bad.gguf");
    if (s == ML_OK) {
        ml_gguf_file_free(&f);
        print_error("parsed although %s\n", needle ? needle : "it is malformed");
        return 0;
    }
    if (needle && !strstr(ml_last_error(), needle)) {
        print_error("message '%s' lacks '%s'\n", ml_last_error(), needle);
        return 0;
    }
    return 1;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_bad_files(void **state) {
    (void)state;
    /* A minimal file: one u32 key "k.k" (3 bytes) and one F32 tensor "w" {32}. */
    char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "small.gguf"));
    ml_gguf_writer *w;
    static float v[32];
    int64_t ne = 32;
    assert_int_equal(ml_gguf_writer_create(&w), ML_OK);
    assert_int_equal(ml_gguf_add_u32(w, "k.k", 5), ML_OK);
    assert_int_equal(ml_gguf_add_tensor(w, "w", ML_GGML_F32, 1, &ne, v, NULL), ML_OK);
    assert_int_equal(ml_gguf_writer_write(w, path), ML_OK);
    ml_gguf_writer_free(w);
    char *raw;
    size_t size;
    assert_int_equal(ml_read_file(path, &raw, &size), ML_OK);
    const uint8_t *good = (const uint8_t *)raw;
    /* offsets: header 24 | key len 24, "k.k" 32, type 35, value 39 | tensor: name len 43, "w" 51,
       n_dims 52, ne[0] 56, type 64, offset 68 | end 76 -> data at 96, 128 bytes -> 224 */
    assert_int_equal(size, 224);
    ml_gguf_file f;
    assert_int_equal(ml_gguf_parse(&f, good, size, "small"), ML_OK);
    assert_int_equal(f.data_offset, 96);
    ml_gguf_file_free(&f);

    /* every truncation fails cleanly */
    for (size_t n = 0; n < size; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size, so ASan catches any overread */
        memcpy(cut, good, n);
        assert_true(expect_parse_fail(cut, n, NULL));
        free(cut);
    }

    uint8_t b[224];
#define RESET() memcpy(b, good, size)
    RESET(); b[0] = 'X';
    assert_true(expect_parse_fail(b, size, "bad magic"));
    RESET(); put32(b + 4, 4);
    assert_true(expect_parse_fail(b, size, "version 4"));
    RESET(); put64(b + 8, 0xFFFFFFFFFFFFFFFFull);
    assert_true(expect_parse_fail(b, size, "tensor count"));
    RESET(); put64(b + 16, 1ull << 40);
    assert_true(expect_parse_fail(b, size, "key/value count"));
    RESET(); put64(b + 24, 1ull << 62); /* key length beyond the file */
    assert_true(expect_parse_fail(b, size, "truncated"));
    RESET(); put32(b + 35, 13); /* unknown value type */
    assert_true(expect_parse_fail(b, size, "unknown value type 13"));
    RESET(); put32(b + 35, ML_GGUF_ARRAY); /* array of element type 5 with a count read from the tensor info */
    assert_true(expect_parse_fail(b, size, NULL));
    RESET(); put32(b + 52, 5);
    assert_true(expect_parse_fail(b, size, "5 dimensions"));
    RESET(); put64(b + 56, 0);
    assert_true(expect_parse_fail(b, size, "zero or overflows"));
    RESET(); put64(b + 56, 1ull << 40); /* data far beyond the file */
    assert_true(expect_parse_fail(b, size, "needs"));
    RESET(); put32(b + 64, 99);
    assert_true(expect_parse_fail(b, size, "ggml type 99"));
    RESET(); put32(b + 64, ML_GGML_Q8_0); /* 32 elements are one Q8_0 block: parses */
    assert_int_equal(ml_gguf_parse(&f, b, size, "q8"), ML_OK);
    ml_gguf_file_free(&f);
    RESET(); put64(b + 56, 33); put32(b + 64, ML_GGML_Q8_0);
    assert_true(expect_parse_fail(b, size, "not a multiple"));
    RESET(); put64(b + 68, 32);
    assert_true(expect_parse_fail(b, size, "offset 32, expected 0"));
    RESET(); put64(b + 68, 1ull << 50);
    assert_true(expect_parse_fail(b, size, "expected 0"));
    RESET(); put64(b + 56, 33); /* 132 bytes: one more float than the file holds */
    assert_true(expect_parse_fail(b, size, "the file has"));
    RESET(); memcpy(b + 32, "\0.k", 3);
    assert_true(expect_parse_fail(b, size, "NUL"));
    RESET(); put64(b + 43, 0);
    assert_true(expect_parse_fail(b, size, NULL));
#undef RESET
    free(raw);
}

/* ------------------------------------------------------------------------------------------ */

static void load_model(ml_model *m, const char *preset, uint64_t seed) {
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/configs/%s.json", ML_SOURCE_DIR, preset);
    ml_config c;
    assert_int_equal(ml_config_load(&c, cfgpath), ML_OK);
    assert_int_equal(ml_model_create(m, &c), ML_OK);
    ml_model_init_weights(m, seed);
}

static void test_export_v1(void **state) {
    (void)state;
    ml_model m;
    load_model(&m, "tiny-v1", 7); /* 2 blocks applied twice, tied, H 4, KV 2, hd 16 */
    char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "v1.gguf"));
    ml_gguf_export_opts o = {.type = ML_GGML_Q8_0};
    assert_int_equal(ml_gguf_export(&m, path, &o), ML_OK);
    ml_gguf_file f;
    assert_int_equal(ml_gguf_load(&f, path), ML_OK);
    uint32_t u;
    float fl;
    const char *s;
    uint64_t n;
    assert_int_equal(ml_gguf_get_str(&f, "general.architecture", &s, &n), ML_OK);
    assert_true(n == 5 && !memcmp(s, "llama", 5));
    struct { const char *key; uint32_t v; } u32s[] = {
        {"llama.block_count", 4}, {"llama.embedding_length", 64}, {"llama.feed_forward_length", 128},
        {"llama.attention.head_count", 4}, {"llama.attention.head_count_kv", 2}, {"llama.rope.dimension_count", 16},
        {"llama.context_length", 512}, {"llama.vocab_size", 259}, {"general.file_type", 7},
        {"general.quantization_version", 2}, {"tokenizer.ggml.bos_token_id", 256}, {"tokenizer.ggml.eos_token_id", 257},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        assert_int_equal(ml_gguf_get_u32(&f, u32s[i].key, &u), ML_OK);
        assert_int_equal(u, u32s[i].v);
    }
    assert_int_equal(ml_gguf_get_f32(&f, "llama.attention.layer_norm_rms_epsilon", &fl), ML_OK);
    assert_true(fl == 1e-5f);
    assert_int_equal(ml_gguf_get_f32(&f, "llama.rope.freq_base", &fl), ML_OK);
    assert_true(fl == 10000.0f);
    const ml_gguf_kv *tok = ml_gguf_find_kv(&f, "tokenizer.ggml.tokens");
    assert_true(tok && tok->arr_n == 259);
    assert_int_equal(ml_gguf_arr_str(tok, 10, &s, &n), ML_OK);
    assert_true(n == 6 && !memcmp(s, "<0x0A>", 6));
    assert_int_equal(ml_gguf_arr_str(tok, 256, &s, &n), ML_OK);
    assert_true(n == 3 && !memcmp(s, "<s>", 3));
    const ml_gguf_kv *types = ml_gguf_find_kv(&f, "tokenizer.ggml.token_type");
    assert_true(types && types->arr_type == ML_GGUF_I32 && types->arr_n == 259);
    int32_t ty;
    memcpy(&ty, types->value + 4 * 65, 4);
    assert_int_equal(ty, 6); /* BYTE */
    memcpy(&ty, types->value + 4 * 257, 4);
    assert_int_equal(ty, 3); /* CONTROL */

    /* 1 embedding + 4 blocks x 9 + final norm; tied: no output.weight */
    assert_int_equal(f.n_tensors, 38);
    assert_null(ml_gguf_find_tensor(&f, "output.weight"));
    const ml_gguf_tensor *emb = ml_gguf_find_tensor(&f, "token_embd.weight");
    assert_true(emb->ne[0] == 64 && emb->ne[1] == 259 && emb->type == ML_GGML_Q8_0);
    const ml_gguf_tensor *norm = ml_gguf_find_tensor(&f, "blk.3.attn_norm.weight");
    assert_true(norm->type == ML_GGML_F32 && norm->n_dims == 1 && norm->ne[0] == 64);
    const ml_gguf_tensor *down = ml_gguf_find_tensor(&f, "blk.0.ffn_down.weight");
    assert_true(down->ne[0] == 128 && down->ne[1] == 64);

    /* blk.2 and blk.3 are block 1 twice; Q and K rows permuted half-split -> adjacent pairs */
    const int D = 16, C = 64;
    float *q = malloc(sizeof(float) * 64 * 64), *ref = malloc(sizeof(float) * 64 * 64);
    uint8_t *qb = malloc(64 * 2 * 34);
    for (int a = 0; a < 4; a++) {
        const int l = a / 2;
        const char *which[2] = {"attn_q", "attn_k"};
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", a, which[k]);
            const ml_gguf_tensor *t = ml_gguf_find_tensor(&f, name);
            const int heads = k ? 2 : 4;
            const float *src = k ? m.w.layer[l].wk : m.w.layer[l].wq;
            assert_true(t && t->ne[0] == C && t->ne[1] == heads * D && t->type == ML_GGML_Q8_0);
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < D / 2; i++)
                    for (int j = 0; j < 2; j++)
                        memcpy(ref + (size_t)(h * D + 2 * i + j) * C, src + (size_t)(h * D + j * D / 2 + i) * C,
                               sizeof(float) * C);
            for (int r = 0; r < heads * D; r++) ml_quantize_row_q8_0(qb + (size_t)r * 2 * 34, ref + (size_t)r * C, C);
            assert_memory_equal(t->data, qb, t->nbytes);
        }
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", a);
        assert_memory_equal(ml_gguf_find_tensor(&f, name)->data, m.w.layer[l].mlp_norm, sizeof(float) * C);
    }
    free(q);
    free(ref);
    free(qb);
    ml_gguf_file_free(&f);

    /* F32 export: the embedding bytes are the weights */
    o.type = ML_GGML_F32;
    assert_int_equal(ml_gguf_export(&m, path, &o), ML_OK);
    assert_int_equal(ml_gguf_load(&f, path), ML_OK);
    emb = ml_gguf_find_tensor(&f, "token_embd.weight");
    assert_memory_equal(emb->data, m.w.embed, sizeof(float) * 64 * 259);
    assert_int_equal(ml_gguf_get_u32(&f, "general.file_type", &u), ML_OK);
    assert_int_equal(u, 0);
    assert_null(ml_gguf_find_kv(&f, "general.quantization_version"));
    ml_gguf_file_free(&f);
    ml_model_free(&m);
}

static void test_refusals(void **state) {
    (void)state;
    const char *presets[2] = {"tiny-r1", "tiny-pro"};
    const char *why[2] = {"QK-norm", "sliding-window"};
    for (int i = 0; i < 2; i++) {
        ml_model m;
        load_model(&m, presets[i], 1);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, presets[i]);
        ml_gguf_export_opts o = {.type = ML_GGML_F16};
        assert_int_equal(ml_gguf_export(&m, path, &o), ML_ERR_UNSUPPORTED);
        assert_non_null(strstr(ml_last_error(), why[i]));
        assert_false(ml_test_file_exists(path));
        ml_model_free(&m);
    }
    /* a non-byte vocabulary needs --tokenizer */
    ml_model m;
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/configs/tiny-v1.json", ML_SOURCE_DIR);
    ml_config c;
    assert_int_equal(ml_config_load(&c, cfgpath), ML_OK);
    c.vocab_size = 300;
    assert_int_equal(ml_model_create(&m, &c), ML_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "v300.gguf"));
    ml_gguf_export_opts o = {.type = ML_GGML_F32};
    assert_int_equal(ml_gguf_export(&m, path, &o), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "--tokenizer"));
    assert_false(ml_test_file_exists(path));
    ml_model_free(&m);
}

static void test_spm_vocab(void **state) {
    (void)state;
    char spm[4096];
    snprintf(spm, sizeof spm, "%s/tokenizers/llama2-spm-32000.model", ML_SHARED_DIR);
    ML_NEED_SHARED(spm);
    ml_gguf_writer *w;
    assert_int_equal(ml_gguf_writer_create(&w), ML_OK);
    assert_int_equal(ml_gguf_add_tokenizer_spm(w, spm, 32003), ML_OK); /* 3 padding ids */
    char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "spm.gguf"));
    assert_int_equal(ml_gguf_writer_write(w, path), ML_OK);
    ml_gguf_writer_free(w);
    ml_gguf_file f;
    assert_int_equal(ml_gguf_load(&f, path), ML_OK);
    const ml_gguf_kv *tok = ml_gguf_find_kv(&f, "tokenizer.ggml.tokens");
    assert_int_equal(tok->arr_n, 32003);
    const char *s;
    uint64_t n;
    struct { int id; const char *piece; } want[] = {{0, "<unk>"}, {1, "<s>"}, {2, "</s>"}, {3, "<0x00>"},
                                                    {13, "<0x0A>"}, {32002, "[PAD32002]"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(ml_gguf_arr_str(tok, (uint64_t)want[i].id, &s, &n), ML_OK);
        assert_int_equal(n, strlen(want[i].piece));
        assert_memory_equal(s, want[i].piece, n);
    }
    assert_int_equal(ml_gguf_arr_str(tok, 15043, &s, &n), ML_OK); /* "▁Hello" */
    assert_true(n == 8 && !memcmp(s, "\xe2\x96\x81Hello", 8));
    const ml_gguf_kv *types = ml_gguf_find_kv(&f, "tokenizer.ggml.token_type");
    int32_t t[4];
    memcpy(t, types->value, 16);
    assert_true(t[0] == 2 && t[1] == 3 && t[2] == 3 && t[3] == 6);
    uint32_t u;
    assert_int_equal(ml_gguf_get_u32(&f, "tokenizer.ggml.bos_token_id", &u), ML_OK);
    assert_int_equal(u, 1);
    assert_null(ml_gguf_find_kv(&f, "tokenizer.ggml.padding_token_id")); /* pad_id -1 */
    ml_gguf_file_free(&f);
    /* fewer model ids than pieces is an error */
    assert_int_equal(ml_gguf_writer_create(&w), ML_OK);
    assert_int_equal(ml_gguf_add_tokenizer_spm(w, spm, 1000), ML_ERR_CONFIG);
    ml_gguf_writer_free(w);
}

int main(void) {
    dir = ml_test_tmpdir("test_gguf");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quant_blocks), cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_export_v1),    cmocka_unit_test(test_refusals),  cmocka_unit_test(test_spm_vocab),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
