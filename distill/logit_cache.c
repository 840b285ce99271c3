#include "distill/logit_cache.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "data/shard.h"
#include "distill/kd_loss.h"
#include "formats/h5.h"
#include "formats/half.h"

#define ZSTD_LEVEL 3

uint64_t ml_logit_cache_token_hash(const int32_t *tokens, int64_t n) {
    uint64_t h = ML_FNV1A64_INIT;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)tokens[i];
        uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        h = ml_fnv1a64(h, b, 4);
    }
    return h;
}

/* ---------------------------------------------------------------- top K of a row */

/* a before b in the output order: larger logit, then lower id */
static inline int ahead(float va, int32_t ia, float vb, int32_t ib) { return va > vb || (va == vb && ia < ib); }

/* min-heap on the output order: the root is the entry that leaves first */
static void sift_down(float *v, int32_t *id, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ahead(v[m], id[m], v[l], id[l])) m = l;
        if (r < n && ahead(v[m], id[m], v[r], id[r])) m = r;
        if (m == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[m], id[i] = id[m], v[m] = tv, id[m] = ti;
        i = m;
    }
}

void ml_topk_logprobs(const float *z, int V, int K, int32_t *ids, float *lp, float *tail) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, z[v]);
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)(z[v] - mx));
    /* heap of the K best so far, in lp (as raw logits) and ids */
    for (int k = 0; k < K; k++) lp[k] = z[k], ids[k] = k;
    for (int i = K / 2 - 1; i >= 0; i--) sift_down(lp, ids, K, i);
    for (int v = K; v < V; v++)
        if (ahead(z[v], v, lp[0], ids[0])) {
            lp[0] = z[v], ids[0] = v;
            sift_down(lp, ids, K, 0);
        }
    /* pop into descending order (the root is the worst: fill from the back) */
    for (int n = K; n > 1; n--) {
        float tv = lp[0];
        int32_t ti = ids[0];
        lp[0] = lp[n - 1], ids[0] = ids[n - 1];
        lp[n - 1] = tv, ids[n - 1] = ti;
        sift_down(lp, ids, n - 1, 0);
    }
    const double lse = mx + log(sum);
    double top = 0;
    for (int k = 0; k < K; k++) {
        top += exp((double)(lp[k] - mx));
        lp[k] = (float)((double)lp[k] - lse);
    }
    double t = (sum - top) / sum;
    *tail = (float)(t > 0 ? t : 0);
}

/* ---------------------------------------------------------------- writer */

struct ml_logit_cache_writer {
    ml_atomic_file af;
    ml_h5 *f;
    ml_logit_cache_info info;
    uint16_t *lp16;
};

static ml_status write_header(ml_h5 *f, const ml_logit_cache_info *in, const char *teacher_config) {
    ML_TRY(ml_h5_set_attr_str(f, "/", "format", ML_LOGIT_CACHE_FORMAT));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "version", ML_LOGIT_CACHE_VERSION));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "batch", in->B));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "seq", in->T));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "topk", in->K));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "vocab_size", in->vocab_size));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "data_tokens", (int64_t)in->data_tokens));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "data_shards", in->data_shards));
    ML_TRY(ml_h5_set_attr_str(f, "/", "tokenizer", in->tokenizer));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "cursor_epoch", (int64_t)in->start.epoch));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "cursor_shard", (int64_t)in->start.shard));
    ML_TRY(ml_h5_set_attr_i64(f, "/", "cursor_offset", (int64_t)in->start.offset));
    ML_TRY(ml_h5_set_attr_str(f, "/", "teacher", in->teacher));
    ML_TRY(ml_h5_set_attr_str(f, "/", "teacher_name", in->teacher_name));
    ML_TRY(ml_h5_set_attr_str(f, "/", "teacher_config", teacher_config ? teacher_config : ""));
    ML_TRY(ml_h5_set_attr_f64(f, "/", "logit_temperature", 1.0));
    const int64_t btk[3] = {in->B, in->T, in->K}, three[1] = {3};
    ML_TRY(ml_h5_create_rows(f, "ids", ML_H5_I32, 3, btk, 1, ZSTD_LEVEL));
    ML_TRY(ml_h5_create_rows(f, "logprobs", ML_H5_F16, 3, btk, 1, ZSTD_LEVEL));
    ML_TRY(ml_h5_create_rows(f, "tail", ML_H5_F32, 2, btk, 1, ZSTD_LEVEL));
    ML_TRY(ml_h5_create_rows(f, "cursor", ML_H5_I64, 1, three, 1024, 0));
    ML_TRY(ml_h5_create_rows(f, "token_hash", ML_H5_U64, 0, NULL, 1024, 0));
    return ML_OK;
}

