/* The offline teacher-logit cache and the sparse distillation losses.
 * - Sparse KD (fkl/rkl/jsd x renorm/bucket x temperature x CE mixing): per-row loss and gradient with
 *   respect to the student's logits against PyTorch autograd (float64), tolerance 1e-5 relative to the
 *   largest value (float32 arithmetic over 37 logits).
 * - Top K of a row (with ties) equals a brute-force sort; tail = the mass outside, to 1e-6.
 * - A cache written by ml_teacher_logits holds, for every position of every batch, the same top-K
 *   ids as the teacher's dense logits (no ties among random-weight logits), log-probabilities equal to
 *   the dense log-softmax up to float16 rounding (relative 2^-11), and tail = 1 - sum exp(dense top-K)
 *   to 1e-6; h5py reads the identical numbers (zstd chunks decoded through hdf5plugin when it has zstd,
 *   else python3-zstandard on the raw chunks).
 * - Bad input: other B/T/data, other tokens, a cursor not in the cache, truncation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/rng.h"
#include "data/batch_reader.h"
#include "data/shard.h"
#include "distill/kd_head.h"
#include "distill/kd_loss.h"
#include "distill/logit_cache.h"
#include "distill/teacher_logits.h"
#include "formats/npy.h"
#include "interop/model_load.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "tests/support/test_util.h"

enum { N = 6, V = 37, K = 5 };

static const char *PY =
    "import sys, numpy as np, torch\n"
    "d = sys.argv[1]\n"
    "for cfg in sys.argv[2:]:\n"
    "  kind, tail, tau, beta, w = cfg.split(':'); tau, beta, w = float(tau), float(beta), float(w)\n"
    "  zs = torch.tensor(np.load(d + '/zs.npy'), dtype=torch.float64, requires_grad=True)\n"
    "  ids = torch.tensor(np.load(d + '/ids.npy')).long()\n"
    "  lt = torch.tensor(np.load(d + '/lt.npy'), dtype=torch.float64)\n"
    "  m = torch.tensor(np.load(d + '/tail.npy'), dtype=torch.float64)\n"
    "  y = torch.tensor(np.load(d + '/y.npy')).long()\n"
    "  lP = torch.log_softmax(zs / tau, -1).gather(1, ids)\n"
    "  a = lt / tau\n"
    "  if tail == 'bucket':\n"
    "      rest = (1 - lP.exp().sum(-1)).clamp(min=1e-20)\n"
    "      lP = torch.cat([lP, rest.log()[:, None]], 1)\n"
    "      a = torch.cat([a, m.log()[:, None] / tau], 1)\n"
    "  lq = torch.log_softmax(a, -1)\n"
    "  q, P = lq.exp(), lP.exp()\n"
    "  if kind == 'fkl': div = (q * (lq - lP)).sum(-1)\n"
    "  elif kind == 'rkl': div = (P * (lP - lq)).sum(-1)\n"
    "  else:\n"
    "      lm = torch.log(beta * q + (1 - beta) * P)\n"
    "      div = beta * (q * (lq - lm)).sum(-1) + (1 - beta) * (P * (lP - lm)).sum(-1)\n"
    "  ce = torch.nn.functional.cross_entropy(zs, y.clamp(min=0), reduction='none')\n"
    "  mask = (y >= 0).double()\n"
    "  row = ((1 - w) * tau * tau * div + w * ce) * mask\n"
    "  row.sum().backward()\n"
    "  np.save(d + '/row_' + cfg + '.npy', row.detach().numpy().astype(np.float32))\n"
    "  np.save(d + '/grad_' + cfg + '.npy', zs.grad.numpy().astype(np.float32))\n";

static void cfg_name(char *buf, size_t n, ml_kd_kind kind, ml_kd_tail tail, float tau, float beta, float w) {
    snprintf(buf, n, "%s:%s:%g:%g:%g", ml_kd_kind_name(kind), ml_kd_tail_name(tail), tau, beta, w);
}

/* the inputs every configuration shares */
static void sparse_inputs(float *zs0, int32_t *ids, float *lt, float *m, int32_t *y) {
    ml_rng r;
    ml_rng_seed(&r, 5);
    float zt[V];
    const int32_t yy[N] = {3, -1, 0, 36, 7, 12};
    memcpy(y, yy, sizeof yy);
    for (int i = 0; i < N * V; i++) zs0[i] = (float)(2.0 * ml_rng_normal(&r));
    for (int n = 0; n < N; n++) {
        for (int v = 0; v < V; v++) zt[v] = (float)(3.0 * ml_rng_normal(&r));
        ml_topk_logprobs(zt, V, K, ids + n * K, lt + n * K, m + n);
    }
}

