/* Shared helpers for the cmocka tests. */
#ifndef ML_TEST_UTIL_H
#define ML_TEST_UTIL_H

#include <stddef.h>

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

#endif
