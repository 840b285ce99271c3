/* safetensors reader/writer, sharded checkpoints, half-precision conversions, bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "formats/half.h"
#include "formats/safetensors.h"
#include "tests/support/test_util.h"

static const char *dir;

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* A safetensors file from a literal header and `data_len` bytes of data (0x11 each). */
static const char *make_st(const char *name, const char *json, size_t data_len) {
    const char *path = ml_test_path(dir, name);
    size_t n = strlen(json);
    unsigned char *buf = malloc(8 + n + data_len + 1);
    uint64_t n64 = n;
    memcpy(buf, &n64, 8);
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0x11, data_len);
    write_bytes(path, buf, 8 + n + data_len);
    free(buf);
    return path;
}

static void expect_open_fails(const char *path, ml_status want, const char *needle) {
    ml_safetensors *st = (ml_safetensors *)0x1;
    ml_status s = ml_safetensors_open(&st, path);
    printf("  %s -> [%s] %s\n", path, ml_status_name(s), ml_last_error());
    assert_int_not_equal(s, ML_OK);
    assert_null(st);
    if (want != ML_OK) assert_int_equal(s, want);
    if (needle && !strstr(ml_last_error(), needle)) fail_msg("message lacks '%s': %s", needle, ml_last_error());
}

/* ------------------------------------------------------------------ half conversions */

static void test_half_known_bits(void **state) {
    (void)state;
    /* float32 -> F16, round to nearest even */
    struct {
        uint32_t f;
        uint16_t h;
    } f16[] = {
        {0x3f800000, 0x3c00}, /* 1 */
        {0xc0000000, 0xc000}, /* -2 */
        {0x00000000, 0x0000}, {0x80000000, 0x8000}, /* +-0 */
        {0x477fe000, 0x7bff}, /* 65504, the largest finite */
        {0x477fefff, 0x7bff}, /* just below the tie with 65520 */
        {0x477ff000, 0x7c00}, /* 65520: tie rounds to even = inf */
        {0x7f7fffff, 0x7c00}, /* FLT_MAX overflows */
        {0x7f800000, 0x7c00}, {0xff800000, 0xfc00}, /* +-inf */
        {0x38800000, 0x0400}, /* 2^-14, smallest normal */
        {0x387fc000, 0x03ff}, /* largest subnormal 1023 * 2^-24 */
        {0x33800000, 0x0001}, /* 2^-24, smallest subnormal */
        {0x33000000, 0x0000}, /* 2^-25: tie -> even (0) */
        {0x33000001, 0x0001}, /* just above the tie */
        {0x33c00000, 0x0002}, /* 1.5 * 2^-24: tie -> even (2) */
        {0x34200000, 0x0002}, /* 2.5 * 2^-24: tie -> even (2) */
        {0x387fe000, 0x0400}, /* 1023.5 * 2^-24 rounds up into the smallest normal */
        {0x3f801000, 0x3c00}, /* 1 + 2^-11: tie -> even */
        {0x3f803000, 0x3c02}, /* 1 + 3 * 2^-11: tie -> even (up) */
        {0x3f801001, 0x3c01}, /* just above the tie */
        {0x3dcccccd, 0x2e66}, /* 0.1 */
        {0x00000001, 0x0000}, /* float32 subnormal -> 0 */
        {0x80000001, 0x8000},
    };
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++) {
        uint16_t got = ml_f32_to_f16(from_bits(f16[i].f));
        if (got != f16[i].h) fail_msg("f32 %08x -> f16 %04x, expected %04x", f16[i].f, got, f16[i].h);
    }
    uint16_t hn = ml_f32_to_f16(from_bits(0x7fc00000));
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff));
    hn = ml_f32_to_f16(from_bits(0x7f800001)); /* a NaN whose payload sits in the low bits stays NaN */
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff));

    /* F16 -> float32, exact */
    assert_int_equal(bits_of(ml_f16_to_f32(0x0001)), 0x33800000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x03ff)), 0x387fc000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x0400)), 0x38800000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x8001)), 0xb3800000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x7bff)), 0x477fe000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x7c00)), 0x7f800000);
    assert_int_equal(bits_of(ml_f16_to_f32(0xfc00)), 0xff800000);
    assert_int_equal(bits_of(ml_f16_to_f32(0x8000)), 0x80000000);
    assert_true(ml_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(isnan(ml_f16_to_f32(0x7e00)) && isnan(ml_f16_to_f32(0x7c01)) && isnan(ml_f16_to_f32(0xfe00)));
    /* Every non-NaN F16 survives F16 -> f32 -> F16; NaNs stay NaN. */
    for (uint32_t h = 0; h < 65536; h++) {
        float x = ml_f16_to_f32((uint16_t)h);
        uint16_t back = ml_f32_to_f16(x);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(x));
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        } else if (back != h)
            fail_msg("f16 %04x -> %08x -> %04x", h, bits_of(x), back);
    }

    /* float32 -> BF16 */
    struct {
        uint32_t f;
        uint16_t b;
    } bf[] = {
        {0x3f800000, 0x3f80}, {0xbf800000, 0xbf80}, {0x80000000, 0x8000},
        {0x3f808000, 0x3f80}, /* 1 + 2^-8: tie -> even */
        {0x3f818000, 0x3f82}, /* 1 + 3 * 2^-8: tie -> even (up) */
        {0x3f808001, 0x3f81}, /* just above the tie */
        {0x3f807fff, 0x3f80}, /* just below */
        {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7f7fff, 0x7f7f},
        {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x00010000, 0x0001}, /* subnormals are kept */
        {0x00018000, 0x0002}, /* tie -> even */
        {0x3dcccccd, 0x3dcd}, /* 0.1 */
    };
    for (size_t i = 0; i < sizeof bf / sizeof bf[0]; i++) {
        uint16_t got = ml_f32_to_bf16(from_bits(bf[i].f));
        if (got != bf[i].b) fail_msg("f32 %08x -> bf16 %04x, expected %04x", bf[i].f, got, bf[i].b);
    }
    uint16_t bn = ml_f32_to_bf16(from_bits(0x7f800001)); /* rounding must not turn this NaN into inf */
    assert_true((bn & 0x7f80) == 0x7f80 && (bn & 0x7f));
    bn = ml_f32_to_bf16(from_bits(0xffffffff));
    assert_true((bn & 0x7f80) == 0x7f80 && (bn & 0x7f) && (bn & 0x8000));
    for (uint32_t b = 0; b < 65536; b++) {
        float x = ml_bf16_to_f32((uint16_t)b);
        assert_int_equal(bits_of(x), b << 16);
        if (!((b & 0x7f80) == 0x7f80 && (b & 0x7f))) assert_int_equal(ml_f32_to_bf16(x), b);
    }
    /* Array forms agree with the scalar ones. */
    float xs[5] = {1.0f, -0.1f, 65519.0f, 1e-8f, 3.14159f}, ys[5];
    uint16_t hs[5];
    ml_f32_to_f16_n(hs, xs, 5);
    ml_f16_to_f32_n(ys, hs, 5);
    for (int i = 0; i < 5; i++) assert_true(ys[i] == ml_f16_to_f32(ml_f32_to_f16(xs[i])));
    ml_f32_to_bf16_n(hs, xs, 5);
    ml_bf16_to_f32_n(ys, hs, 5);
    for (int i = 0; i < 5; i++) assert_true(ys[i] == ml_bf16_to_f32(ml_f32_to_bf16(xs[i])));
}

