/* Regression tests for what fuzzing and review found in the parsers of user files (docs/fuzzing.md):
 * HDF5 variable-length strings read out of a corrupt global heap, checksum blocks bypassed, zero sizes in
 * config.json, configs asking for terabytes, tokenizer.json ids of 2^30, manifests that do not describe
 * their shards. Each case failed (crash, hang, or a 10+ GB allocation) before its fix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hdf5.h>

#include "common/atomic_file.h"
#include "data/ingest.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/tokenizer_hf.h"
#include "formats/h5.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/model.h"
#include "tests/support/test_util.h"

static const char *dir;

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void expect_error(ml_status got, ml_status want, const char *needle) {
    printf("  [%s] %s\n", ml_status_name(got), ml_last_error());
    assert_int_equal(got, want);
    assert_non_null(strstr(ml_last_error(), needle));
    assert_null(strchr(ml_last_error(), '\n'));
}

/* An HDF5 file written by "another tool" (the raw API, no checksum block) with a variable-length string. */
static void write_vlen_file(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "note", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = "hello from a global heap";
    assert_true(H5Awrite(a, t, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    assert_true(H5Fclose(f) >= 0);
}

/* Offset of the size field of heap object `idx` (0 = free space) in the file's first global heap. */
static size_t heap_size_field(const char *buf, size_t n, unsigned idx) {
    const char *g = memmem(buf, n, "GCOL", 4);
    assert_non_null(g);
    size_t at = (size_t)(g - buf), p = 16;
    for (;;) {
        uint16_t i;
        uint64_t sz;
        memcpy(&i, buf + at + p, 2);
        memcpy(&sz, buf + at + p + 8, 8);
        if (i == idx) return at + p + 8;
        assert_int_not_equal(i, 0);
        p += 16 + ((sz + 7) & ~7ull);
    }
}

static void test_h5_vlen_heap_bounds(void **state) {
    (void)state;
    const char *good = ml_test_path(dir, "vlen.h5"), *bad = ml_test_path(dir, "vlen-bad.h5");
    write_vlen_file(good);
    ml_h5 *f;
    char *s = NULL;
    assert_int_equal(ml_h5_open_read(&f, good), ML_OK);
    assert_int_equal(ml_h5_verified(f), 0);
    assert_int_equal(ml_h5_get_attr_str(f, "/", "note", &s), ML_OK);
    assert_string_equal(s, "hello from a global heap");
    free(s);
    ml_h5_close(f);

    char *buf;
    size_t n;
    assert_int_equal(ml_read_file(good, &buf, &n), ML_OK);
    /* The object's size says 64 MiB inside a 4 KiB collection: HDF5 1.10 would memcpy 64 MiB out of it. */
    size_t off = heap_size_field(buf, n, 1);
    uint64_t save, huge = 64u << 20, zero = 0;
    memcpy(&save, buf + off, 8);
    memcpy(buf + off, &huge, 8);
    write_bytes(bad, buf, n);
    assert_int_equal(ml_h5_open_read(&f, bad), ML_OK);
    expect_error(ml_h5_get_attr_str(f, "/", "note", &s), ML_ERR_FORMAT, "global heap");
    assert_null(s);
    expect_error(ml_h5_get_attr_str(f, "/", "note", &s), ML_ERR_FORMAT, "global heap"); /* cached, same answer */
    ml_h5_close(f);
    /* A zero-sized free-space object: HDF5 1.10 loops forever loading the collection. */
    memcpy(buf + off, &save, 8);
    memcpy(buf + heap_size_field(buf, n, 0), &zero, 8);
    write_bytes(bad, buf, n);
    assert_int_equal(ml_h5_open_read(&f, bad), ML_OK);
    expect_error(ml_h5_get_attr_str(f, "/", "note", &s), ML_ERR_FORMAT, "global heap");
    ml_h5_close(f);
    free(buf);
}

/* Our files: strings are fixed-length (nothing in a global heap), long ones included; a file laid out like
 * ours whose checksum block was wiped is refused, not parsed unchecked. */
static void test_h5_fixed_strings_and_guard(void **state) {
    (void)state;
    const char *p = ml_test_path(dir, "ours.h5");
    size_t big = 100000;
    char *long_str = malloc(big + 1);
    for (size_t i = 0; i < big; i++) long_str[i] = (char)('a' + i % 26);
    long_str[big] = 0;
    ml_h5 *f;
    assert_int_equal(ml_h5_create(&f, p), ML_OK);
    assert_int_equal(ml_h5_set_attr_str(f, "/", "format", "mobilellm-checkpoint"), ML_OK);
    assert_int_equal(ml_h5_set_attr_str(f, "/", "long", long_str), ML_OK);
    assert_int_equal(ml_h5_set_attr_str(f, "/", "empty", ""), ML_OK);
    assert_int_equal(ml_h5_close(f), ML_OK);
    char *s;
    assert_int_equal(ml_h5_open_read(&f, p), ML_OK);
    assert_int_equal(ml_h5_verified(f), 1);
    assert_int_equal(ml_h5_get_attr_str(f, "/", "long", &s), ML_OK);
    assert_string_equal(s, long_str);
    free(s);
    assert_int_equal(ml_h5_get_attr_str(f, "/", "empty", &s), ML_OK);
    assert_string_equal(s, "");
    free(s);
    ml_h5_close(f);
    free(long_str);
    hid_t fid = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(fid, "format", H5P_DEFAULT), t = H5Aget_type(a);
    assert_int_equal(H5Tis_variable_str(t), 0);
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(fid);

    char *buf;
    size_t n;
    assert_int_equal(ml_read_file(p, &buf, &n), ML_OK);
    const char *w = ml_test_path(dir, "wiped.h5");
    memset(buf, 0, 8); /* magic only: the block's own checksum still matches */
    write_bytes(w, buf, n);
    expect_error(ml_h5_open_read(&f, w), ML_ERR_FORMAT, "damaged");
    memset(buf, 0, 512); /* the whole block */
    write_bytes(w, buf, n);
    expect_error(ml_h5_open_read(&f, w), ML_ERR_FORMAT, "checksum block is damaged");
    free(buf);
}

/* The reported checkpoints (kept in the fuzz corpus): an older checkpoint (variable-length strings) with
 * one heap object's size changed, once with a forged checksum block, once with the block wiped. Before:
 * ASan memcpy-param-overlap in H5HG_read from `info`, `logits`, `eval`, `export`. */
static void test_checkpoint_heap_findings(void **state) {
    (void)state;
    static const char *const files[] = {"reg-vlen-heap-size-forged-crc.h5", "reg-vlen-heap-size-no-guard.h5"};
    for (int i = 0; i < 2; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tests/fuzz/corpus/checkpoint/%s", ML_SOURCE_DIR, files[i]);
        ml_config c;
        ml_model m;
        expect_error(ml_checkpoint_read_config(p, &c), ML_ERR_FORMAT, files[i]);
        assert_int_not_equal(ml_checkpoint_load(p, &m, NULL), ML_OK);
        char *args;
        assert_int_not_equal(ml_checkpoint_read_args(p, &args), ML_OK);
    }
    /* The intact older checkpoint still loads. */
    char p[4096];
    snprintf(p, sizeof p, "%s/tests/fuzz/corpus/checkpoint/v0-vlen-init.h5", ML_SOURCE_DIR);
    ml_model m;
    assert_int_equal(ml_checkpoint_load(p, &m, NULL), ML_OK);
    assert_int_equal(m.cfg.hidden_size, 8);
    ml_model_free(&m);
    /* An HDF5 file that is not ours is not a checkpoint. */
    expect_error(ml_checkpoint_load(ml_test_path(dir, "vlen.h5"), &m, NULL), ML_ERR_FORMAT, "not a mobilellm checkpoint");
}

static const char micro[] = "{\"model_type\": \"llama\", \"vocab_size\": 259, \"hidden_size\": 8, \"intermediate_size\": 16,"
                            " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
                            " \"head_dim\": 4 %s}";

static ml_status parse_with(ml_config *c, const char *extra) {
    char json[1024];
    snprintf(json, sizeof json, micro, extra);
    return ml_config_from_json(c, json, "test.json");
}

static void test_config_zero_and_huge(void **state) {
    (void)state;
    ml_config c;
    assert_int_equal(parse_with(&c, ""), ML_OK);
    /* Present with 0 or less: an error naming the field (before: 0 was silently replaced). */
    const char *cases[][2] = {
        {"\"head_dim\": 4", "\"head_dim\": 0"},
        {"\"num_key_value_heads\": 1", "\"num_key_value_heads\": 0"},
        {"\"num_key_value_heads\": 1", "\"num_key_value_heads\": -2"},
        {"\"intermediate_size\": 16", "\"intermediate_size\": 0"},
    };
    for (int i = 0; i < 4; i++) {
        char json[1024], *at;
        snprintf(json, sizeof json, micro, "");
        at = strstr(json, cases[i][0]);
        assert_non_null(at);
        char out[1024];
        snprintf(out, sizeof out, "%.*s%s%s", (int)(at - json), json, cases[i][1], at + strlen(cases[i][0]));
        char field[64];
        snprintf(field, sizeof field, "%.*s", (int)(strchr(cases[i][1] + 1, '"') - cases[i][1] - 1), cases[i][1] + 1);
        expect_error(ml_config_from_json(&c, out, "test.json"), ML_ERR_CONFIG, field);
    }
    /* Absent, they are derived as HF does. */
    assert_int_equal(ml_config_from_json(&c,
                                         "{\"model_type\": \"llama\", \"vocab_size\": 259, \"hidden_size\": 8,"
                                         " \"intermediate_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2}",
                                         "t"),
                     ML_OK);
    assert_int_equal(c.head_dim, 4);
    assert_int_equal(c.num_kv_heads, 2);
    /* Valid, but 32 TB of parameters: a one-line error before any allocation. */
    assert_int_equal(ml_config_from_json(&c,
                                         "{\"model_type\": \"llama\", \"vocab_size\": 16777216, \"hidden_size\": 1048576,"
                                         " \"intermediate_size\": 1048576, \"num_hidden_layers\": 256,"
                                         " \"num_attention_heads\": 4096, \"head_dim\": 256}",
                                         "huge.json"),
                     ML_OK);
    ml_model m;
    expect_error(ml_model_create(&m, &c), ML_ERR_NOMEM, "GiB");
    assert_null(m.param_arena.base);
}

static void test_tokenizer_json_huge_id(void **state) {
    (void)state;
    /* 256 byte tokens in the GPT-2 byte-level alphabet, then an added token with a given id. */
    char *json = malloc(65536);
    size_t k = (size_t)sprintf(json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 0;
        if (!cp) {
            int extra = 0;
            for (int x = 0; x < b; x++) extra += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174));
            cp = 256 + extra;
        }
        char u[8];
        if (cp < 0x80) {
            if (cp == '"' || cp == '\\') sprintf(u, "\\%c", cp);
            else sprintf(u, "%c", cp);
        } else
            sprintf(u, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
        k += (size_t)sprintf(json + k, "%s\"%s\": %d", b ? ", " : "", u, b);
    }
    const char *tail = "}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
                       "\"added_tokens\": [{\"id\": %u, \"content\": \"<|endoftext|>\"}]}";
    ml_tokenizer *t;
    char *full = malloc(70000);
    snprintf(full, 70000, "%s", json);
    snprintf(full + k, 70000 - k, tail, 256u);
    assert_int_equal(ml_tokenizer_hf_new(&t, "ok.json", full, strlen(full)), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 257);
    ml_tokenizer_free(t);
    snprintf(full + k, 70000 - k, tail, (1u << 30) - 1);
    expect_error(ml_tokenizer_hf_new(&t, "huge.json", full, strlen(full)), ML_ERR_FORMAT, "dense");
    assert_non_null(strstr(ml_last_error(), "huge.json"));
    free(full);
    free(json);
}

static void make_shard(const char *path, uint32_t vocab, const char *tok, int n_tokens) {
    ml_shard_writer *w;
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_set_vocab(w, vocab), ML_OK);
    assert_int_equal(ml_shard_writer_set_tokenizer(w, tok), ML_OK);
    uint32_t ids[16];
    for (int i = 0; i < n_tokens; i++) ids[i] = (uint32_t)i;
    assert_int_equal(ml_shard_writer_append_doc(w, ids, (size_t)n_tokens), ML_OK);
    assert_int_equal(ml_shard_writer_close(w), ML_OK);
}