ml_status ml_logit_cache_create(ml_logit_cache_writer **out, const char *path, const ml_logit_cache_info *info,
                                const char *teacher_config_json) {
    *out = NULL;
    if (info->B < 1 || info->T < 1 || info->K < 1 || info->K > info->vocab_size || info->K > 65536)
        return ml_fail(ML_ERR_ARG, "logit cache %s: bad shape B=%d T=%d K=%d (vocabulary %d)", path, info->B, info->T,
                       info->K, info->vocab_size);
    ml_logit_cache_writer *w = calloc(1, sizeof *w);
    if (!w) return ml_fail(ML_ERR_NOMEM, "out of memory");
    w->info = *info;
    w->lp16 = malloc(sizeof(uint16_t) * (size_t)info->B * info->T * info->K);
    ml_status s = w->lp16 ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory for a logit-cache batch");
    if (s == ML_OK) s = ml_atomic_begin(&w->af, path, 0);
    if (s != ML_OK) {
        free(w->lp16);
        free(w);
        return s;
    }
    s = ml_h5_create(&w->f, w->af.tmp_path);
    if (s == ML_OK) s = write_header(w->f, info, teacher_config_json);
    if (s != ML_OK) {
        ml_logit_cache_abort(w);
        return s;
    }
    *out = w;
    return ML_OK;
}

ml_status ml_logit_cache_append(ml_logit_cache_writer *w, const ml_data_cursor *c, const int32_t *tokens,
                                const int32_t *ids, const float *logprobs, const float *tail) {
    const int64_t n = (int64_t)w->info.B * w->info.T;
    ml_f32_to_f16_n(w->lp16, logprobs, (size_t)(n * w->info.K));
    int64_t cur[3] = {(int64_t)c->epoch, (int64_t)c->shard, (int64_t)c->offset};
    uint64_t h = ml_logit_cache_token_hash(tokens, n);
    ML_TRY(ml_h5_append_rows(w->f, "ids", ML_H5_I32, 1, ids));
    ML_TRY(ml_h5_append_rows(w->f, "logprobs", ML_H5_F16, 1, w->lp16));
    ML_TRY(ml_h5_append_rows(w->f, "tail", ML_H5_F32, 1, tail));
    ML_TRY(ml_h5_append_rows(w->f, "cursor", ML_H5_I64, 1, cur));
    ML_TRY(ml_h5_append_rows(w->f, "token_hash", ML_H5_U64, 1, &h));
    return ML_OK;
}

ml_status ml_logit_cache_commit(ml_logit_cache_writer *w) {
    ml_status s = ml_h5_close(w->f);
    w->f = NULL;
    if (s == ML_OK) s = ml_atomic_commit(&w->af);
    else ml_atomic_abort(&w->af);
    ml_atomic_unregister_cleanup(w->af.tmp_path);
    free(w->lp16);
    free(w);
    return s;
}

void ml_logit_cache_abort(ml_logit_cache_writer *w) {
    if (!w) return;
    ml_h5_close(w->f);
    ml_atomic_abort(&w->af);
    ml_atomic_unregister_cleanup(w->af.tmp_path);
    free(w->lp16);
    free(w);
}

/* ---------------------------------------------------------------- reader */