/* ------------------------------------------------------------------ round trips */

static void test_roundtrip_dtypes(void **state) {
    (void)state;
    /* Values exactly representable in BF16/F16 where the Python check compares them; edge values too. */
    float a[15], b[7], c[24], scalar = -2.5f;
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.375f - 1.75f; /* exact: no FMA-contraction doubts */
    const float bvals[7] = {1.0f, -0.5f, 65504.0f, 5.9604645e-08f /* 2^-24 */, 1e6f /* -> inf */, -0.0f, 0.33325195f};
    memcpy(b, bvals, sizeof b);
    for (int i = 0; i < 24; i++) c[i] = (float)(i - 12) * 0.25f;
    c[23] = 3.0e38f;
    int64_t sa[2] = {3, 5}, sb[1] = {7}, sc[3] = {2, 3, 4}, sz[2] = {0, 4};

    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "layer.a", ML_ST_F32, 2, sa, a), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "layer.b", ML_ST_F16, 1, sb, b), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "c \"quoted\"\n", ML_ST_BF16, 3, sc, c), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "scalar", ML_ST_F32, 0, NULL, &scalar), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "empty", ML_ST_BF16, 2, sz, NULL), ML_OK);
    assert_int_equal(ml_safetensors_writer_set_metadata(w, "producer", "mobilellm.c"), ML_OK);
    /* Writer argument errors */
    assert_int_equal(ml_safetensors_writer_add_f32(w, "layer.a", ML_ST_F32, 2, sa, a), ML_ERR_ARG);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "x", ML_ST_I32, 2, sa, a), ML_ERR_ARG);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "__metadata__", ML_ST_F32, 2, sa, a), ML_ERR_ARG);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "r", ML_ST_I64, 2, sa, a, 60), ML_ERR_ARG);
    int64_t neg[1] = {-1};
    assert_int_equal(ml_safetensors_writer_add_f32(w, "neg", ML_ST_F32, 1, neg, a), ML_ERR_ARG);

    const char *path = ml_test_path(dir, "rt.safetensors");
    assert_int_equal(ml_safetensors_writer_write(w, path), ML_OK);
    /* A failed write leaves nothing behind. */
    const char *bad = ml_test_path(dir, "no/such/dir/x.safetensors");
    assert_int_equal(ml_safetensors_writer_write(w, bad), ML_ERR_IO);
    assert_false(ml_test_file_exists(bad));
    ml_safetensors_writer_free(w);

    ml_safetensors *st;
    assert_int_equal(ml_safetensors_open(&st, path), ML_OK);
    assert_int_equal(ml_safetensors_count(st), 5);
    assert_string_equal(ml_safetensors_metadata(st, "format"), "pt");
    assert_string_equal(ml_safetensors_metadata(st, "producer"), "mobilellm.c");
    assert_int_equal(ml_safetensors_metadata_count(st), 2);
    /* Order: descending dtype (F32 > BF16 > F16), then name; every tensor naturally aligned. */
    const char *order[5] = {"layer.a", "scalar", "c \"quoted\"\n", "empty", "layer.b"};
    for (size_t i = 0; i < 5; i++) {
        const ml_st_tensor *t = ml_safetensors_tensor(st, i);
        assert_string_equal(t->name, order[i]);
        assert_int_equal((8 + t->begin) % 8 % (ml_st_dtype_bits(t->dtype) / 8), 0);
    }
    char *file;
    size_t fsize;
    assert_int_equal(ml_read_file(path, &file, &fsize), ML_OK);
    uint64_t n;
    memcpy(&n, file, 8);
    assert_int_equal(n % 8, 0);
    assert_true(strncmp(file + 8, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"mobilellm.c\"},\"layer.a\":{", 68) == 0);
    free(file);

    const ml_st_tensor *t = ml_safetensors_find(st, "c \"quoted\"\n");
    assert_non_null(t);
    assert_int_equal(t->dtype, ML_ST_BF16);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[2], 4);
    assert_int_equal(t->numel, 24);
    assert_null(ml_safetensors_find(st, "nope"));
    t = ml_safetensors_find(st, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);

    float out[24];
    assert_int_equal(ml_safetensors_read_f32(st, "layer.a", out, 15), ML_OK);
    assert_memory_equal(out, a, sizeof a);
    assert_int_equal(ml_safetensors_read_f32(st, "layer.b", out, 7), ML_OK);
    for (int i = 0; i < 7; i++) assert_int_equal(bits_of(out[i]), bits_of(ml_f16_to_f32(ml_f32_to_f16(b[i]))));
    assert_true(isinf(out[4]) && signbit(out[5]) && out[3] == 5.9604645e-08f);
    assert_int_equal(ml_safetensors_read_f32(st, "c \"quoted\"\n", out, 24), ML_OK);
    for (int i = 0; i < 24; i++) assert_int_equal(bits_of(out[i]), bits_of(ml_bf16_to_f32(ml_f32_to_bf16(c[i]))));
    assert_int_equal(ml_safetensors_read_f32(st, "scalar", out, 1), ML_OK);
    assert_true(out[0] == -2.5f);
    assert_int_equal(ml_safetensors_read_f32(st, "empty", out, 0), ML_OK);
    /* Wrong element count or name */
    assert_int_equal(ml_safetensors_read_f32(st, "layer.a", out, 14), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), "layer.a"));
    assert_int_equal(ml_safetensors_read_f32(st, "nope", out, 1), ML_ERR_ARG);
    const void *raw;
    size_t bytes;
    assert_int_equal(ml_safetensors_raw(st, "layer.b", &raw, &bytes), ML_OK);
    assert_int_equal(bytes, 14);
    assert_int_equal(ml_safetensors_raw(st, "nope", &raw, &bytes), ML_ERR_ARG);
    ml_safetensors_close(st);

    /* An independent reader (json + numpy) agrees. */
    int rc = ml_test_run(
        "%s -c '\n"
        "import json, struct, sys, numpy as np\n"
        "buf = open(sys.argv[1], \"rb\").read()\n"
        "n = struct.unpack(\"<Q\", buf[:8])[0]\n"
        "assert n %% 8 == 0\n"
        "h = json.loads(buf[8:8+n].decode())\n"
        "assert h[\"__metadata__\"] == {\"format\": \"pt\", \"producer\": \"mobilellm.c\"}\n"
        "data = buf[8+n:]\n"
        "def arr(k):\n"
        "    e = h[k]; b, t = e[\"data_offsets\"]; raw = data[b:t]\n"
        "    if e[\"dtype\"] == \"F32\": x = np.frombuffer(raw, \"<f4\")\n"
        "    elif e[\"dtype\"] == \"F16\": x = np.frombuffer(raw, \"<f2\").astype(np.float32)\n"
        "    else: x = (np.frombuffer(raw, \"<u2\").astype(np.uint32) << 16).view(np.float32)\n"
        "    return x.reshape(e[\"shape\"])\n"
        "a = arr(\"layer.a\"); assert a.shape == (3, 5)\n"
        "assert np.array_equal(a.ravel(), np.arange(15) * 0.375 - 1.75)\n"
        "b = arr(\"layer.b\"); assert b[0] == 1 and b[1] == -0.5 and b[2] == 65504 and b[3] == 2.0**-24 and np.isinf(b[4])\n"
        "c = arr(\"c \\\"quoted\\\"\\n\"); assert c.shape == (2, 3, 4) and c[0, 0, 0] == -3 and c[1, 2, 2] == 2.5\n"
        "assert arr(\"scalar\").shape == () and arr(\"scalar\") == -2.5 and arr(\"empty\").shape == (0, 4)\n"
        "ends = sorted(tuple(v[\"data_offsets\"]) for k, v in h.items() if k != \"__metadata__\")\n"
        "assert ends[0][0] == 0 and all(x[1] == y[0] for x, y in zip(ends, ends[1:])) and ends[-1][1] == len(data)\n"
        "print(\"python reader ok\")\n"
        "' %s",
        ML_PYTHON, path);
    assert_int_equal(rc, 0);
}

