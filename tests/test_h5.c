/* HDF5 wrapper: round trips of every dataset/attribute kind, h5py interop both ways, validation
 * errors, and truncated / corrupted files (must fail cleanly, never crash). */
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
#include "formats/h5.h"
#include "tests/support/test_util.h"

static const char *dir;
static char ckpt[4096];

#define QNAME "model.layers.0.self_attn.q_proj.weight"
#define NROWS 600
#define NCOLS 700

#define UPNAME "model.layers.0.mlp.up_proj.weight"
static float qv[12 * 8], norm[8], big[NROWS * NCOLS], up[96 * 64];
static uint8_t rng[32];
static int64_t cursor[3] = {-5, 0, 1234567890123LL};
static uint64_t u64[4] = {0, 1, UINT64_MAX, 0x8000000000000000ULL};

static void fill(void) {
    for (int i = 0; i < 12 * 8; i++) qv[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 8; i++) norm[i] = 1.0f + (float)i / 16;
    for (int i = 0; i < 96 * 64; i++) up[i] = (float)i;
    for (int i = 0; i < NROWS * NCOLS; i++) big[i] = (float)(i % 1000) / 8.0f;
    for (int i = 0; i < 32; i++) rng[i] = (uint8_t)(i * 29 + 3);
}

/* The intended use: HDF5 writes the atomic file's temporary, then commit renames it. */
static void write_checkpoint(const char *path) {
    ml_atomic_file af;
    assert_int_equal(ml_atomic_begin(&af, path, 0), ML_OK);
    ml_h5 *f;
    assert_int_equal(ml_h5_create(&f, af.tmp_path), ML_OK);
    int64_t sq[2] = {12, 8}, sn[1] = {8}, sb[2] = {NROWS, NCOLS}, sr[1] = {32}, sc[1] = {3}, su[1] = {4};
    assert_int_equal(ml_h5_write_f32(f, "params/" QNAME, 2, sq, qv, NULL), ML_OK);
    assert_int_equal(ml_h5_write_f32(f, "params/model.norm.weight", 1, sn, norm, NULL), ML_OK);
    int64_t su2[2] = {96, 64}; /* contiguous raw data: most of the file */
    assert_int_equal(ml_h5_write_f32(f, "params/" UPNAME, 2, su2, up, NULL), ML_OK);
    ml_h5_opts gz = {.gzip = 4, .shuffle = 1};
    assert_int_equal(ml_h5_write_f32(f, "params/model.embed_tokens.weight", 2, sb, big, &gz), ML_OK);
    assert_int_equal(ml_h5_write_u8(f, "state/rng", 1, sr, rng), ML_OK);
    assert_int_equal(ml_h5_write_i64(f, "state/cursor", 1, sc, cursor), ML_OK);
    assert_int_equal(ml_h5_write_u64(f, "state/deep/er/u64", 1, su, u64), ML_OK);
    int64_t step = 42;
    assert_int_equal(ml_h5_write_i64(f, "state/step", 0, NULL, &step), ML_OK);
    assert_int_equal(ml_h5_create_group(f, "empty/group"), ML_OK);
    assert_int_equal(ml_h5_create_group(f, "empty/group"), ML_OK); /* idempotent */
    assert_int_equal(ml_h5_set_attr_str(f, "/", "config", "{\"hidden\": 8, \"name\": \"na\xc3\xafve\"}"), ML_OK);
    assert_int_equal(ml_h5_set_attr_str(f, "/", "config", "{\"hidden\": 8, \"name\": \"na\xc3\xafve \xe2\x9c\x93\"}"),
                     ML_OK); /* replaced */
    assert_int_equal(ml_h5_set_attr_str(f, "params/" QNAME, "note", ""), ML_OK);
    assert_int_equal(ml_h5_set_attr_i64(f, "/", "step", -7), ML_OK);
    assert_int_equal(ml_h5_set_attr_f64(f, "state", "lr", 3.5e-4), ML_OK);

    /* Errors while writing */
    assert_int_equal(ml_h5_write_f32(f, "params/model.norm.weight", 1, sn, norm, NULL), ML_ERR_ARG); /* exists */
    assert_non_null(strstr(ml_last_error(), "model.norm.weight"));
    assert_int_equal(ml_h5_write_f32(f, "", 1, sn, norm, NULL), ML_ERR_ARG);
    assert_int_equal(ml_h5_write_f32(f, "a//b", 1, sn, norm, NULL), ML_ERR_ARG);
    assert_int_equal(ml_h5_write_f32(f, "a/./b", 1, sn, norm, NULL), ML_ERR_ARG);
    assert_int_equal(ml_h5_write_f32(f, "a/", 1, sn, norm, NULL), ML_ERR_ARG);
    int64_t neg[1] = {-3};
    assert_int_equal(ml_h5_write_f32(f, "neg", 1, neg, norm, NULL), ML_ERR_ARG);
    ml_h5_opts badgz = {.gzip = 12};
    assert_int_equal(ml_h5_write_f32(f, "gz12", 1, sn, norm, &badgz), ML_ERR_ARG);
    assert_int_equal(ml_h5_write_f32(f, "params/model.norm.weight/x", 1, sn, norm, NULL), ML_ERR_IO); /* under a dataset */
    assert_int_equal(ml_h5_set_attr_i64(f, "nope", "x", 1), ML_ERR_ARG);

    assert_int_equal(ml_h5_close(f), ML_OK);
    assert_int_equal(ml_atomic_commit(&af), ML_OK);
}

