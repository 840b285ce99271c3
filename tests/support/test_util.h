/* Shared helpers for the cmocka tests. */
#ifndef ML_TEST_UTIL_H
#define ML_TEST_UTIL_H

#include <stddef.h>

#include "common/rng.h"
#include "model/config.h"

/* A fresh empty directory under the build tree for this test's files (removed at exit unless
 * ML_KEEP_TEST_FILES is set). Returns the path (static storage). */
const char *ml_test_tmpdir(const char *test_name);
/* Join dir and name into a static rotating buffer. */
const char *ml_test_path(const char *dir, const char *name);
/* Run a shell command; returns its exit status (or -1). Output goes to the test log. */
int ml_test_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Max |a-b| / (|b| + atol_scale) style comparison helpers. */
double ml_test_max_abs_diff(const float *a, const float *b, size_t n);
double ml_test_max_rel_diff(const float *a, const float *b, size_t n, double floor);
int ml_test_file_exists(const char *path);
/* n floats drawn from N(0, scale^2) with r (malloc'd; at least one element so n = 0 is a valid buffer). */
float *ml_test_randn(ml_rng *r, size_t n, float scale);
/* Element (row, col) of op(X) for a row-major X with leading dimension ld, transposed when trans is set: how a
 * GEMM reads its operands, for reference products. */
float ml_test_op(const float *X, int ld, int trans, int row, int col);
/* A small Llama-dialect model for kernel-level model tests: 2 layers, 4 query / 2 KV heads, tied embeddings,
 * half-split RoPE in every layer, 64 positions, initializer range 0.1, no special tokens. */
void ml_test_small_llama(ml_config *c, int vocab, int hidden, int ffn, int head_dim);

/* ---- skips that are seen
 * A test program exits with ML_TEST_SKIP (ctest's SKIP_RETURN_CODE, 77) when nothing failed but some
 * part did not run for want of a shared file or an optional tool; the reasons are printed at exit. */
#define ML_TEST_SKIP 77

/* The shared data directory: $ML_SHARED_DIR when set, else the compiled default (../shared beside the
 * sources). The name ML_SHARED_DIR stands for this call in the tests. */
const char *ml_test_shared_dir(void);
#define ML_SHARED_DIR ml_test_shared_dir()
/* "<shared dir>/rel"; the string lives as long as the program. */
const char *ml_test_shared(const char *rel);
/* 1 if `path` (a file or directory of the shared data) exists. Else records the skip "missing shared
 * file PATH" and returns 0; with ML_REQUIRE_SHARED=1 in the environment it fails the running cmocka
 * test instead (a CI that has the data must not skip its checks). */
int ml_test_have_shared(const char *path);
/* Record a skip for another reason (an optional tool, a CPU feature); printed at once and at exit. */
void ml_test_note_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The status a test program returns: 1 if any test failed, else ML_TEST_SKIP if anything was
 * skipped, else 0. Usage: return ml_test_exit(cmocka_run_group_tests(...)); */
int ml_test_exit(int failures);

/* Inside a cmocka test: skip it unless the shared file exists. */
#define ML_NEED_SHARED(path)                                                                         \
    do {                                                                                             \
        if (!ml_test_have_shared(path)) skip();                                                      \
    } while (0)
/* Inside a cmocka test: record why and skip it. */
#define ML_SKIP(...)                                                                                 \
    do {                                                                                             \
        ml_test_note_skip(__VA_ARGS__);                                                              \
        skip();                                                                                      \
    } while (0)

#endif