static void write_sparse_inputs(const char *dir) {
    float zs0[N * V], lt[N * K], m[N];
    int32_t ids[N * K], y[N];
    sparse_inputs(zs0, ids, lt, m, y);
    int64_t shape[2] = {N, V}, kshape[2] = {N, K}, nshape[1] = {N};
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "zs.npy"), zs0, 2, shape), ML_OK);
    assert_int_equal(ml_npy_write_i32(ml_test_path(dir, "ids.npy"), ids, 2, kshape), ML_OK);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "lt.npy"), lt, 2, kshape), ML_OK);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "tail.npy"), m, 1, nshape), ML_OK);
    assert_int_equal(ml_npy_write_i32(ml_test_path(dir, "y.npy"), y, 1, nshape), ML_OK);
    FILE *f = fopen(ml_test_path(dir, "ref.py"), "w");
    fputs(PY, f);
    fclose(f);
}

static void check_sparse(const char *dir, ml_kd_kind kind, ml_kd_tail tail, float tau, float beta, float w) {
    float zs[N * V], zs0[N * V], lt[N * K], m[N], kd[N], ce[N];
    int32_t ids[N * K], y[N];
    sparse_inputs(zs0, ids, lt, m, y);
    char name[64], file[96];
    cfg_name(name, sizeof name, kind, tail, tau, beta, w);
    ml_kd_config c = {kind, tau, beta, w};
    memcpy(zs, zs0, sizeof zs);
    ml_kd_sparse_rows(zs, ids, lt, m, K, kd, ce, y, N, V, &c, tail, 1.0f);
    ml_npy_array row, grad;
    snprintf(file, sizeof file, "row_%s.npy", name);
    assert_int_equal(ml_npy_read(ml_test_path(dir, file), &row), ML_OK);
    snprintf(file, sizeof file, "grad_%s.npy", name);
    assert_int_equal(ml_npy_read(ml_test_path(dir, file), &grad), ML_OK);
    const float *rr = row.data, *gg = grad.data;
    for (int i = 0; i < N; i++) {
        double mine = y[i] < 0 ? 0 : (1 - w) * kd[i] + w * ce[i];
        if (fabs(mine - rr[i]) > 1e-5 * (1 + fabs(rr[i])))
            fail_msg("%s/%s tau %g w %g: row %d loss %.7f vs torch %.7f", ml_kd_kind_name(kind), ml_kd_tail_name(tail),
                     tau, w, i, mine, rr[i]);
    }
    double scale_g = 0, err_g = 0;
    for (int i = 0; i < N * V; i++) {
        scale_g = fmax(scale_g, fabs(gg[i]));
        err_g = fmax(err_g, fabs(zs[i] - gg[i]));
    }
    if (err_g > 1e-5 * scale_g)
        fail_msg("%s/%s tau %g w %g: gradient off by %.3g (scale %.3g)", ml_kd_kind_name(kind), ml_kd_tail_name(tail),
                 tau, w, err_g, scale_g);
    /* loss only: same losses, logits untouched */
    float kd2[N], ce2[N];
    memcpy(zs, zs0, sizeof zs);
    ml_kd_sparse_rows(zs, ids, lt, m, K, kd2, ce2, y, N, V, &c, tail, 0.0f);
    assert_memory_equal(zs, zs0, sizeof zs);
    for (int i = 0; i < N; i++) assert_float_equal(kd2[i], kd[i], 0);
    ml_npy_free(&row);
    ml_npy_free(&grad);
}

