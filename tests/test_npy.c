/* .npy writer/reader: round trips, numpy interop both ways, bad headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/atomic_file.h"
#include "formats/npy.h"
#include "tests/support/test_util.h"

static const char *dir;

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void test_roundtrip(void **state) {
    (void)state;
    float f[24];
    for (int i = 0; i < 24; i++) f[i] = (float)i * 0.5f - 3.0f;
    int32_t ints[6] = {-2147483647 - 1, -1, 0, 1, 32000, 2147483647};
    int64_t s3[3] = {2, 3, 4}, s1[1] = {6}, s0[2] = {0, 5};
    char p3[4096], p1[4096], ps[4096], pz[4096];
    snprintf(p3, sizeof p3, "%s", ml_test_path(dir, "f3.npy"));
    snprintf(p1, sizeof p1, "%s", ml_test_path(dir, "i1.npy"));
    snprintf(ps, sizeof ps, "%s", ml_test_path(dir, "scalar.npy"));
    snprintf(pz, sizeof pz, "%s", ml_test_path(dir, "empty.npy"));
    assert_int_equal(ml_npy_write_f32(p3, f, 3, s3), ML_OK);
    assert_int_equal(ml_npy_write_i32(p1, ints, 1, s1), ML_OK);
    assert_int_equal(ml_npy_write_f32(ps, f + 3, 0, NULL), ML_OK);
    assert_int_equal(ml_npy_write_f32(pz, NULL, 2, s0), ML_OK);

    /* Data starts on a 64-byte boundary; header is v1.0 and ends in '\n'. */
    char *buf;
    size_t size;
    assert_int_equal(ml_read_file(p3, &buf, &size), ML_OK);
    assert_int_equal(size % 64, 24 * 4 % 64);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    size_t hlen = (unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(buf[10 + hlen - 1], '\n');
    free(buf);

    ml_npy_array a;
    assert_int_equal(ml_npy_read(p3, &a), ML_OK);
    assert_int_equal(a.dtype, ML_NPY_F32);
    assert_int_equal(a.ndim, 3);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_int_equal(a.shape[2], 4);
    assert_int_equal(a.count, 24);
    assert_memory_equal(a.data, f, sizeof f);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_read(p1, &a), ML_OK);
    assert_int_equal(a.dtype, ML_NPY_I32);
    assert_int_equal(a.ndim, 1);
    assert_memory_equal(a.data, ints, sizeof ints);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_read(ps, &a), ML_OK);
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.count, 1);
    assert_true(((float *)a.data)[0] == f[3]);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_read(pz, &a), ML_OK);
    assert_int_equal(a.count, 0);
    assert_int_equal(a.shape[1], 5);
    ml_npy_free(&a);

    /* numpy loads what we wrote ... */
    int rc = ml_test_run("%s -c '\n"
                         "import sys, numpy as np\n"
                         "a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); s = np.load(sys.argv[3]); z = np.load(sys.argv[4])\n"
                         "assert a.dtype == np.float32 and a.shape == (2, 3, 4), (a.dtype, a.shape)\n"
                         "assert np.array_equal(a.ravel(), np.arange(24, dtype=np.float32) * 0.5 - 3)\n"
                         "assert b.dtype == np.int32 and b.shape == (6,) and b[0] == -2**31 and b[5] == 2**31 - 1 and b[4] == 32000\n"
                         "assert s.shape == () and s == -1.5 and z.shape == (0, 5) and z.dtype == np.float32\n"
                         "np.save(sys.argv[5], np.arange(12, dtype=np.float32).reshape(3, 4) / 8)\n"
                         "np.save(sys.argv[6], np.array([[7, -8]], dtype=np.int32))\n"
                         "np.save(sys.argv[7], np.zeros(3))\n"
                         "np.save(sys.argv[8], np.asfortranarray(np.ones((2, 3), dtype=np.float32)))\n"
                         "print(\"numpy ok\")\n"
                         "' %s %s %s %s %s/np_f.npy %s/np_i.npy %s/np_f8.npy %s/np_fortran.npy",
                         ML_PYTHON, p3, p1, ps, pz, dir, dir, dir, dir);
    assert_int_equal(rc, 0);
    /* ... and we load what numpy wrote. */
    assert_int_equal(ml_npy_read(ml_test_path(dir, "np_f.npy"), &a), ML_OK);
    assert_int_equal(a.dtype, ML_NPY_F32);
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 3);
    for (int i = 0; i < 12; i++) assert_true(((float *)a.data)[i] == (float)i / 8);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "np_i.npy"), &a), ML_OK);
    assert_int_equal(a.dtype, ML_NPY_I32);
    assert_int_equal(a.shape[0], 1);
    assert_int_equal(a.shape[1], 2);
    assert_int_equal(((int32_t *)a.data)[1], -8);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "np_f8.npy"), &a), ML_ERR_UNSUPPORTED); /* float64 */
    assert_null(a.data);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "np_fortran.npy"), &a), ML_ERR_UNSUPPORTED);

    /* Argument errors; a failed write leaves nothing. */
    int64_t neg[1] = {-1};
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "neg.npy"), f, 1, neg), ML_ERR_ARG);
    assert_false(ml_test_file_exists(ml_test_path(dir, "neg.npy")));
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "nodir/x.npy"), f, 1, s1), ML_ERR_IO);
    int64_t big[ML_NPY_MAX_DIMS];
    for (int i = 0; i < ML_NPY_MAX_DIMS; i++) big[i] = 1;
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "rank32.npy"), f, ML_NPY_MAX_DIMS, big), ML_OK);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "rank32.npy"), &a), ML_OK);
    assert_int_equal(a.ndim, ML_NPY_MAX_DIMS);
    ml_npy_free(&a);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "rank33.npy"), f, ML_NPY_MAX_DIMS + 1, big), ML_ERR_ARG);
}