struct ml_logit_cache {
    ml_h5 *f;
    ml_logit_cache_info info;
    int64_t *cursors; /* [N, 3] */
    uint64_t *hashes; /* [N] */
    int64_t next;     /* the batch expected next (sequential reads skip the search) */
    int32_t *ids;
    uint16_t *lp16;
    float *lp, *tail;
};

void ml_logit_cache_close(ml_logit_cache *c) {
    if (!c) return;
    ml_h5_close(c->f);
    free(c->cursors);
    free(c->hashes);
    free(c->ids);
    free(c->lp16);
    free(c->lp);
    free(c->tail);
    free(c);
}

static ml_status get_int(ml_h5 *f, const char *name, int64_t lo, int64_t hi, int64_t *v) {
    ML_TRY(ml_h5_get_attr_i64(f, "/", name, v));
    if (*v < lo || *v > hi)
        return ml_fail(ML_ERR_FORMAT, "%s: attribute %s = %lld out of range [%lld, %lld]", ml_h5_path(f), name,
                       (long long)*v, (long long)lo, (long long)hi);
    return ML_OK;
}

static ml_status get_str(ml_h5 *f, const char *name, char *buf, size_t cap) {
    char *v;
    ML_TRY(ml_h5_get_attr_str(f, "/", name, &v));
    snprintf(buf, cap, "%s", v);
    free(v);
    return ML_OK;
}

/* dataset `name` must be `dt` of shape [N, dims...] */
static ml_status check_ds(ml_h5 *f, const char *name, ml_h5_dtype dt, int nd, const int64_t *dims, int64_t *N) {
    int got_nd;
    int64_t sh[ML_H5_MAX_DIMS];
    ml_h5_dtype got;
    ML_TRY(ml_h5_dataset_info(f, name, &got_nd, sh, &got));
    int ok = got == dt && got_nd == nd + 1;
    for (int i = 0; ok && i < nd; i++) ok = sh[i + 1] == dims[i];
    if (!ok)
        return ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' has the wrong type or shape for a logit cache", ml_h5_path(f),
                       name);
    if (*N >= 0 && sh[0] != *N)
        return ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' holds %lld batches, the others %lld (truncated cache?)",
                       ml_h5_path(f), name, (long long)sh[0], (long long)*N);
    *N = sh[0];
    return ML_OK;
}