static void test_roundtrip(void **state) {
    (void)state;
    fill();
    snprintf(ckpt, sizeof ckpt, "%s", ml_test_path(dir, "ckpt.h5"));
    write_checkpoint(ckpt);

    ml_h5 *f;
    assert_int_equal(ml_h5_open_read(&f, ckpt), ML_OK);
    char **names;
    size_t n;
    assert_int_equal(ml_h5_list_datasets(f, "params", &names, &n), ML_OK);
    assert_int_equal(n, 4);
    assert_string_equal(names[0], "model.embed_tokens.weight");
    assert_string_equal(names[1], UPNAME);
    assert_string_equal(names[2], QNAME);
    assert_string_equal(names[3], "model.norm.weight");
    ml_h5_free_names(names, n);
    assert_int_equal(ml_h5_list_datasets(f, "state", &names, &n), ML_OK); /* groups are not listed */
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "cursor");
    assert_string_equal(names[1], "rng");
    assert_string_equal(names[2], "step");
    ml_h5_free_names(names, n);
    assert_int_equal(ml_h5_list_datasets(f, "/", &names, &n), ML_OK);
    assert_int_equal(n, 0);
    ml_h5_free_names(names, n);
    assert_int_equal(ml_h5_list_datasets(f, "nope", &names, &n), ML_ERR_FORMAT);
    assert_true(ml_h5_exists(f, "empty/group"));
    assert_false(ml_h5_exists(f, "empty/group/x"));
    assert_false(ml_h5_exists(f, "nope/deeper"));

    int nd;
    int64_t shape[ML_H5_MAX_DIMS];
    ml_h5_dtype dt;
    assert_int_equal(ml_h5_dataset_info(f, "params/" QNAME, &nd, shape, &dt), ML_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(shape[0], 12);
    assert_int_equal(shape[1], 8);
    assert_int_equal(dt, ML_H5_F32);
    assert_int_equal(ml_h5_dataset_info(f, "state/cursor", &nd, shape, &dt), ML_OK);
    assert_int_equal(dt, ML_H5_I64);
    assert_int_equal(ml_h5_dataset_info(f, "state/step", &nd, shape, &dt), ML_OK);
    assert_int_equal(nd, 0);
    assert_int_equal(ml_h5_dataset_info(f, "state/deep/er/u64", &nd, shape, &dt), ML_OK);
    assert_int_equal(dt, ML_H5_U64);
    assert_int_equal(ml_h5_dataset_info(f, "state/rng", &nd, shape, &dt), ML_OK);
    assert_int_equal(dt, ML_H5_U8);

    float q[12 * 8], nrm[8];
    float *b = malloc(sizeof big);
    int64_t sq[2] = {12, 8}, sn[1] = {8}, sb[2] = {NROWS, NCOLS}, sr[1] = {32}, sc[1] = {3}, su[1] = {4};
    assert_int_equal(ml_h5_read_f32(f, "params/" QNAME, 2, sq, q), ML_OK);
    assert_memory_equal(q, qv, sizeof qv);
    assert_int_equal(ml_h5_read_f32(f, "params/model.norm.weight", 1, sn, nrm), ML_OK);
    assert_memory_equal(nrm, norm, sizeof norm);
    assert_int_equal(ml_h5_read_f32(f, "params/model.embed_tokens.weight", 2, sb, b), ML_OK);
    assert_memory_equal(b, big, sizeof big);
    free(b);
    uint8_t r[32];
    int64_t c[3], step;
    uint64_t u[4];
    assert_int_equal(ml_h5_read_u8(f, "state/rng", 1, sr, r), ML_OK);
    assert_memory_equal(r, rng, 32);
    assert_int_equal(ml_h5_read_i64(f, "state/cursor", 1, sc, c), ML_OK);
    assert_memory_equal(c, cursor, sizeof c);
    assert_int_equal(ml_h5_read_u64(f, "/state/deep/er/u64", 1, su, u), ML_OK);
    assert_memory_equal(u, u64, sizeof u);
    assert_int_equal(ml_h5_read_i64(f, "state/step", 0, NULL, &step), ML_OK);
    assert_int_equal(step, 42);

    char *s;
    assert_int_equal(ml_h5_get_attr_str(f, "/", "config", &s), ML_OK);
    assert_string_equal(s, "{\"hidden\": 8, \"name\": \"na\xc3\xafve \xe2\x9c\x93\"}");
    free(s);
    assert_int_equal(ml_h5_get_attr_str(f, "params/" QNAME, "note", &s), ML_OK);
    assert_string_equal(s, "");
    free(s);
    int64_t iv;
    double dv;
    assert_int_equal(ml_h5_get_attr_i64(f, "/", "step", &iv), ML_OK);
    assert_int_equal(iv, -7);
    assert_int_equal(ml_h5_get_attr_f64(f, "state", "lr", &dv), ML_OK);
    assert_true(dv == 3.5e-4);
    assert_true(ml_h5_has_attr(f, "/", "step"));
    assert_false(ml_h5_has_attr(f, "/", "nope"));
    assert_false(ml_h5_has_attr(f, "nope", "step"));

    /* Validation: each failure names the dataset and the file. */
    int64_t wrong[2] = {8, 12};
    assert_int_equal(ml_h5_read_f32(f, "params/" QNAME, 2, wrong, q), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), QNAME));
    assert_non_null(strstr(ml_last_error(), ckpt));
    assert_non_null(strstr(ml_last_error(), "[12, 8]"));
    assert_int_equal(ml_h5_read_f32(f, "params/model.norm.weight", 2, sq, q), ML_ERR_FORMAT); /* rank */
    assert_int_equal(ml_h5_read_i64(f, "params/model.norm.weight", 1, sn, c), ML_ERR_FORMAT); /* dtype */
    assert_non_null(strstr(ml_last_error(), "float32"));
    assert_int_equal(ml_h5_read_u64(f, "state/cursor", 1, sc, u), ML_ERR_FORMAT);             /* signedness */
    assert_int_equal(ml_h5_read_f32(f, "params/missing", 1, sn, q), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "params/missing"));
    assert_int_equal(ml_h5_read_f32(f, "params", 1, sn, q), ML_ERR_FORMAT); /* a group */
    assert_int_equal(ml_h5_get_attr_str(f, "/", "step", &s), ML_ERR_FORMAT);
    assert_null(s);
    assert_int_equal(ml_h5_get_attr_i64(f, "/", "config", &iv), ML_ERR_FORMAT);
    assert_int_equal(ml_h5_get_attr_f64(f, "/", "step", &dv), ML_ERR_FORMAT);
    assert_int_equal(ml_h5_get_attr_i64(f, "/", "missing", &iv), ML_ERR_FORMAT);
    /* Read-only */
    assert_int_equal(ml_h5_write_f32(f, "x", 1, sn, norm, NULL), ML_ERR_ARG);
    assert_int_equal(ml_h5_set_attr_i64(f, "/", "x", 1), ML_ERR_ARG);
    assert_int_equal(ml_h5_create_group(f, "g"), ML_ERR_ARG);
    assert_int_equal(ml_h5_close(f), ML_OK);

    /* Opening what is not an HDF5 file */
    assert_int_equal(ml_h5_open_read(&f, ml_test_path(dir, "missing.h5")), ML_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(ml_last_error(), "missing.h5"));
    assert_int_not_equal(ml_h5_create(&f, ml_test_path(dir, "no/dir/x.h5")), ML_OK);
    assert_int_equal(ml_h5_close(NULL), ML_OK);
}

