#include "data/batch_reader.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"

struct ml_batch_reader {
    int n;
    ml_shard_reader **sh;
    uint64_t *start;    /* [n+1]: stream offset of each shard's first token; start[n] = total */
    uint64_t *doc_base; /* [n]: global id of each shard's first document */
    uint64_t total, total_docs;
    ml_shard_cache *cache; /* one decoded frame shared by all shards */
    int B, T;
    ml_pos_mode pos_mode;
    uint32_t *row;     /* [T+1] */
    uint64_t *row_doc; /* [T+1] */
    uint64_t pos;      /* stream offset of the next row */
    uint64_t epoch;
};

void ml_batch_reader_close(ml_batch_reader *br) {
    if (!br) return;
    for (int i = 0; i < br->n; i++) ml_shard_close(br->sh[i]);
    ml_shard_cache_free(br->cache);
    free(br->sh);
    free(br->start);
    free(br->doc_base);
    free(br->row);
    free(br->row_doc);
    free(br);
}

static ml_status open_all(ml_batch_reader *br, const char *const *paths, int n, const ml_batch_opts *o) {
    if (n < 1) return ml_fail(ML_ERR_ARG, "batch reader: no shards given");
    if (o->B < 1 || o->T < 1 || (int64_t)o->B * o->T > INT32_MAX)
        return ml_fail(ML_ERR_ARG, "batch reader: B=%d and T=%d must be positive with B*T < 2^31", o->B, o->T);
    if (o->pos_mode != ML_POS_ROW && o->pos_mode != ML_POS_DOC)
        return ml_fail(ML_ERR_ARG, "batch reader: unknown position mode %d", (int)o->pos_mode);
    br->B = o->B;
    br->T = o->T;
    br->pos_mode = o->pos_mode;
    br->sh = calloc((size_t)n, sizeof *br->sh);
    br->start = calloc((size_t)n + 1, sizeof *br->start);
    br->doc_base = calloc((size_t)n, sizeof *br->doc_base);
    br->row = malloc(((size_t)o->T + 1) * sizeof *br->row);
    br->row_doc = malloc(((size_t)o->T + 1) * sizeof *br->row_doc);
    if (!br->sh || !br->start || !br->doc_base || !br->row || !br->row_doc)
        return ml_fail(ML_ERR_NOMEM, "out of memory opening %d shards", n);
    uint32_t cache_tokens = 0;
    uint64_t cache_bytes = 0;
    for (int i = 0; i < n; i++) {
        ML_TRY(ml_shard_open(&br->sh[i], paths[i]));
        br->n = i + 1;
        const ml_shard_info *in = ml_shard_get_info(br->sh[i]);
        if (i > 0) ML_TRY(ml_shard_check_compatible(br->sh[0], br->sh[i]));
        if (in->vocab_size > (uint32_t)INT32_MAX)
            return ml_fail(ML_ERR_RANGE, "%s: vocab size %u does not fit int32 ids", paths[i], in->vocab_size);
        br->start[i + 1] = br->start[i] + in->n_tokens;
        br->doc_base[i] = br->total_docs;
        br->total_docs += in->n_docs;
        uint64_t ft = in->n_tokens < in->frame_tokens ? in->n_tokens : in->frame_tokens;
        if (ft > cache_tokens) cache_tokens = (uint32_t)ft;
        if (in->max_frame_bytes > cache_bytes) cache_bytes = in->max_frame_bytes;
    }
    br->total = br->start[n];
    uint64_t need = (uint64_t)o->B * ((uint64_t)o->T + 1);
    if (br->total < need)
        return ml_fail(ML_ERR_RANGE, "not enough data: %d shard(s) hold %" PRIu64 " tokens, one batch of B=%d rows of T+1=%d tokens needs %" PRIu64,
                       n, br->total, o->B, o->T + 1, need);
    ML_TRY(ml_shard_cache_new(&br->cache, cache_tokens, cache_bytes));
    for (int i = 0; i < n; i++) ML_TRY(ml_shard_use_cache(br->sh[i], br->cache));
    return ML_OK;
}

ml_status ml_batch_reader_open(ml_batch_reader **out, const char *const *paths, int n_paths, const ml_batch_opts *opts) {
    *out = NULL;
    ml_batch_reader *br = calloc(1, sizeof *br);
    if (!br) return ml_fail(ML_ERR_NOMEM, "out of memory opening the batch reader");
    ml_status s = open_all(br, paths, n_paths, opts);
    if (s != ML_OK) {
        ml_batch_reader_close(br);
        return s;
    }
    *out = br;
    return ML_OK;
}