static ml_status open_cache(ml_logit_cache *c, const char *path) {
    ML_TRY(ml_h5_open_read(&c->f, path));
    ml_h5 *f = c->f;
    char fmt[64] = "";
    if (!ml_h5_has_attr(f, "/", "format") || get_str(f, "format", fmt, sizeof fmt) != ML_OK ||
        strcmp(fmt, ML_LOGIT_CACHE_FORMAT) != 0)
        return ml_fail(ML_ERR_FORMAT, "%s is not a teacher-logit cache (no format attribute '%s')", path,
                       ML_LOGIT_CACHE_FORMAT);
    int64_t v;
    ML_TRY(ml_h5_get_attr_i64(f, "/", "version", &v));
    if (v != ML_LOGIT_CACHE_VERSION)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: logit cache version %lld is not supported (this build reads %d)", path,
                       (long long)v, ML_LOGIT_CACHE_VERSION);
    ml_logit_cache_info *in = &c->info;
    ML_TRY(get_int(f, "batch", 1, INT32_MAX, &v));
    in->B = (int)v;
    ML_TRY(get_int(f, "seq", 1, INT32_MAX, &v));
    in->T = (int)v;
    ML_TRY(get_int(f, "vocab_size", 1, INT32_MAX, &v));
    in->vocab_size = (int)v;
    ML_TRY(get_int(f, "topk", 1, in->vocab_size < 65536 ? in->vocab_size : 65536, &v));
    in->K = (int)v;
    if ((double)in->B * in->T * in->K > 2147483647.0)
        return ml_fail(ML_ERR_FORMAT, "%s: batch of %d x %d x %d entries is too large", path, in->B, in->T, in->K);
    ML_TRY(get_int(f, "data_tokens", 0, INT64_MAX, &v));
    in->data_tokens = (uint64_t)v;
    ML_TRY(get_int(f, "data_shards", 1, INT32_MAX, &v));
    in->data_shards = (int)v;
    ML_TRY(get_int(f, "cursor_epoch", 0, INT64_MAX, &v));
    in->start.epoch = (uint64_t)v;
    ML_TRY(get_int(f, "cursor_shard", 0, INT64_MAX, &v));
    in->start.shard = (uint64_t)v;
    ML_TRY(get_int(f, "cursor_offset", 0, INT64_MAX, &v));
    in->start.offset = (uint64_t)v;
    ML_TRY(get_str(f, "tokenizer", in->tokenizer, sizeof in->tokenizer));
    ML_TRY(get_str(f, "teacher", in->teacher, sizeof in->teacher));
    ML_TRY(get_str(f, "teacher_name", in->teacher_name, sizeof in->teacher_name));
    const int64_t btk[3] = {in->B, in->T, in->K}, three[1] = {3};
    int64_t N = -1;
    ML_TRY(check_ds(f, "ids", ML_H5_I32, 3, btk, &N));
    ML_TRY(check_ds(f, "logprobs", ML_H5_F16, 3, btk, &N));
    ML_TRY(check_ds(f, "tail", ML_H5_F32, 2, btk, &N));
    ML_TRY(check_ds(f, "cursor", ML_H5_I64, 1, three, &N));
    ML_TRY(check_ds(f, "token_hash", ML_H5_U64, 0, NULL, &N));
    if (N < 1) return ml_fail(ML_ERR_FORMAT, "%s: the logit cache holds no batches", path);
    in->n_batches = N;
    const size_t n = (size_t)in->B * in->T, nk = n * (size_t)in->K;
    c->cursors = malloc(sizeof(int64_t) * 3 * (size_t)N);
    c->hashes = malloc(sizeof(uint64_t) * (size_t)N);
    c->ids = malloc(sizeof(int32_t) * nk);
    c->lp16 = malloc(sizeof(uint16_t) * nk);
    c->lp = malloc(sizeof(float) * nk);
    c->tail = malloc(sizeof(float) * n);
    if (!c->cursors || !c->hashes || !c->ids || !c->lp16 || !c->lp || !c->tail)
        return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", path);
    ML_TRY(ml_h5_read_rows(f, "cursor", ML_H5_I64, 0, N, c->cursors));
    ML_TRY(ml_h5_read_rows(f, "token_hash", ML_H5_U64, 0, N, c->hashes));
    return ML_OK;
}

ml_status ml_logit_cache_open(ml_logit_cache **out, const char *path) {
    *out = NULL;
    ml_logit_cache *c = calloc(1, sizeof *c);
    if (!c) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = open_cache(c, path);
    if (s != ML_OK) {
        ml_logit_cache_close(c);
        return s;
    }
    *out = c;
    return ML_OK;
}

const ml_logit_cache_info *ml_logit_cache_get_info(const ml_logit_cache *c) { return &c->info; }

ml_status ml_logit_cache_check_run(const ml_logit_cache *c, const ml_batch_reader *br, int n_shards, int B, int T,
                                   int vocab_size) {
    const ml_logit_cache_info *in = &c->info;
    const char *p = ml_h5_path(c->f);
    if (in->B != B || in->T != T)
        return ml_fail(ML_ERR_ARG, "logit cache %s was made for batches of %d x %d, this run uses %d x %d", p, in->B,
                       in->T, B, T);
    if (in->data_tokens != ml_batch_reader_total_tokens(br) || in->data_shards != n_shards ||
        strcmp(in->tokenizer, ml_batch_reader_tokenizer(br)) != 0)
        return ml_fail(ML_ERR_ARG,
                       "logit cache %s was made from other data (%d shard(s), %" PRIu64 " tokens, tokenizer %s; "
                       "this run: %d, %" PRIu64 ", %s)",
                       p, in->data_shards, in->data_tokens, in->tokenizer, n_shards, ml_batch_reader_total_tokens(br),
                       ml_batch_reader_tokenizer(br));
    if (in->vocab_size != vocab_size)
        return ml_fail(ML_ERR_ARG, "logit cache %s has a vocabulary of %d, the student %d", p, in->vocab_size,
                       vocab_size);
    if (in->K > ML_KD_MAX_TOPK)
        return ml_fail(ML_ERR_UNSUPPORTED, "logit cache %s holds the top %d; distillation takes at most %d", p, in->K,
                       ML_KD_MAX_TOPK);
    return ML_OK;
}

