#include "data/mixture_loader.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "data/shard.h"

/* ---------------------------------------------------------------- spec strings */

void ml_mixture_source_free(ml_mixture_source *s) {
    if (!s) return;
    for (int i = 0; i < s->n_paths; i++) free(s->paths[i]);
    free(s->paths);
    memset(s, 0, sizeof *s);
}

static int parse_weight(const char *s, size_t n, double *w) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno) return 0;
    *w = v;
    return 1;
}

ml_status ml_mixture_parse_source(const char *spec, ml_mixture_source *out) {
    memset(out, 0, sizeof *out);
    const char *usage = "expected SHARD[,SHARD...]:WEIGHT[:DOMAIN]";
    const char *c1 = strrchr(spec, ':');
    if (!c1) return ml_fail(ML_ERR_ARG, "source '%s': no weight (%s)", spec, usage);
    const char *paths_end;
    double w;
    if (parse_weight(c1 + 1, strlen(c1 + 1), &w)) {
        paths_end = c1;
    } else {
        const char *c2 = c1;
        while (c2 > spec && c2[-1] != ':') c2--;
        if (c2 == spec || !parse_weight(c2, (size_t)(c1 - c2), &w))
            return ml_fail(ML_ERR_ARG, "source '%s': no numeric weight (%s)", spec, usage);
        size_t dl = strlen(c1 + 1);
        if (dl == 0 || dl >= ML_MIXTURE_MAX_DOMAIN)
            return ml_fail(ML_ERR_ARG, "source '%s': domain must be 1..%d characters", spec, ML_MIXTURE_MAX_DOMAIN - 1);
        memcpy(out->domain, c1 + 1, dl + 1);
        paths_end = c2 - 1;
    }
    if (!(w > 0) || !isfinite(w)) return ml_fail(ML_ERR_ARG, "source '%s': weight %g must be positive", spec, w);
    out->weight = w;
    if (paths_end == spec) return ml_fail(ML_ERR_ARG, "source '%s': no shard (%s)", spec, usage);
    int n = 1;
    for (const char *p = spec; p < paths_end; p++) n += *p == ',';
    out->paths = calloc((size_t)n, sizeof *out->paths);
    if (!out->paths) return ml_fail(ML_ERR_NOMEM, "out of memory parsing source '%s'", spec);
    const char *p = spec;
    while (p <= paths_end) {
        const char *e = p;
        while (e < paths_end && *e != ',') e++;
        if (e == p) {
            ml_mixture_source_free(out);
            return ml_fail(ML_ERR_ARG, "source '%s': empty shard name (%s)", spec, usage);
        }
        char *s = malloc((size_t)(e - p) + 1);
        if (!s) {
            ml_mixture_source_free(out);
            return ml_fail(ML_ERR_NOMEM, "out of memory parsing source '%s'", spec);
        }
        memcpy(s, p, (size_t)(e - p));
        s[e - p] = 0;
        out->paths[out->n_paths++] = s;
        p = e + 1;
    }
    return ML_OK;
}

/* ---------------------------------------------------------------- the loader */

typedef struct {
    ml_batch_reader *br; /* B=1: reads one row at a stream offset */
    int n_shards;
    uint64_t *start; /* [n_shards+1] stream offset of each shard */
    uint64_t total, doc_base;
    double weight;
    char domain[ML_MIXTURE_MAX_DOMAIN];
    /* state */
    uint64_t epoch, pos, rows;
    uint64_t batch_rows;
} source;

typedef struct {
    int64_t src;
    uint64_t pos;
} row_ref;

struct ml_mixture {
    int n;
    source *s;
    double *cum; /* [n] cumulative normalised weights; cum[n-1] = 1 */
    int B, T, R;
    ml_pos_mode pos_mode;
    ml_rng rng;
    row_ref *buf; /* [R] */
    int fill;
    int *row_src; /* [B] */
    int64_t *snap; /* [state size]: for undoing a failed batch */
    uint32_t vocab;
    char tokenizer[ML_SHARD_MAX_STR];
};

#define MIX_MAGIC 0x4d4c4d4958ll /* "MLMIX" */
#define MIX_VERSION 1
#define MIX_HEAD 10
#define MIX_PER_SOURCE 4

void ml_mixture_close(ml_mixture *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        ml_batch_reader_close(m->s[i].br);
        free(m->s[i].start);
    }
    free(m->s);
    free(m->cum);
    free(m->buf);
    free(m->row_src);
    free(m->snap);
    free(m);
}