static void test_h5py_interop(void **state) {
    (void)state;
    if (!ckpt[0]) ML_SKIP("test_h5: no checkpoint (the writing test did not finish)");
    /* h5py reads our file: strings are fixed-length UTF-8, so they come back as bytes. */
    int rc = ml_test_run(
        "%s -c '\n"
        "import sys, h5py, numpy as np\n"
        "f = h5py.File(sys.argv[1], \"r\")\n"
        "c = f.attrs[\"config\"]\n"
        "assert isinstance(c, bytes), type(c)\n"
        "c = c.decode()\n"
        "assert c == \"{\\\"hidden\\\": 8, \\\"name\\\": \\\"na\\u00efve \\u2713\\\"}\", c\n"
        "assert isinstance(f[\"params/" QNAME "\"].attrs[\"note\"], bytes)\n"
        "assert f.attrs[\"step\"] == -7 and f[\"state\"].attrs[\"lr\"] == 3.5e-4\n"
        "q = f[\"params\"][\"" QNAME "\"][()]\n"
        "assert q.dtype == np.float32 and q.shape == (12, 8)\n"
        "assert np.array_equal(q.ravel(), np.arange(96, dtype=np.float32) * 0.25 - 3)\n"
        "e = f[\"params/model.embed_tokens.weight\"]\n"
        "assert e.compression == \"gzip\" and e.shuffle and e.shape == (600, 700)\n"
        "assert np.array_equal(e[()].ravel(), (np.arange(600 * 700) %% 1000).astype(np.float32) / 8)\n"
        "assert f[\"state/rng\"].dtype == np.uint8 and f[\"state/cursor\"][2] == 1234567890123\n"
        "assert f[\"state/deep/er/u64\"].dtype == np.uint64 and f[\"state/deep/er/u64\"][2] == 2**64 - 1\n"
        "assert f[\"state/step\"][()] == 42 and f[\"state/step\"].shape == ()\n"
        "g = h5py.File(sys.argv[2], \"w\")\n"
        "g.attrs[\"vlen\"] = \"h\\u00e9llo\"\n"
        "g.attrs[\"fixed\"] = np.bytes_(b\"fixed-len\")\n"
        "g.attrs[\"count\"] = np.int32(-3)\n"
        "g.attrs[\"ratio\"] = 0.125\n"
        "g.create_dataset(\"params/model.norm.weight\", data=np.arange(5, dtype=np.float32))\n"
        "g.create_dataset(\"params/f64\", data=np.arange(5, dtype=np.float64))\n"
        "g.create_dataset(\"params/chunked\", data=np.ones((40, 30), dtype=np.float32), chunks=(7, 30), compression=\"gzip\")\n"
        "g[\"params\"].attrs[\"sp\"] = np.array(b\"pad  \", dtype=\"S5\")\n"
        "g.close()\n"
        "import shutil\n"
        "shutil.copy(sys.argv[1], sys.argv[3])\n"
        "h = h5py.File(sys.argv[3], \"r+\"); h.attrs[\"touched\"] = 1; h.close()\n"
        "print(\"h5py ok\")\n"
        "' %s %s/from_h5py.h5 %s/modified.h5",
        ML_PYTHON, ckpt, dir, dir);
    assert_int_equal(rc, 0);

    /* Our file changed by another tool no longer matches its checksum: refused, with a reason. */
    ml_h5 *f;
    assert_int_equal(ml_h5_open_read(&f, ml_test_path(dir, "modified.h5")), ML_ERR_FORMAT);
    printf("  %s\n", ml_last_error());
    assert_non_null(strstr(ml_last_error(), "modified outside"));

    /* We read h5py's file (no checksum block: opened unverified): variable- and fixed-length strings,
     * int32 into int64, chunked data. */
    assert_int_equal(ml_h5_open_read(&f, ml_test_path(dir, "from_h5py.h5")), ML_OK);
    char *s;
    assert_int_equal(ml_h5_get_attr_str(f, "/", "vlen", &s), ML_OK);
    assert_string_equal(s, "h\xc3\xa9llo");
    free(s);
    assert_int_equal(ml_h5_get_attr_str(f, "/", "fixed", &s), ML_OK);
    assert_string_equal(s, "fixed-len");
    free(s);
    assert_int_equal(ml_h5_get_attr_str(f, "params", "sp", &s), ML_OK);
    assert_string_equal(s, "pad  "); /* NULL-padded string keeps its spaces */
    free(s);
    int64_t iv;
    double dv;
    assert_int_equal(ml_h5_get_attr_i64(f, "/", "count", &iv), ML_OK);
    assert_int_equal(iv, -3);
    assert_int_equal(ml_h5_get_attr_f64(f, "/", "ratio", &dv), ML_OK);
    assert_true(dv == 0.125);
    float v[40 * 30];
    int64_t s5[1] = {5}, s2[2] = {40, 30};
    assert_int_equal(ml_h5_read_f32(f, "params/model.norm.weight", 1, s5, v), ML_OK);
    assert_true(v[4] == 4.0f);
    assert_int_equal(ml_h5_read_f32(f, "params/f64", 1, s5, v), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "float64"));
    assert_int_equal(ml_h5_read_f32(f, "params/chunked", 2, s2, v), ML_OK);
    assert_true(v[0] == 1.0f && v[40 * 30 - 1] == 1.0f);
    assert_int_equal(ml_h5_close(f), ML_OK);
}