/* A v1.0 file from a literal header dict (padded as numpy does) and `data_len` zero bytes. */
static const char *make_npy(const char *dict, size_t data_len, int truncate_to) {
    static char path[4096];
    snprintf(path, sizeof path, "%s", ml_test_path(dir, "bad.npy"));
    size_t k = strlen(dict), total = (10 + k + 1 + 63) / 64 * 64;
    unsigned char *b = calloc(total + data_len, 1);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((total - 10) & 0xff);
    b[9] = (unsigned char)((total - 10) >> 8);
    memcpy(b + 10, dict, k);
    memset(b + 10 + k, ' ', total - 10 - k - 1);
    b[total - 1] = '\n';
    write_bytes(path, b, truncate_to >= 0 ? (size_t)truncate_to : total + data_len);
    free(b);
    return path;
}

static void test_bad_files(void **state) {
    (void)state;
    struct {
        const char *dict;
        size_t data;
        int trunc;
        ml_status want;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, -1, ML_ERR_FORMAT}, /* short data */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, -1, ML_ERR_FORMAT}, /* extra data */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 9, ML_ERR_FORMAT},  /* truncated */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 40, ML_ERR_FORMAT},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, -1, ML_ERR_UNSUPPORTED},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, -1, ML_ERR_UNSUPPORTED},
        {"{'descr': '<f4', 'fortran_order': False, }", 4, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 24, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", 8, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 8, -1,
         ML_ERR_FORMAT},
        {"['descr', '<f4']", 8, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk", 8, -1, ML_ERR_FORMAT},
        {"{'descr': '<f4", 8, -1, ML_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = make_npy(cases[i].dict, cases[i].data, cases[i].trunc);
        ml_npy_array a;
        ml_status s = ml_npy_read(p, &a);
        printf("  %s -> [%s] %s\n", cases[i].dict, ml_status_name(s), ml_last_error());
        assert_int_equal(s, cases[i].want);
        assert_null(a.data);
    }
    /* Bad magic, bad version, lying header length. */
    const char *p = ml_test_path(dir, "magic.npy");
    write_bytes(p, "\x93NUMPX\x01\x00\x10\x00{}", 12);
    ml_npy_array a;
    assert_int_equal(ml_npy_read(p, &a), ML_ERR_FORMAT);
    write_bytes(p, "\x93NUMPY\x04\x00\x10\x00{}", 12);
    assert_int_equal(ml_npy_read(p, &a), ML_ERR_UNSUPPORTED);
    write_bytes(p, "\x93NUMPY\x01\x00\xff\xff{}", 12);
    assert_int_equal(ml_npy_read(p, &a), ML_ERR_FORMAT);
    write_bytes(p, "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14);
    assert_int_equal(ml_npy_read(p, &a), ML_ERR_FORMAT);
    assert_int_equal(ml_npy_read(ml_test_path(dir, "missing.npy"), &a), ML_ERR_IO);
    assert_int_equal(ml_npy_read(dir, &a), ML_ERR_IO);
}

int main(void) {
    dir = ml_test_tmpdir("test_npy");
    if (!dir) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_files),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