/* Raw tensors of several dtypes (NaN payloads, arbitrary bytes) come back bit for bit, and re-exporting an
 * imported file through the raw API reproduces the file byte for byte. */
static void test_raw_roundtrip_bitexact(void **state) {
    (void)state;
    uint8_t bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (uint8_t)(i * 37 + 11);
    uint16_t bfbits[6] = {0x7fc1, 0xff81, 0x0001, 0x8000, 0x7f80, 0x3f80}; /* NaNs, subnormal, -0, inf */
    int64_t s_u8[2] = {16, 16}, s_i64[1] = {8}, s_bf[2] = {2, 3}, s_f16[1] = {6}, s_f4[1] = {10}, s_u16[1] = {3};
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "u8", ML_ST_U8, 2, s_u8, bytes, 256), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "i64", ML_ST_I64, 1, s_i64, bytes, 64), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "bf", ML_ST_BF16, 2, s_bf, bfbits, 12), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "f16", ML_ST_F16, 1, s_f16, bytes + 1, 12), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "f4", ML_ST_F4, 1, s_f4, bytes + 3, 5), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_raw(w, "u16", ML_ST_U16, 1, s_u16, bytes + 5, 6), ML_OK);
    int64_t s_odd[1] = {3};
    assert_int_equal(ml_safetensors_writer_add_raw(w, "f4odd", ML_ST_F4, 1, s_odd, bytes, 2), ML_ERR_ARG);
    const char *p1 = ml_test_path(dir, "raw1.safetensors"), *p2 = ml_test_path(dir, "raw2.safetensors");
    assert_int_equal(ml_safetensors_writer_write(w, p1), ML_OK);
    ml_safetensors_writer_free(w);

    ml_safetensors *st;
    assert_int_equal(ml_safetensors_open(&st, p1), ML_OK);
    const void *d;
    size_t n;
    assert_int_equal(ml_safetensors_raw(st, "u8", &d, &n), ML_OK);
    assert_int_equal(n, 256);
    assert_memory_equal(d, bytes, 256);
    assert_int_equal(ml_safetensors_raw(st, "bf", &d, &n), ML_OK);
    assert_int_equal(n, 12);
    assert_memory_equal(d, bfbits, 12);
    assert_int_equal(ml_safetensors_raw(st, "f4", &d, &n), ML_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(d, bytes + 3, 5);
    float f[8];
    assert_int_equal(ml_safetensors_read_f32(st, "i64", f, 8), ML_ERR_UNSUPPORTED);
    assert_int_equal(ml_safetensors_read_f32(st, "bf", f, 6), ML_OK);
    for (int i = 0; i < 6; i++) assert_int_equal(bits_of(f[i]), (uint32_t)bfbits[i] << 16); /* NaN payloads kept */

    /* Import -> export: same tensors, same metadata -> identical bytes. */
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    for (size_t i = 0; i < ml_safetensors_count(st); i++) {
        const ml_st_tensor *t = ml_safetensors_tensor(st, i);
        assert_int_equal(ml_safetensors_raw(st, t->name, &d, &n), ML_OK);
        assert_int_equal(ml_safetensors_writer_add_raw(w, t->name, t->dtype, t->ndim, t->shape, d, n), ML_OK);
    }
    for (size_t i = 0; i < ml_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        ml_safetensors_metadata_at(st, i, &k, &v);
        assert_int_equal(ml_safetensors_writer_set_metadata(w, k, v), ML_OK);
    }
    assert_int_equal(ml_safetensors_writer_write(w, p2), ML_OK);
    ml_safetensors_writer_free(w);
    ml_safetensors_close(st);
    char *b1, *b2;
    size_t n1, n2;
    assert_int_equal(ml_read_file(p1, &b1, &n1), ML_OK);
    assert_int_equal(ml_read_file(p2, &b2, &n2), ML_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);

    /* The in-memory opener gives the same view. */
    assert_int_equal(ml_safetensors_open_memory(&st, b1, n1, "mem"), ML_OK);
    assert_int_equal(ml_safetensors_count(st), 6);
    ml_safetensors_close(st);
    free(b1);
    free(b2);
}