/* Open a possibly damaged file and touch everything in it; any step may fail, none may crash.
 * Returns 1 if some step failed. */
static int read_everything(const char *path) {
    ml_h5 *f;
    if (ml_h5_open_read(&f, path) != ML_OK) return 1;
    int failed = 0;
    const char *groups[] = {"params", "state", "state/deep/er", "/"};
    for (int g = 0; g < 4; g++) {
        char **names;
        size_t n;
        if (ml_h5_list_datasets(f, groups[g], &names, &n) != ML_OK) {
            failed = 1;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", groups[g], names[i]);
            int nd;
            int64_t sh[ML_H5_MAX_DIMS];
            ml_h5_dtype dt;
            if (ml_h5_dataset_info(f, p, &nd, sh, &dt) != ML_OK) {
                failed = 1;
                continue;
            }
            uint64_t numel = 1;
            for (int k = 0; k < nd; k++) numel *= (uint64_t)sh[k];
            if (numel > (1u << 22)) {
                failed = 1; /* a lying shape: do not allocate it */
                continue;
            }
            void *buf = malloc(numel * 8 + 8);
            ml_status s = dt == ML_H5_F32 ? ml_h5_read_f32(f, p, nd, sh, buf)
                          : dt == ML_H5_U8 ? ml_h5_read_u8(f, p, nd, sh, buf)
                          : dt == ML_H5_I64 ? ml_h5_read_i64(f, p, nd, sh, buf)
                          : dt == ML_H5_U64 ? ml_h5_read_u64(f, p, nd, sh, buf)
                                            : ML_ERR_FORMAT;
            if (s != ML_OK) failed = 1;
            free(buf);
        }
        ml_h5_free_names(names, n);
    }
    char *s = NULL;
    int64_t iv;
    double dv;
    if (ml_h5_get_attr_str(f, "/", "config", &s) != ML_OK) failed = 1;
    free(s);
    if (ml_h5_get_attr_i64(f, "/", "step", &iv) != ML_OK) failed = 1;
    if (ml_h5_get_attr_f64(f, "state", "lr", &dv) != ML_OK) failed = 1;
    if (ml_h5_close(f) != ML_OK) failed = 1;
    return failed;
}