static void test_sparse_losses_against_torch(void **state) {
    const char *dir = ml_test_tmpdir("logit_cache");
    const float taus[] = {1.0f, 2.0f};
    write_sparse_inputs(dir);
    char cmd[8192], name[64];
    int len = snprintf(cmd, sizeof cmd, "%s %s/ref.py %s", ML_PYTHON, dir, dir);
    for (int k = 0; k < 3; k++)
        for (int tl = 0; tl < 2; tl++)
            for (int t = 0; t < 2; t++) {
                cfg_name(name, sizeof name, (ml_kd_kind)k, (ml_kd_tail)tl, taus[t], 0.3f, 0.0f);
                len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", name);
                cfg_name(name, sizeof name, (ml_kd_kind)k, (ml_kd_tail)tl, taus[t], 0.6f, 0.25f);
                len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", name);
            }
    assert_int_equal(ml_test_run("%s", cmd), 0); /* one Python start for every configuration */
    for (int k = 0; k < 3; k++)
        for (int tl = 0; tl < 2; tl++)
            for (int t = 0; t < 2; t++) {
                check_sparse(dir, (ml_kd_kind)k, (ml_kd_tail)tl, taus[t], 0.3f, 0.0f);
                check_sparse(dir, (ml_kd_kind)k, (ml_kd_tail)tl, taus[t], 0.6f, 0.25f);
            }
    ml_kd_tail tl;
    assert_int_equal(ml_kd_tail_parse("bucket", &tl), ML_OK);
    assert_int_equal(tl, ML_KD_TAIL_BUCKET);
    assert_int_equal(ml_kd_tail_parse("drop", &tl), ML_ERR_ARG);
}