/* ------------------------------------------------------------------ sharded */

static int64_t sh1[1];
static void add_n(ml_safetensors_writer *w, const char *name, int64_t nfloats, const float *data) {
    sh1[0] = nfloats;
    assert_int_equal(ml_safetensors_writer_add_f32(w, name, ML_ST_F32, 1, sh1, data), ML_OK);
}

static const char *shard_of(const ml_st_dir *d, const char *name) {
    const ml_safetensors *sh = NULL;
    assert_non_null(ml_safetensors_dir_find(d, name, &sh));
    const char *p = ml_safetensors_path(sh);
    return strrchr(p, '/') + 1;
}

static void test_sharded_roundtrip(void **state) {
    (void)state;
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i * 1.5f - 7.0f;
    /* Sizes 40, 40, 40, 200, 40 bytes with a 100-byte limit: the transformers algorithm gives
     * shard 1 = {t0, t1}, shard 2 = {t3} (too big, on its own), shard 3 = {t2, t4}. */
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    add_n(w, "t0", 10, data);
    add_n(w, "t1", 10, data + 10);
    add_n(w, "t2", 10, data + 20);
    add_n(w, "t3", 50, data + 5);
    add_n(w, "t4", 10, data + 30);
    char cdir[4096]; /* ml_test_path's buffers rotate: keep our own copy */
    snprintf(cdir, sizeof cdir, "%s", ml_test_path(dir, "ckpt"));
    int ns = 0;
    assert_int_equal(ml_safetensors_writer_write_sharded(w, cdir, 100, &ns), ML_OK);
    assert_int_equal(ns, 3);
    assert_true(ml_test_file_exists(ml_test_path(cdir, "model-00001-of-00003.safetensors")));
    assert_true(ml_test_file_exists(ml_test_path(cdir, "model-00003-of-00003.safetensors")));
    assert_true(ml_test_file_exists(ml_test_path(cdir, "model.safetensors.index.json")));
    assert_false(ml_test_file_exists(ml_test_path(cdir, "model.safetensors")));

    ml_st_dir *d;
    assert_int_equal(ml_safetensors_dir_open(&d, cdir), ML_OK);
    assert_int_equal(ml_safetensors_dir_count(d), 5);
    assert_int_equal(ml_safetensors_dir_shard_count(d), 3);
    assert_string_equal(shard_of(d, "t0"), "model-00001-of-00003.safetensors");
    assert_string_equal(shard_of(d, "t1"), "model-00001-of-00003.safetensors");
    assert_string_equal(shard_of(d, "t3"), "model-00002-of-00003.safetensors");
    assert_string_equal(shard_of(d, "t2"), "model-00003-of-00003.safetensors");
    assert_string_equal(shard_of(d, "t4"), "model-00003-of-00003.safetensors");
    assert_string_equal(ml_safetensors_dir_tensor(d, 0)->name, "t0");
    assert_string_equal(ml_safetensors_dir_tensor(d, 4)->name, "t4");
    float out[50];
    assert_int_equal(ml_safetensors_dir_read_f32(d, "t3", out, 50), ML_OK);
    assert_memory_equal(out, data + 5, 50 * sizeof(float));
    assert_int_equal(ml_safetensors_dir_read_f32(d, "t4", out, 10), ML_OK);
    assert_memory_equal(out, data + 30, 10 * sizeof(float));
    assert_int_equal(ml_safetensors_dir_read_f32(d, "zz", out, 10), ML_ERR_ARG);
    const void *raw;
    size_t bytes;
    assert_int_equal(ml_safetensors_dir_raw(d, "t2", &raw, &bytes), ML_OK);
    assert_int_equal(bytes, 40);
    ml_safetensors_dir_close(d);

    /* The index is what transformers writes. */
    int rc = ml_test_run("%s -c '\n"
                         "import json, sys\n"
                         "t = open(sys.argv[1]).read(); j = json.loads(t)\n"
                         "assert t == json.dumps(j, indent=2, sort_keys=True) + \"\\n\", t\n"
                         "assert j[\"metadata\"][\"total_size\"] == 360\n"
                         "assert j[\"weight_map\"][\"t3\"] == \"model-00002-of-00003.safetensors\"\n"
                         "assert len(j[\"weight_map\"]) == 5\n"
                         "' %s/model.safetensors.index.json",
                         ML_PYTHON, cdir);
    assert_int_equal(rc, 0);

    /* Everything fits in one shard -> model.safetensors, and the old shards and index go away. */
    assert_int_equal(ml_safetensors_writer_write_sharded(w, cdir, 1u << 20, &ns), ML_OK);
    assert_int_equal(ns, 1);
    assert_true(ml_test_file_exists(ml_test_path(cdir, "model.safetensors")));
    assert_false(ml_test_file_exists(ml_test_path(cdir, "model.safetensors.index.json")));
    assert_false(ml_test_file_exists(ml_test_path(cdir, "model-00001-of-00003.safetensors")));
    assert_int_equal(ml_safetensors_dir_open(&d, cdir), ML_OK);
    assert_int_equal(ml_safetensors_dir_count(d), 5);
    assert_int_equal(ml_safetensors_dir_read_f32(d, "t1", out, 10), ML_OK);
    assert_memory_equal(out, data + 10, 10 * sizeof(float));
    ml_safetensors_dir_close(d);
    /* And back to shards: the single file goes away. */
    assert_int_equal(ml_safetensors_writer_write_sharded(w, cdir, 240, &ns), ML_OK);
    assert_int_equal(ns, 2);
    assert_false(ml_test_file_exists(ml_test_path(cdir, "model.safetensors")));
    if (ml_safetensors_dir_open(&d, cdir) != ML_OK) fail_msg("%s", ml_last_error());
    assert_int_equal(ml_safetensors_dir_count(d), 5);
    ml_safetensors_dir_close(d);
    assert_int_equal(ml_safetensors_writer_write_sharded(w, cdir, 0, &ns), ML_ERR_ARG);
    ml_safetensors_writer_free(w);

    /* Broken indexes. */
    char bdir[4096];
    snprintf(bdir, sizeof bdir, "%s", ml_test_path(dir, "badidx"));
    mkdir(bdir, 0755);
    assert_int_not_equal(ml_safetensors_dir_open(&d, bdir), ML_OK); /* nothing there */
    assert_null(d);
    char idx[4096], dst[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", bdir);
    snprintf(dst, sizeof dst, "%s/a.safetensors", bdir);
    assert_int_equal(ml_test_run("cp '%s/model-00001-of-00002.safetensors' '%s'", cdir, dst), 0);
    struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"weight_map\": {\"t0\": \"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\": {\"t0\": \"a.safetensors\", \"zz\": \"a.safetensors\"}}", "zz"},
        {"{\"weight_map\": {\"t0\": \"../a.safetensors\"}}", "../a.safetensors"},
        {"{\"weight_map\": {\"t0\": 3}}", "t0"},
        {"{\"weight_map\": {}}", "weight_map"},
        {"{\"metadata\": {}}", "weight_map"},
        {"{\"weight_map\": {\"t0\": \"a.safetensors\"", NULL},
        {"[1, 2]", NULL},
        {"{\"weight_map\": {\"t0\": \"a.safetensors\", \"t0\": \"a.safetensors\"}}", "twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_bytes(idx, cases[i].json, strlen(cases[i].json));
        d = (ml_st_dir *)0x1;
        ml_status s = ml_safetensors_dir_open(&d, bdir);
        printf("  index %s -> [%s] %s\n", cases[i].json, ml_status_name(s), ml_last_error());
        assert_int_not_equal(s, ML_OK);
        assert_null(d);
        if (cases[i].needle) assert_non_null(strstr(ml_last_error(), cases[i].needle));
    }
    /* A valid one over the same shard works. */
    const char *ok = "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {\"t0\": \"a.safetensors\"}}";
    write_bytes(idx, ok, strlen(ok));
    assert_int_equal(ml_safetensors_dir_open(&d, bdir), ML_OK);
    assert_int_equal(ml_safetensors_dir_count(d), 1); /* only what the weight_map lists */
    ml_safetensors_dir_close(d);
}