static void test_corrupted_files(void **state) {
    (void)state;
    if (!ckpt[0]) ML_SKIP("test_h5: no checkpoint (the writing test did not finish)");
    char *buf;
    size_t size;
    assert_int_equal(ml_read_file(ckpt, &buf, &size), ML_OK);
    assert_int_equal(read_everything(ckpt), 0); /* the intact file reads fully */
    char p[4096];
    snprintf(p, sizeof p, "%s", ml_test_path(dir, "damaged.h5"));

    /* Truncations: to half, to 100 bytes, to nothing. */
    size_t cuts[] = {size / 2, size - 1, 100, 8, 0};
    for (int i = 0; i < 5; i++) {
        FILE *fp = fopen(p, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(buf, 1, cuts[i], fp), cuts[i]);
        fclose(fp);
        ml_h5 *f = NULL;
        ml_status s = ml_h5_open_read(&f, p);
        printf("  truncated to %zu bytes: [%s] %s\n", cuts[i], ml_status_name(s), s ? ml_last_error() : "");
        assert_int_not_equal(s, ML_OK);
        assert_null(f);
        assert_non_null(strstr(ml_last_error(), "damaged.h5"));
    }

    /* Flipped bytes: every byte of the checksum block and the superblock, then densely through the
     * metadata at the start and the end, sparsely through the raw data in the middle. The whole-file
     * checksum must catch every one. (HDF5 alone does not: it checksums metadata but not raw data, and
     * 1.10 loops forever on some corrupted global heaps, where variable-length strings live.) */
    int tried = 0, failed = 0, missed = 0;
    for (size_t off = 0; off < size; off += off < 600 ? 1 : off < 4096 || off + 4096 > size ? 37 : size / 23) {
        unsigned char save = (unsigned char)buf[off];
        buf[off] = (char)(save ^ 0xff);
        FILE *fp = fopen(p, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(buf, 1, size, fp), size);
        fclose(fp);
        buf[off] = (char)save;
        tried++;
        int bad = read_everything(p);
        failed += bad;
        if (!bad) {
            printf("  flip at byte %zu went undetected\n", off);
            missed++;
        }
    }
    printf("  %d single-byte corruptions: %d detected\n", tried, failed);
    assert_int_equal(missed, 0);
    assert_int_equal(failed, tried);
    /* Corrupted raw data in the middle is caught too. */
    memset(buf + size / 2, 0xa5, 64);
    FILE *fp = fopen(p, "wb");
    assert_int_equal(fwrite(buf, 1, size, fp), size);
    fclose(fp);
    assert_int_equal(read_everything(p), 1);
    assert_int_equal(ml_h5_open_read(&(ml_h5 *){NULL}, p), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "checksum"));
    free(buf);
}