/* Shard sizes, domain label and tokenizer of a source; checks it against the first shard seen. */
static ml_status scan_source(ml_mixture *m, int i, const ml_mixture_source *src, ml_shard_reader **first) {
    source *s = &m->s[i];
    s->n_shards = src->n_paths;
    s->start = calloc((size_t)src->n_paths + 1, sizeof *s->start);
    if (!s->start) return ml_fail(ML_ERR_NOMEM, "out of memory opening source %d", i);
    for (int k = 0; k < src->n_paths; k++) {
        ml_shard_reader *r = NULL;
        ML_TRY(ml_shard_open(&r, src->paths[k]));
        const ml_shard_info *in = ml_shard_get_info(r);
        ml_status st = ML_OK;
        if (!*first) {
            *first = r;
            m->vocab = in->vocab_size;
            snprintf(m->tokenizer, sizeof m->tokenizer, "%s", in->tokenizer);
        } else {
            st = ml_shard_check_compatible(*first, r);
        }
        if (k == 0 && !s->domain[0]) {
            if (in->domain[0]) snprintf(s->domain, sizeof s->domain, "%s", in->domain);
            else snprintf(s->domain, sizeof s->domain, "source%d", i);
        }
        s->start[k + 1] = s->start[k] + in->n_tokens;
        if (r != *first) ml_shard_close(r);
        ML_TRY(st);
    }
    s->total = s->start[src->n_paths];
    return ML_OK;
}

static ml_status open_all(ml_mixture *m, const ml_mixture_source *src, int n, const ml_mixture_opts *o) {
    if (n < 1) return ml_fail(ML_ERR_ARG, "mixture: no sources given");
    if (n > ML_MIXTURE_MAX_SOURCES) return ml_fail(ML_ERR_ARG, "mixture: %d sources, at most %d", n, ML_MIXTURE_MAX_SOURCES);
    if (o->B < 1 || o->T < 1 || (int64_t)o->B * o->T > INT32_MAX)
        return ml_fail(ML_ERR_ARG, "mixture: B=%d and T=%d must be positive with B*T < 2^31", o->B, o->T);
    if (o->shuffle_rows < 0 || o->shuffle_rows > (1 << 24))
        return ml_fail(ML_ERR_ARG, "mixture: shuffle buffer of %d rows (0..%d)", o->shuffle_rows, 1 << 24);
    m->B = o->B;
    m->T = o->T;
    m->R = o->shuffle_rows;
    m->pos_mode = o->pos_mode;
    ml_rng_seed(&m->rng, o->seed ^ 0x6d69787475726531ull);
    m->s = calloc((size_t)n, sizeof *m->s);
    m->cum = calloc((size_t)n, sizeof *m->cum);
    m->buf = calloc((size_t)(m->R ? m->R : 1), sizeof *m->buf);
    m->row_src = calloc((size_t)o->B, sizeof *m->row_src);
    if (!m->s || !m->cum || !m->buf || !m->row_src) return ml_fail(ML_ERR_NOMEM, "out of memory opening %d sources", n);
    double wsum = 0;
    for (int i = 0; i < n; i++) {
        if (!(src[i].weight > 0) || !isfinite(src[i].weight))
            return ml_fail(ML_ERR_ARG, "mixture source %d (%s): weight %g must be positive", i,
                           src[i].n_paths ? src[i].paths[0] : "?", src[i].weight);
        if (src[i].n_paths < 1) return ml_fail(ML_ERR_ARG, "mixture source %d: no shards", i);
        wsum += src[i].weight;
    }
    ml_shard_reader *first = NULL;
    ml_status st = ML_OK;
    for (int i = 0; i < n && st == ML_OK; i++) {
        m->n = i + 1;
        snprintf(m->s[i].domain, sizeof m->s[i].domain, "%s", src[i].domain);
        m->s[i].weight = src[i].weight / wsum;
        st = scan_source(m, i, &src[i], &first);
    }
    ml_shard_close(first);
    ML_TRY(st);
    double c = 0;
    for (int i = 0; i < n; i++) {
        c += m->s[i].weight;
        m->cum[i] = c;
    }
    m->cum[n - 1] = 1.0;
    ml_batch_opts bo = {.B = 1, .T = o->T, .pos_mode = o->pos_mode};
    uint64_t docs = 0;
    for (int i = 0; i < n; i++) {
        source *s = &m->s[i];
        ml_status r = ml_batch_reader_open(&s->br, (const char *const *)src[i].paths, src[i].n_paths, &bo);
        if (r != ML_OK) return ml_fail_context(r, "mixture source %d (%s)", i, s->domain);
        s->doc_base = docs;
        docs += ml_batch_reader_total_docs(s->br);
    }
    m->snap = malloc(ml_mixture_state_size(m) * sizeof *m->snap);
    if (!m->snap) return ml_fail(ML_ERR_NOMEM, "out of memory for the mixture state");
    return ML_OK;
}