/* The shard holding stream offset p < total (empty shards are skipped). */
static int shard_of(const ml_batch_reader *br, uint64_t p) {
    int lo = 0, hi = br->n - 1; /* first i with start[i+1] > p */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (br->start[mid + 1] > p) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Read T+1 tokens from stream offset p into br->row (and their global doc ids if asked). */
static ml_status read_row(ml_batch_reader *br, uint64_t p, int want_docs) {
    size_t need = (size_t)br->T + 1, k = 0;
    int s = shard_of(br, p);
    while (k < need) {
        while (br->start[s + 1] <= p) s++; /* next non-empty shard */
        ml_shard_reader *r = br->sh[s];
        uint64_t off = p - br->start[s], avail = br->start[s + 1] - p;
        size_t take = need - k < avail ? need - k : (size_t)avail;
        ML_TRY(ml_shard_read_u32(r, br->row + k, off, take));
        if (want_docs) {
            const uint64_t *ds = ml_shard_doc_starts(r);
            uint64_t nd = ml_shard_get_info(r)->n_docs, d = ml_shard_doc_of_token(r, off);
            for (size_t j = 0; j < take; j++) {
                while (d + 1 < nd && ds[d + 1] <= off + j) d++;
                br->row_doc[k + j] = br->doc_base[s] + d;
            }
        }
        k += take;
        p += take;
    }
    return ML_OK;
}

ml_status ml_batch_reader_next(ml_batch_reader *br, int32_t *inputs, int32_t *targets, int32_t *doc_ids,
                               int32_t *positions) {
    int want_docs = doc_ids || (positions && br->pos_mode == ML_POS_DOC);
    if (doc_ids && br->total_docs > (uint64_t)INT32_MAX)
        return ml_fail(ML_ERR_RANGE, "batch reader: %" PRIu64 " documents do not fit int32 document ids", br->total_docs);
    const int T = br->T;
    const uint64_t pos0 = br->pos, epoch0 = br->epoch;
    for (int b = 0; b < br->B; b++) {
        ml_status s = read_row(br, br->pos, want_docs);
        if (s != ML_OK) { /* a failed batch does not move the cursor */
            br->pos = pos0;
            br->epoch = epoch0;
            return s;
        }
        int32_t *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            in[t] = (int32_t)br->row[t];
            tg[t] = (int32_t)br->row[t + 1];
        }
        if (doc_ids)
            for (int t = 0; t < T; t++) doc_ids[(size_t)b * T + t] = (int32_t)br->row_doc[t];
        if (positions) {
            int32_t *ps = positions + (size_t)b * T;
            if (br->pos_mode == ML_POS_ROW) {
                for (int t = 0; t < T; t++) ps[t] = t;
            } else {
                int32_t q = 0;
                for (int t = 0; t < T; t++) {
                    if (t > 0 && br->row_doc[t] != br->row_doc[t - 1]) q = 0;
                    ps[t] = q++;
                }
            }
        }
        br->pos += (uint64_t)T + 1;
        if (br->pos + (uint64_t)T + 1 > br->total) {
            br->pos = 0;
            br->epoch++;
        }
    }
    return ML_OK;
}

void ml_batch_reader_skip(ml_batch_reader *br, int64_t n) {
    const uint64_t row = (uint64_t)br->T + 1;
    for (int64_t i = 0; i < n * br->B; i++) {
        br->pos += row;
        if (br->pos + row > br->total) {
            br->pos = 0;
            br->epoch++;
        }
    }
}

ml_data_cursor ml_batch_reader_get_cursor(const ml_batch_reader *br) {
    int s = shard_of(br, br->pos);
    ml_data_cursor c = {br->epoch, (uint64_t)s, br->pos - br->start[s]};
    return c;
}

ml_status ml_batch_reader_set_cursor(ml_batch_reader *br, const ml_data_cursor *c) {
    if (c->shard >= (uint64_t)br->n)
        return ml_fail(ML_ERR_RANGE, "data cursor names shard %" PRIu64 " but there are %d shards", c->shard, br->n);
    uint64_t len = br->start[c->shard + 1] - br->start[c->shard];
    if (c->offset > len)
        return ml_fail(ML_ERR_RANGE, "data cursor offset %" PRIu64 " is beyond the %" PRIu64 " tokens of %s", c->offset, len,
                       ml_shard_path(br->sh[c->shard]));
    uint64_t p = br->start[c->shard] + c->offset;
    if (p + (uint64_t)br->T + 1 > br->total)
        return ml_fail(ML_ERR_RANGE, "data cursor (shard %" PRIu64 ", offset %" PRIu64 ") leaves fewer than T+1=%d tokens of %" PRIu64
                       " (different data or T?)", c->shard, c->offset, br->T + 1, br->total);
    br->pos = p;
    br->epoch = c->epoch;
    return ML_OK;
}

uint64_t ml_batch_reader_total_tokens(const ml_batch_reader *br) { return br->total; }
uint64_t ml_batch_reader_total_docs(const ml_batch_reader *br) { return br->total_docs; }
uint32_t ml_batch_reader_vocab_size(const ml_batch_reader *br) { return ml_shard_get_info(br->sh[0])->vocab_size; }
const char *ml_batch_reader_tokenizer(const ml_batch_reader *br) { return ml_shard_get_info(br->sh[0])->tokenizer; }