static ml_status read_manifest(const char *text) {
    const char *p = ml_test_path(dir, "m.manifest.json");
    write_bytes(p, text, strlen(text));
    char **paths;
    size_t n;
    ml_status s = ml_manifest_read(p, &paths, &n);
    if (s == ML_OK) ml_manifest_paths_free(paths, n);
    return s;
}

static void test_manifest_checked_against_shards(void **state) {
    (void)state;
    make_shard(ml_test_path(dir, "a.shard"), 259, "bytes-v1", 5);
    make_shard(ml_test_path(dir, "b.shard"), 259, "bytes-v1", 3);
    static const char fmt[] =
        "{\"format\": \"mobilellm-shard-manifest\", \"version\": %d, \"tokens\": %d, \"documents\": 2,"
        " \"tokenizer\": \"bytes-v1\", \"vocab_size\": 259, \"domain\": null, \"shards\": ["
        "{\"path\": \"a.shard\", \"tokens\": 5, \"documents\": 1, \"tokenizer\": \"bytes-v1\", \"vocab_size\": 259},"
        "{\"path\": \"b.shard\", \"tokens\": %d, \"documents\": 1, \"tokenizer\": \"%s\", \"vocab_size\": %d}]}";
    char text[2048];
    snprintf(text, sizeof text, fmt, 1, 8, 3, "bytes-v1", 259);
    assert_int_equal(read_manifest(text), ML_OK);
    snprintf(text, sizeof text, fmt, 1, 9, 4, "bytes-v1", 259);
    expect_error(read_manifest(text), ML_ERR_FORMAT, "b.shard) lists 4 tokens");
    assert_non_null(strstr(ml_last_error(), "m.manifest.json"));
    snprintf(text, sizeof text, fmt, 1, 8, 3, "spm-123", 259);
    expect_error(read_manifest(text), ML_ERR_FORMAT, "tokenizer \"spm-123\"");
    snprintf(text, sizeof text, fmt, 1, 8, 3, "bytes-v1", 32000);
    expect_error(read_manifest(text), ML_ERR_FORMAT, "vocab_size");
    snprintf(text, sizeof text, fmt, 2, 8, 3, "bytes-v1", 259);
    expect_error(read_manifest(text), ML_ERR_UNSUPPORTED, "version");
    snprintf(text, sizeof text, fmt, 1, 7, 3, "bytes-v1", 259);
    expect_error(read_manifest(text), ML_ERR_FORMAT, "\"tokens\" is not the 8 tokens");
}

int main(void) {
    dir = ml_test_tmpdir("test_fuzz_findings");
    if (!dir) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h5_vlen_heap_bounds),
        cmocka_unit_test(test_h5_fixed_strings_and_guard),
        cmocka_unit_test(test_checkpoint_heap_findings),
        cmocka_unit_test(test_config_zero_and_huge),
        cmocka_unit_test(test_tokenizer_json_huge_id),
        cmocka_unit_test(test_manifest_checked_against_shards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