ml_status ml_mixture_open(ml_mixture **out, const ml_mixture_source *src, int n_src, const ml_mixture_opts *o) {
    *out = NULL;
    ml_mixture *m = calloc(1, sizeof *m);
    if (!m) return ml_fail(ML_ERR_NOMEM, "out of memory opening the mixture");
    ml_status s = open_all(m, src, n_src, o);
    if (s != ML_OK) {
        ml_mixture_close(m);
        return s;
    }
    *out = m;
    return ML_OK;
}

ml_status ml_mixture_open_specs(ml_mixture **out, const char *const *specs, int n, const ml_mixture_opts *o) {
    *out = NULL;
    if (n < 1) return ml_fail(ML_ERR_ARG, "mixture: no sources given");
    if (n > ML_MIXTURE_MAX_SOURCES) return ml_fail(ML_ERR_ARG, "mixture: %d sources, at most %d", n, ML_MIXTURE_MAX_SOURCES);
    ml_mixture_source src[ML_MIXTURE_MAX_SOURCES];
    memset(src, 0, sizeof src);
    ml_status s = ML_OK;
    for (int i = 0; i < n && s == ML_OK; i++) s = ml_mixture_parse_source(specs[i], &src[i]);
    if (s == ML_OK) s = ml_mixture_open(out, src, n, o);
    for (int i = 0; i < n; i++) ml_mixture_source_free(&src[i]);
    return s;
}

/* Draw a source by weight, take its next row start and advance its stream. */
static row_ref draw_row(ml_mixture *m) {
    double u = ml_rng_uniform(&m->rng);
    int i = 0;
    while (i < m->n - 1 && u >= m->cum[i]) i++;
    source *s = &m->s[i];
    row_ref r = {i, s->pos};
    uint64_t w = (uint64_t)m->T + 1;
    s->pos += w;
    if (s->pos + w > s->total) {
        s->pos = 0;
        s->epoch++;
    }
    return r;
}

/* Read the row at r into batch row b. */
static ml_status read_row(ml_mixture *m, row_ref r, int b, int32_t *inputs, int32_t *targets, int32_t *doc_ids,
                          int32_t *positions) {
    source *s = &m->s[r.src];
    int k = 0; /* the shard holding r.pos (empty shards skipped) */
    while (s->start[k + 1] <= r.pos) k++;
    ml_data_cursor c = {s->epoch, (uint64_t)k, r.pos - s->start[k]};
    ML_TRY(ml_batch_reader_set_cursor(s->br, &c));
    size_t o = (size_t)b * m->T;
    ML_TRY(ml_batch_reader_next(s->br, inputs + o, targets + o, doc_ids ? doc_ids + o : NULL,
                                positions ? positions + o : NULL));
    if (doc_ids)
        for (int t = 0; t < m->T; t++) {
            uint64_t d = (uint64_t)doc_ids[o + t] + s->doc_base;
            if (d > INT32_MAX) return ml_fail(ML_ERR_RANGE, "mixture: document ids exceed int32");
            doc_ids[o + t] = (int32_t)d;
        }
    return ML_OK;
}

static ml_status next_batch(ml_mixture *m, int32_t *inputs, int32_t *targets, int32_t *doc_ids, int32_t *positions) {
    while (m->fill < m->R) m->buf[m->fill++] = draw_row(m);
    for (int i = 0; i < m->n; i++) m->s[i].batch_rows = 0;
    for (int b = 0; b < m->B; b++) {
        row_ref r;
        if (m->R) {
            uint64_t j = ml_rng_below(&m->rng, (uint64_t)m->R);
            r = m->buf[j];
            m->buf[j] = draw_row(m);
        } else {
            r = draw_row(m);
        }
        if (inputs) ML_TRY(read_row(m, r, b, inputs, targets, doc_ids, positions));
        m->row_src[b] = (int)r.src;
        m->s[r.src].batch_rows++;
        m->s[r.src].rows++;
    }
    return ML_OK;
}

ml_status ml_mixture_next(ml_mixture *m, int32_t *inputs, int32_t *targets, int32_t *doc_ids, int32_t *positions) {
    size_t n = ml_mixture_state_size(m);
    ml_mixture_get_state(m, m->snap);
    ml_status s = next_batch(m, inputs, targets, doc_ids, positions);
    if (s != ML_OK) {
        ml_status r = ml_mixture_set_state(m, m->snap, n);
        (void)r;
        for (int i = 0; i < m->n; i++) m->s[i].batch_rows = 0;
    }
    return s;
}

void ml_mixture_skip(ml_mixture *m) { (void)next_batch(m, NULL, NULL, NULL, NULL); }

/* ---------------------------------------------------------------- state */

size_t ml_mixture_state_size(const ml_mixture *m) {
    return MIX_HEAD + (size_t)MIX_PER_SOURCE * m->n + 2 * (size_t)m->R;
}