typedef struct {
    float v;
    int32_t id;
} entry;
static int by_rank(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* brute force: sorted (value desc, id asc), log-softmax in double, tail outside the top k */
static void dense_topk(const float *z, int n, int k, int32_t *ids, double *lp, double *tail) {
    entry *e = malloc(sizeof *e * (size_t)n);
    double mx = -INFINITY, sum = 0, top = 0;
    for (int v = 0; v < n; v++) e[v] = (entry){z[v], v}, mx = fmax(mx, z[v]);
    for (int v = 0; v < n; v++) sum += exp(z[v] - mx);
    qsort(e, (size_t)n, sizeof *e, by_rank);
    for (int i = 0; i < k; i++) {
        ids[i] = e[i].id;
        lp[i] = e[i].v - mx - log(sum);
        top += exp(e[i].v - mx);
    }
    *tail = (sum - top) / sum;
    free(e);
}

static void test_topk_with_ties(void **state) {
    ml_rng r;
    ml_rng_seed(&r, 9);
    enum { VV = 300, KK = 10 };
    float z[VV], lp[KK], tail;
    int32_t ids[KK], want[KK];
    double wlp[KK], wtail;
    for (int rep = 0; rep < 20; rep++) {
        for (int v = 0; v < VV; v++) z[v] = roundf((float)ml_rng_normal(&r) * 4.0f) / 2.0f; /* many ties */
        int k = rep % 3 == 0 ? 1 : rep % 3 == 1 ? 7 : 3;
        ml_topk_logprobs(z, VV, k, ids, lp, &tail);
        dense_topk(z, VV, k, want, wlp, &wtail);
        for (int i = 0; i < k; i++) {
            assert_int_equal(ids[i], want[i]);
            assert_true(fabs(lp[i] - wlp[i]) < 1e-5);
        }
        assert_true(fabs(tail - wtail) < 1e-6);
    }
    /* K = V: no tail */
    ml_topk_logprobs(z, 10, 10, ids, lp, &tail);
    assert_true(tail < 1e-6);
}

/* ---------------------------------------------------------------- the cache end to end */

static const char *dir;
static char shard[4096], shard2[4096], teacher[4096], cache[4096];
enum { B = 2, T = 16, KC = 6, NB = 4 };

static void make_inputs(void) {
    dir = ml_test_tmpdir("logit_cache");
    snprintf(shard, sizeof shard, "%s/train.shard", dir);
    snprintf(shard2, sizeof shard2, "%s/other.shard", dir);
    snprintf(teacher, sizeof teacher, "%s/teacher.h5", dir);
    snprintf(cache, sizeof cache, "%s/cache.h5", dir);
    for (int s = 0; s < 2; s++) {
        ml_shard_writer *w;
        assert_int_equal(ml_shard_writer_open(&w, s ? shard2 : shard), ML_OK);
        assert_int_equal(ml_shard_writer_set_vocab(w, 259), ML_OK);
        assert_int_equal(ml_shard_writer_set_tokenizer(w, "bytes-v1"), ML_OK);
        uint32_t ids[1500];
        for (int i = 0; i < 1500; i++) ids[i] = (uint32_t)((i * 7919u + 13u * s) % 259u);
        assert_int_equal(ml_shard_writer_append_doc(w, ids, 1500), ML_OK);
        assert_int_equal(ml_shard_writer_close(w), ML_OK);
    }
    assert_int_equal(ml_test_run("%s init --config %s/configs/tiny-r1.json --seed 4 --out %s > /dev/null", ML_CLI_PATH,
                                 ML_SOURCE_DIR, teacher),
                     0);
    const char *data[1] = {shard};
    ml_teacher_logits_args a = {.teacher = teacher, .data = data, .n_data = 1, .B = B, .T = T, .K = KC,
                                .batches = NB, .out = cache, .quiet = 1};
    assert_int_equal(ml_teacher_logits(&a), ML_OK);
}

static void test_cache_matches_dense_teacher(void **state) {
    make_inputs();
    ml_logit_cache *c;
    assert_int_equal(ml_logit_cache_open(&c, cache), ML_OK);
    const ml_logit_cache_info *in = ml_logit_cache_get_info(c);
    assert_int_equal(in->B, B);
    assert_int_equal(in->T, T);
    assert_int_equal(in->K, KC);
    assert_int_equal(in->n_batches, NB);
    assert_string_equal(in->tokenizer, "bytes-v1");
    ml_model m;
    assert_int_equal(ml_model_load_any(teacher, &m), ML_OK);
    assert_int_equal(ml_model_reserve(&m, B, T, T), ML_OK);
    const int Vt = m.cfg.vocab_size;
    ml_batch_reader *br;
    const char *data[1] = {shard};
    ml_batch_opts bo = {.B = B, .T = T};
    assert_int_equal(ml_batch_reader_open(&br, data, 1, &bo), ML_OK);
    assert_int_equal(ml_logit_cache_check_run(c, br, 1, B, T, Vt), ML_OK);
    int32_t tok[B * T], tgt[B * T], ids[KC];
    float *logits = malloc(sizeof(float) * B * T * Vt);
    double lp[KC], tail;
    /* everything read in C, for the h5py comparison */
    int32_t *all_ids = malloc(sizeof(int32_t) * NB * B * T * KC);
    float *all_lp = malloc(sizeof(float) * NB * B * T * KC), *all_tail = malloc(sizeof(float) * NB * B * T);
    for (int n = 0; n < NB; n++) {
        ml_data_cursor cur = ml_batch_reader_get_cursor(br);
        assert_int_equal(ml_batch_reader_next(br, tok, tgt, NULL, NULL), ML_OK);
        ml_batch b = {.tokens = tok, .targets = tgt, .B = B, .T = T};
        assert_int_equal(ml_model_forward(&m, &b), ML_OK);
        assert_int_equal(ml_model_logits(&m, &b, logits), ML_OK);
        ml_logit_batch lb;
        assert_int_equal(ml_logit_cache_fetch(c, &cur, tok, &lb), ML_OK);
        for (int i = 0; i < B * T; i++) {
            dense_topk(logits + (size_t)i * Vt, Vt, KC, ids, lp, &tail);
            double sum = 0;
            for (int k = 0; k < KC; k++) {
                assert_int_equal(lb.ids[i * KC + k], ids[k]);
                if (fabs(lb.logprobs[i * KC + k] - lp[k]) > fabs(lp[k]) * 0x1p-11 + 1e-7)
                    fail_msg("batch %d position %d: log-prob %g vs dense %g", n, i, lb.logprobs[i * KC + k], lp[k]);
                sum += exp(lp[k]);
            }
            assert_true(fabs(lb.tail[i] - (1 - sum)) < 1e-6);
            assert_true(fabs(lb.tail[i] - tail) < 1e-6);
        }
        memcpy(all_ids + n * B * T * KC, lb.ids, sizeof(int32_t) * B * T * KC);
        memcpy(all_lp + n * B * T * KC, lb.logprobs, sizeof(float) * B * T * KC);
        memcpy(all_tail + n * B * T, lb.tail, sizeof(float) * B * T);
    }
    /* past the cache: a one-line error naming the cursor */
    ml_data_cursor cur = ml_batch_reader_get_cursor(br);
    assert_int_equal(ml_batch_reader_next(br, tok, tgt, NULL, NULL), ML_OK);
    ml_logit_batch lb;
    assert_int_equal(ml_logit_cache_fetch(c, &cur, tok, &lb), ML_ERR_RANGE);
    /* resume-style random access lands on the same batch; other tokens are refused */
    ml_data_cursor first = {0, 0, 0};
    assert_int_equal(ml_logit_cache_fetch(c, &first, NULL, &lb), ML_OK);
    assert_memory_equal(lb.ids, all_ids, sizeof(int32_t) * B * T * KC);
    tok[0] ^= 1;
    ml_data_cursor second = {0, 0, (uint64_t)B * (T + 1)};
    assert_int_equal(ml_logit_cache_fetch(c, &second, tok, &lb), ML_ERR_ARG);

    /* h5py reads the same numbers */
    int64_t s4[4] = {NB, B, T, KC}, s3[3] = {NB, B, T};
    assert_int_equal(ml_npy_write_i32(ml_test_path(dir, "c_ids.npy"), all_ids, 4, s4), ML_OK);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "c_lp.npy"), all_lp, 4, s4), ML_OK);
    assert_int_equal(ml_npy_write_f32(ml_test_path(dir, "c_tail.npy"), all_tail, 3, s3), ML_OK);
    int rc = ml_test_run("%s -c 'import sys; sys.path.insert(0, \"%s/scripts\"); import teacher_logits_hf as t; "
                         "t._selftest_read(\"%s\", \"%s\")'",
                         ML_PYTHON, ML_SOURCE_DIR, cache, dir);
    if (rc == 77) ml_test_note_skip("h5py comparison: neither hdf5plugin with zstd nor python3-zstandard");
    else assert_int_equal(rc, 0);

    free(logits), free(all_ids), free(all_lp), free(all_tail);
    ml_batch_reader_close(br);

    /* other B, T, data */
    bo.T = T + 1;
    assert_int_equal(ml_batch_reader_open(&br, data, 1, &bo), ML_OK);
    assert_int_equal(ml_logit_cache_check_run(c, br, 1, B, T + 1, Vt), ML_ERR_ARG);
    ml_batch_reader_close(br);
    bo.T = T;
    const char *both[2] = {shard, shard2};
    assert_int_equal(ml_batch_reader_open(&br, both, 2, &bo), ML_OK);
    assert_int_equal(ml_logit_cache_check_run(c, br, 2, B, T, Vt), ML_ERR_ARG);
    assert_int_equal(ml_logit_cache_check_run(c, br, 2, B, T, 300), ML_ERR_ARG);
    ml_batch_reader_close(br);
    ml_logit_cache_close(c);
    ml_model_free(&m);

    /* truncated or not a cache */
    const char *cut = ml_test_path(dir, "cut.h5");
    assert_int_equal(ml_test_run("head -c 3000 %s > %s", cache, cut), 0);
    assert_int_not_equal(ml_logit_cache_open(&c, cut), ML_OK);
    assert_int_not_equal(ml_logit_cache_open(&c, teacher), ML_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_losses_against_torch),
        cmocka_unit_test(test_topk_with_ties),
        cmocka_unit_test(test_cache_matches_dense_teacher),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
