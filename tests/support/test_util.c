#include "tests/support/test_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h after the four headers it needs */
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];

static void remove_tmpdir(void) {
    if (tmpdir[0] && !getenv("ML_KEEP_TEST_FILES")) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *ml_test_tmpdir(const char *test_name) {
    if (tmpdir[0]) return tmpdir;
    snprintf(tmpdir, sizeof tmpdir, "test_files/%s.%ld", test_name, (long)getpid());
    mkdir("test_files", 0755);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", tmpdir, tmpdir);
    if (system(cmd) != 0) return NULL;
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *ml_test_path(const char *dir, const char *name) {
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

int ml_test_run(const char *fmt, ...) {
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "+ %s\n", cmd);
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

double ml_test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as "large" */
    }
    return m;
}

double ml_test_max_rel_diff(const float *a, const float *b, size_t n, double floor) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + floor);
        if (!(d <= m)) m = d;
    }
    return m;
}

int ml_test_file_exists(const char *path) { return access(path, F_OK) == 0; }

/* ---------------------------------------------------------------- skips */

const char *ml_test_shared_dir(void) {
    const char *e = getenv("ML_SHARED_DIR");
    return e && e[0] ? e : ML_SHARED_DIR_DEFAULT;
}

const char *ml_test_shared(const char *rel) {
    /* interned: callers keep the pointers (job tables, macros used in loops) */
    static char *paths[256];
    static int n;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", ml_test_shared_dir(), rel);
    for (int i = 0; i < n; i++)
        if (!strcmp(paths[i], buf)) return paths[i];
    if (n == (int)(sizeof paths / sizeof paths[0])) {
        fprintf(stderr, "ml_test_shared: more than %d distinct paths\n", n);
        abort();
    }
    paths[n] = strdup(buf);
    if (!paths[n]) abort();
    return paths[n++];
}

static char *skips[64];
static int n_skips, n_skips_dropped;

static void add_skip(const char *why) {
    fprintf(stderr, "SKIP: %s\n", why);
    fflush(stderr);
    for (int i = 0; i < n_skips; i++)
        if (!strcmp(skips[i], why)) return;
    if (n_skips < (int)(sizeof skips / sizeof skips[0]) && (skips[n_skips] = strdup(why)))
        n_skips++;
    else
        n_skips_dropped++;
}

void ml_test_note_skip(const char *fmt, ...) {
    char buf[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    add_skip(buf);
}

int ml_test_have_shared(const char *path) {
    if (access(path, F_OK) == 0) return 1;
    const char *req = getenv("ML_REQUIRE_SHARED");
    if (req && req[0] && strcmp(req, "0") != 0)
        fail_msg("missing shared file %s (ML_REQUIRE_SHARED is set; ML_SHARED_DIR=%s)", path, ml_test_shared_dir());
    ml_test_note_skip("missing shared file %s", path);
    return 0;
}

int ml_test_exit(int failures) {
    int rc = failures ? 1 : n_skips || n_skips_dropped ? ML_TEST_SKIP : 0;
    if (n_skips || n_skips_dropped) {
        fprintf(stderr, "skipped parts (%d):", n_skips + n_skips_dropped);
        for (int i = 0; i < n_skips; i++) fprintf(stderr, "%s %s", i ? ";" : "", skips[i]);
        if (n_skips_dropped) fprintf(stderr, "; %d more", n_skips_dropped);
        fprintf(stderr, "\n");
        fflush(stderr);
    }
    for (int i = 0; i < n_skips; i++) free(skips[i]);
    return rc;
}

void ml_test_small_llama(ml_config *c, int vocab, int hidden, int ffn, int head_dim) {
    memset(c, 0, sizeof *c);
    c->dialect = ML_DIALECT_LLAMA;
    c->vocab_size = vocab, c->hidden_size = hidden, c->intermediate_size = ffn, c->num_layers = 2, c->num_heads = 4;
    c->num_kv_heads = 2, c->head_dim = head_dim, c->max_position_embeddings = 64, c->rms_norm_eps = 1e-5f;
    c->rope_theta = 10000.0f, c->initializer_range = 0.1f, c->tie_word_embeddings = 1, c->layer_repeat = 1;
    c->rope_pairing = ML_ROPE_HALF_SPLIT;
    c->bos_token_id = c->eos_token_id = c->pad_token_id = -1;
    for (int l = 0; l < ML_MAX_LAYERS; l++) c->layer_rope[l] = 1;
}

float *ml_test_randn(ml_rng *r, size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; x && i < n; i++) x[i] = (float)(ml_rng_normal(r) * scale);
    return x;
}

float ml_test_op(const float *X, int ld, int trans, int row, int col) {
    return trans ? X[(size_t)col * ld + row] : X[(size_t)row * ld + col];
}