void ml_mixture_get_state(const ml_mixture *m, int64_t *w) {
    w[0] = MIX_MAGIC;
    w[1] = MIX_VERSION;
    w[2] = m->n;
    w[3] = m->T;
    w[4] = m->R;
    w[5] = m->fill;
    for (int k = 0; k < 4; k++) w[6 + k] = (int64_t)m->rng.s[k];
    int64_t *p = w + MIX_HEAD;
    for (int i = 0; i < m->n; i++, p += MIX_PER_SOURCE) {
        p[0] = (int64_t)m->s[i].total;
        p[1] = (int64_t)m->s[i].epoch;
        p[2] = (int64_t)m->s[i].pos;
        p[3] = (int64_t)m->s[i].rows;
    }
    for (int j = 0; j < m->R; j++) {
        p[2 * j] = j < m->fill ? m->buf[j].src : -1;
        p[2 * j + 1] = j < m->fill ? (int64_t)m->buf[j].pos : 0;
    }
}

ml_status ml_mixture_set_state(ml_mixture *m, const int64_t *w, size_t n) {
    if (n < MIX_HEAD || w[0] != MIX_MAGIC || w[1] != MIX_VERSION)
        return ml_fail(ML_ERR_FORMAT, "mixture state: not a version-%d mixture state (%zu words)", MIX_VERSION, n);
    if (w[2] != m->n || w[3] != m->T || w[4] != m->R)
        return ml_fail(ML_ERR_RANGE, "mixture state is for %" PRId64 " sources, T=%" PRId64 ", shuffle buffer %" PRId64
                       "; this run has %d, %d, %d", w[2], w[3], w[4], m->n, m->T, m->R);
    if (n != ml_mixture_state_size(m))
        return ml_fail(ML_ERR_FORMAT, "mixture state: %zu words, expected %zu", n, ml_mixture_state_size(m));
    if (w[5] < 0 || w[5] > m->R) return ml_fail(ML_ERR_FORMAT, "mixture state: buffer fill %" PRId64 " of %d", w[5], m->R);
    const uint64_t row = (uint64_t)m->T + 1;
    const int64_t *p = w + MIX_HEAD;
    for (int i = 0; i < m->n; i++, p += MIX_PER_SOURCE) {
        if ((uint64_t)p[0] != m->s[i].total)
            return ml_fail(ML_ERR_RANGE, "mixture state: source %d (%s) had %" PRId64 " tokens, now %" PRIu64 " (different data?)",
                           i, m->s[i].domain, p[0], m->s[i].total);
        if (p[1] < 0 || p[2] < 0 || p[3] < 0 || (uint64_t)p[2] + row > m->s[i].total)
            return ml_fail(ML_ERR_RANGE, "mixture state: source %d (%s) offset %" PRId64 " leaves no row of %" PRIu64 " tokens",
                           i, m->s[i].domain, p[2], row);
    }
    for (int j = 0; j < (int)w[5]; j++)
        if (p[2 * j] < 0 || p[2 * j] >= m->n || p[2 * j + 1] < 0 || (uint64_t)p[2 * j + 1] + row > m->s[p[2 * j]].total)
            return ml_fail(ML_ERR_RANGE, "mixture state: shuffle buffer row %d (source %" PRId64 ", offset %" PRId64 ") is out of range",
                           j, p[2 * j], p[2 * j + 1]);
    /* valid: apply */
    m->fill = (int)w[5];
    for (int k = 0; k < 4; k++) m->rng.s[k] = (uint64_t)w[6 + k];
    p = w + MIX_HEAD;
    for (int i = 0; i < m->n; i++, p += MIX_PER_SOURCE) {
        m->s[i].epoch = (uint64_t)p[1];
        m->s[i].pos = (uint64_t)p[2];
        m->s[i].rows = (uint64_t)p[3];
    }
    for (int j = 0; j < m->fill; j++) m->buf[j] = (row_ref){p[2 * j], (uint64_t)p[2 * j + 1]};
    return ML_OK;
}

int ml_mixture_num_sources(const ml_mixture *m) { return m->n; }
const char *ml_mixture_domain(const ml_mixture *m, int i) { return m->s[i].domain; }
double ml_mixture_weight(const ml_mixture *m, int i) { return m->s[i].weight; }
uint64_t ml_mixture_epoch(const ml_mixture *m, int i) { return m->s[i].epoch; }
uint64_t ml_mixture_batch_rows(const ml_mixture *m, int i) { return m->s[i].batch_rows; }
uint64_t ml_mixture_total_rows(const ml_mixture *m, int i) { return m->s[i].rows; }
const int *ml_mixture_row_sources(const ml_mixture *m) { return m->row_src; }
uint32_t ml_mixture_vocab_size(const ml_mixture *m) { return m->vocab; }
const char *ml_mixture_tokenizer(const ml_mixture *m) { return m->tokenizer; }