ml_status ml_logit_cache_read(ml_logit_cache *c, int64_t index, ml_logit_batch *out) {
    const ml_logit_cache_info *in = &c->info;
    if (index < 0 || index >= in->n_batches)
        return ml_fail(ML_ERR_RANGE, "logit cache %s holds %lld batches, batch %lld asked for", ml_h5_path(c->f),
                       (long long)in->n_batches, (long long)index);
    ML_TRY(ml_h5_read_rows(c->f, "ids", ML_H5_I32, index, 1, c->ids));
    ML_TRY(ml_h5_read_rows(c->f, "logprobs", ML_H5_F16, index, 1, c->lp16));
    ML_TRY(ml_h5_read_rows(c->f, "tail", ML_H5_F32, index, 1, c->tail));
    const size_t n = (size_t)in->B * in->T, nk = n * (size_t)in->K;
    ml_f16_to_f32_n(c->lp, c->lp16, nk);
    int bad = 0;
    for (size_t i = 0; i < nk; i++) bad |= (uint32_t)c->ids[i] >= (uint32_t)in->vocab_size || !(c->lp[i] <= 0.0f);
    for (size_t i = 0; i < n; i++) bad |= !(c->tail[i] >= 0.0f && c->tail[i] <= 1.0f);
    if (bad)
        return ml_fail(ML_ERR_FORMAT, "logit cache %s: batch %lld holds an id outside the vocabulary or a bad "
                       "probability", ml_h5_path(c->f), (long long)index);
    out->ids = c->ids;
    out->logprobs = c->lp;
    out->tail = c->tail;
    c->next = index + 1;
    return ML_OK;
}

static int cursor_cmp(const int64_t *a, const ml_data_cursor *b) {
    const uint64_t x[3] = {(uint64_t)a[0], (uint64_t)a[1], (uint64_t)a[2]}, y[3] = {b->epoch, b->shard, b->offset};
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

ml_status ml_logit_cache_fetch(ml_logit_cache *c, const ml_data_cursor *cur, const int32_t *tokens, ml_logit_batch *out) {
    const int64_t N = c->info.n_batches;
    int64_t idx = -1;
    if (c->next < N && cursor_cmp(c->cursors + 3 * c->next, cur) == 0) {
        idx = c->next;
    } else { /* cursors grow in data order */
        int64_t lo = 0, hi = N - 1;
        while (lo <= hi) {
            int64_t mid = lo + (hi - lo) / 2;
            int r = cursor_cmp(c->cursors + 3 * mid, cur);
            if (r == 0) {
                idx = mid;
                break;
            }
            if (r < 0) lo = mid + 1;
            else hi = mid - 1;
        }
    }
    if (idx < 0)
        return ml_fail(ML_ERR_RANGE,
                       "logit cache %s has no batch at data cursor (epoch %" PRIu64 ", shard %" PRIu64 ", offset %" PRIu64
                       "): it holds %lld batches from (epoch %" PRIu64 ", shard %" PRIu64 ", offset %" PRIu64 ")",
                       ml_h5_path(c->f), cur->epoch, cur->shard, cur->offset, (long long)N, c->info.start.epoch,
                       c->info.start.shard, c->info.start.offset);
    if (tokens && ml_logit_cache_token_hash(tokens, (int64_t)c->info.B * c->info.T) != c->hashes[idx])
        return ml_fail(ML_ERR_ARG, "logit cache %s: batch %lld was made from other tokens than this run reads (other data?)",
                       ml_h5_path(c->f), (long long)idx);
    return ml_logit_cache_read(c, idx, out);
}