/* ------------------------------------------------------------------ bad input */

static void test_bad_inputs(void **state) {
    (void)state;
    /* Truncations of a valid file, at every interesting length. */
    float v[16] = {0};
    int64_t s16[1] = {16};
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    assert_int_equal(ml_safetensors_writer_add_f32(w, "w", ML_ST_F32, 1, s16, v), ML_OK);
    const char *good = ml_test_path(dir, "good.safetensors");
    assert_int_equal(ml_safetensors_writer_write(w, good), ML_OK);
    ml_safetensors_writer_free(w);
    char *buf;
    size_t size;
    assert_int_equal(ml_read_file(good, &buf, &size), ML_OK);
    uint64_t hn;
    memcpy(&hn, buf, 8);
    size_t cuts[] = {0, 1, 7, 8, 9, 8 + hn / 2, 8 + hn - 1, 8 + hn, 8 + hn + 1, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *p = ml_test_path(dir, "trunc.safetensors");
        write_bytes(p, buf, cuts[i]);
        expect_open_fails(p, ML_ERR_FORMAT, NULL);
    }
    /* Extra bytes at the end are not covered by any tensor. */
    {
        const char *p = ml_test_path(dir, "long.safetensors");
        char *b2 = malloc(size + 4);
        memcpy(b2, buf, size);
        memset(b2 + size, 0, 4);
        write_bytes(p, b2, size + 4);
        free(b2);
        expect_open_fails(p, ML_ERR_FORMAT, NULL);
    }
    free(buf);

    /* Header length larger than the file; and absurdly large. */
    {
        unsigned char b[40] = {0};
        uint64_t n = 1000;
        memcpy(b, &n, 8);
        memcpy(b + 8, "{}", 2);
        const char *p = ml_test_path(dir, "hlen.safetensors");
        write_bytes(p, b, sizeof b);
        expect_open_fails(p, ML_ERR_FORMAT, "larger than");
        n = UINT64_MAX;
        memcpy(b, &n, 8);
        write_bytes(p, b, sizeof b);
        expect_open_fails(p, ML_ERR_FORMAT, "limit");
        n = 0;
        memcpy(b, &n, 8);
        write_bytes(p, b, 8);
        expect_open_fails(p, ML_ERR_FORMAT, NULL);
    }
    struct {
        const char *json;
        size_t data;
        ml_status want;
        const char *needle;
    } cases[] = {
        {"[{\"a\":1}]", 0, ML_ERR_FORMAT, "'{'"},
        {" {}", 0, ML_ERR_FORMAT, "'{'"},
        {"{\"a\":", 0, ML_ERR_FORMAT, "JSON"},
        {"{} x", 0, ML_ERR_FORMAT, "after"},
        {"{}\xff", 0, ML_ERR_FORMAT, "UTF-8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
         24, ML_ERR_FORMAT, "hole"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, ML_ERR_FORMAT, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, ML_ERR_FORMAT, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, ML_ERR_FORMAT, "beyond"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, ML_ERR_FORMAT, "cover"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, ML_ERR_FORMAT, "hole"},
        {"{\"weird\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ML_ERR_UNSUPPORTED, "weird"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "needs 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, ML_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 8, ML_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, ML_ERR_FORMAT, "end before"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8, ML_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT, "dtype"},
        {"{\"a\":[1,2]}", 0, ML_ERR_FORMAT, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, ML_ERR_FORMAT,
         "duplicate"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, ML_ERR_FORMAT, "duplicate"},
        {"{\"__metadata__\":{\"format\":1}}", 0, ML_ERR_FORMAT, "format"},
        {"{\"__metadata__\":[\"pt\"]}", 0, ML_ERR_FORMAT, "__metadata__"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, ML_ERR_FORMAT, "duplicate"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
         ML_ERR_FORMAT, "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         ML_ERR_UNSUPPORTED, "rank"},
        {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, ML_ERR_FORMAT, "whole"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8, ML_ERR_FORMAT, "data_offsets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = make_st("case.safetensors", cases[i].json, cases[i].data);
        expect_open_fails(p, cases[i].want, cases[i].needle);
    }
    /* Valid oddities are accepted: padding, empty header, zero-size tensors sharing an offset, unknown fields. */
    const char *okc[] = {
        "{}      ",
        "{\"__metadata__\":{\"format\":\"pt\"}}\n\t ",
        "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"y\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[0,0]},"
        "\"x\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"extra\":true}}",
    };
    for (size_t i = 0; i < 3; i++) {
        const char *p = make_st("okcase.safetensors", okc[i], i == 2 ? 1 : 0);
        ml_safetensors *st;
        if (ml_safetensors_open(&st, p) != ML_OK) fail_msg("%s: %s", okc[i], ml_last_error());
        ml_safetensors_close(st);
    }
    /* Not a file at all */
    ml_safetensors *st;
    assert_int_equal(ml_safetensors_open(&st, ml_test_path(dir, "does-not-exist")), ML_ERR_IO);
    assert_int_equal(ml_safetensors_open(&st, dir), ML_ERR_IO);
}

/* ------------------------------------------------------------------ the real teacher */

static void test_teacher_checkpoint(void **state) {
    (void)state;
    char tdir[4096];
    snprintf(tdir, sizeof tdir, "%s/teachers/mobilellm-28m-llama2tok", ML_SHARED_DIR);
    ML_NEED_SHARED(tdir);
    ml_st_dir *d;
    if (ml_safetensors_dir_open(&d, tdir) != ML_OK) fail_msg("%s", ml_last_error());
    assert_int_equal(ml_safetensors_dir_shard_count(d), 3);
    assert_int_equal(ml_safetensors_dir_count(d), 1 + 10 * 9 + 1); /* embed, 10 layers x 9, final norm */
    const ml_safetensors *sh;
    const ml_st_tensor *t = ml_safetensors_dir_find(d, "model.embed_tokens.weight", &sh);
    assert_non_null(t);
    assert_int_equal(t->dtype, ML_ST_BF16);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 32000);
    assert_int_equal(t->shape[1], 384);
    assert_string_equal(ml_safetensors_metadata(sh, "format"), "pt");
    uint64_t params = 0;
    for (size_t i = 0; i < ml_safetensors_dir_count(d); i++) params += ml_safetensors_dir_tensor(d, i)->numel;
    assert_int_equal(params, 28024704); /* the README's count */
    t = ml_safetensors_dir_find(d, "model.layers.3.self_attn.k_proj.weight", NULL);
    assert_int_equal(t->shape[0], 128);
    assert_int_equal(t->shape[1], 384);

    float *emb = malloc(32000 * 384 * sizeof(float));
    assert_int_equal(ml_safetensors_dir_read_f32(d, "model.embed_tokens.weight", emb, 32000 * 384), ML_OK);
    const void *raw;
    size_t bytes;
    assert_int_equal(ml_safetensors_dir_raw(d, "model.embed_tokens.weight", &raw, &bytes), ML_OK);
    assert_int_equal(bytes, 32000 * 384 * 2);
    double sumsq = 0;
    for (size_t i = 0; i < 32000 * 384; i++) {
        uint16_t h;
        memcpy(&h, (const char *)raw + 2 * i, 2);
        if (bits_of(emb[i]) != (uint32_t)h << 16) fail_msg("element %zu differs", i);
        sumsq += (double)emb[i] * emb[i];
    }
    assert_true(isfinite(sumsq) && sumsq > 0);
    free(emb);

    /* Re-exporting a shard through the raw API reproduces transformers' file byte for byte. */
    const ml_safetensors *s2 = ml_safetensors_dir_shard(d, 1);
    ml_safetensors_writer *w;
    assert_int_equal(ml_safetensors_writer_new(&w), ML_OK);
    for (size_t i = 0; i < ml_safetensors_count(s2); i++) {
        const ml_st_tensor *ti = ml_safetensors_tensor(s2, i);
        assert_int_equal(ml_safetensors_raw(s2, ti->name, &raw, &bytes), ML_OK);
        assert_int_equal(ml_safetensors_writer_add_raw(w, ti->name, ti->dtype, ti->ndim, ti->shape, raw, bytes), ML_OK);
    }
    const char *out = ml_test_path(dir, "shard2.safetensors");
    assert_int_equal(ml_safetensors_writer_write(w, out), ML_OK);
    ml_safetensors_writer_free(w);
    char *a, *b;
    size_t na, nb;
    assert_int_equal(ml_read_file(ml_safetensors_path(s2), &a, &na), ML_OK);
    assert_int_equal(ml_read_file(out, &b, &nb), ML_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
    ml_safetensors_dir_close(d);
}

int main(void) {
    dir = ml_test_tmpdir("test_safetensors");
    if (!dir) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_known_bits),
        cmocka_unit_test(test_roundtrip_dtypes),
        cmocka_unit_test(test_raw_roundtrip_bitexact),
        cmocka_unit_test(test_sharded_roundtrip),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_teacher_checkpoint),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