void ml_atomic_cleanup_all(void); /* common/atomic_file.c: the signal path */

/* Any number of temporaries in flight are removed by the signal path (the table once held 16 and
 * dropped the rest silently); a committed or aborted one is forgotten. */
static void test_cleanup_table(void **state) {
    (void)state;
    const char *dir = ml_test_tmpdir("h5");
    enum { N = 100 };
    static ml_atomic_file af[N];
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "out%03d.bin", i);
        assert_int_equal(ml_atomic_begin(&af[i], ml_test_path(dir, name), 1), ML_OK);
    }
    assert_int_equal(ml_atomic_commit(&af[0]), ML_OK);
    ml_atomic_abort(&af[1]);
    for (int i = 2; i < N; i++) fclose(af[i].fp), af[i].fp = NULL;
    ml_atomic_cleanup_all();
    for (int i = 2; i < N; i++) assert_false(ml_test_file_exists(af[i].tmp_path));
    assert_true(ml_test_file_exists(af[0].final_path));
    for (int i = 2; i < N; i++) ml_atomic_abort(&af[i]); /* unregisters; the files are gone already */
    /* reused entries still work */
    ml_atomic_file g;
    assert_int_equal(ml_atomic_begin(&g, ml_test_path(dir, "again.bin"), 1), ML_OK);
    fclose(g.fp), g.fp = NULL;
    ml_atomic_cleanup_all();
    assert_false(ml_test_file_exists(g.tmp_path));
    ml_atomic_abort(&g);
}

/* Temporaries named "<prefix>*.tmp.PID": a dead PID's are removed, a live one's and others are kept. */
static void test_remove_stale(void **state) {
    (void)state;
    const char *dir = ml_test_path(ml_test_tmpdir("h5"), "stale");
    assert_int_equal(ml_test_run("mkdir -p '%s'", dir), 0);
    char dead[4096], live[4096], mine[4096], other[4096], odd[4096];
    /* PID 2^22+1 is above Linux's pid_max ceiling (4194304): never a running process */
    snprintf(dead, sizeof dead, "%s/ckpt_00000004.h5.tmp.4194305", dir);
    snprintf(live, sizeof live, "%s/ckpt_00000005.h5.tmp.1", dir); /* init: alive (and not ours) */
    snprintf(mine, sizeof mine, "%s/ckpt_00000006.h5.tmp.%ld", dir, (long)getpid());
    snprintf(other, sizeof other, "%s/metrics.jsonl.tmp.4194305", dir);
    snprintf(odd, sizeof odd, "%s/ckpt_00000007.h5.tmp.12x", dir);
    const char *all[] = {dead, live, mine, other, odd};
    for (int i = 0; i < 5; i++) assert_int_equal(ml_test_run("touch '%s'", all[i]), 0);
    int removed = -1;
    assert_int_equal(ml_atomic_remove_stale(dir, "ckpt_", &removed), ML_OK);
    assert_int_equal(removed, 1);
    assert_false(ml_test_file_exists(dead));
    for (int i = 1; i < 5; i++) assert_true(ml_test_file_exists(all[i]));
    assert_int_equal(ml_atomic_remove_stale(ml_test_path(dir, "no-such-dir"), "ckpt_", &removed), ML_OK);
    assert_int_equal(removed, 0);
}

int main(void) {
    dir = ml_test_tmpdir("test_h5");
    if (!dir) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_h5py_interop),
        cmocka_unit_test(test_corrupted_files),
        cmocka_unit_test(test_cleanup_table),
        cmocka_unit_test(test_remove_stale),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
