#include "infer/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sysinfo.h"

ml_status ml_sampler_create(ml_sampler *s, int V, const ml_sampling *o, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (!(o->temperature >= 0.0f) || !isfinite(o->temperature))
        return ml_fail(ML_ERR_ARG, "temperature %g must be a finite number >= 0", o->temperature);
    if (o->top_k < 0) return ml_fail(ML_ERR_ARG, "top-k %d must be >= 0 (0: no limit)", o->top_k);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f)) return ml_fail(ML_ERR_ARG, "top-p %g must be in (0, 1]", o->top_p);
    if (V < 1) return ml_fail(ML_ERR_ARG, "vocabulary of %d tokens", V);
    s->o = *o;
    s->V = V;
    ml_rng_seed(&s->rng, seed);
    s->prob = malloc(sizeof(float) * (size_t)V);
    s->order = malloc(sizeof(int32_t) * (size_t)V);
    if (!s->prob || !s->order) {
        ml_sampler_free(s);
        return ml_fail(ML_ERR_NOMEM, "out of memory for a sampler over %d tokens", V);
    }
    return ML_OK;
}

void ml_sampler_free(ml_sampler *s) {
    free(s->prob);
    free(s->order);
    memset(s, 0, sizeof *s);
}

/* "a before b": larger logit first, lower id on ties (a total order: results never depend on the
 * sort algorithm). */
static inline int before(const float *l, int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); }

static void sift_down(const float *l, int32_t *heap, int n, int i) { /* heap root = the worst kept */
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && before(l, heap[c], heap[c + 1])) c++;
        if (!before(l, heap[i], heap[c])) return;
        int32_t t = heap[i];
        heap[i] = heap[c];
        heap[c] = t;
        i = c;
    }
}

static const float *g_sort_logits; /* qsort has no context argument; sampling is single-threaded */
static int cmp_ids(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return before(g_sort_logits, x, y) ? -1 : before(g_sort_logits, y, x) ? 1 : 0;
}

int32_t ml_sampler_pick(ml_sampler *s, const float *logits) {
    const int V = s->V;
    if (s->o.temperature == 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    int n = V;
    int32_t *ord = s->order;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        /* the k best by a heap whose root is the worst of them, then sorted */
        n = s->o.top_k;
        for (int32_t i = 0; i < n; i++) ord[i] = i;
        for (int i = n / 2 - 1; i >= 0; i--) sift_down(logits, ord, n, i);
        for (int32_t i = n; i < V; i++)
            if (before(logits, i, ord[0])) {
                ord[0] = i;
                sift_down(logits, ord, n, 0);
            }
        g_sort_logits = logits;
        qsort(ord, (size_t)n, sizeof *ord, cmp_ids);
    } else if (s->o.top_p < 1.0f) {
        for (int32_t i = 0; i < V; i++) ord[i] = i;
        g_sort_logits = logits;
        qsort(ord, (size_t)n, sizeof *ord, cmp_ids);
    } else {
        for (int32_t i = 0; i < V; i++) ord[i] = i; /* no ordering needed */
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, logits[ord[i]]);
    const double inv_t = 1.0 / s->o.temperature;
    double total = 0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = (float)exp(((double)logits[ord[i]] - mx) * inv_t);
        total += s->prob[i];
    }
    if (s->o.top_p < 1.0f) { /* ord is sorted here */
        double cum = 0, need = (double)s->o.top_p * total;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= need) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = cum;
    }
    double u = (double)ml_rng_uniform(&s->rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) return ord[i];
    }
    return ord[n - 1]; /* u at the very top after rounding */
}

ml_status ml_generate(ml_decoder *d, ml_sampler *s, const int32_t *prompt, int n_prompt, int max_new, int32_t eos,
                      ml_token_sink sink, void *user, ml_gen_stats *st) {
    memset(st, 0, sizeof *st);
    if (n_prompt < 1) return ml_fail(ML_ERR_ARG, "generation needs at least one prompt token");
    if (max_new < 0) return ml_fail(ML_ERR_ARG, "%d new tokens", max_new);
    ml_decoder_reset(d);
    double t0 = ml_now_seconds();
    ML_TRY(ml_decoder_feed(d, prompt, n_prompt, 0, NULL));
    double t1 = ml_now_seconds();
    st->prompt_tokens = n_prompt;
    st->prefill_s = t1 - t0;
    for (int i = 0; i < max_new; i++) {
        int32_t tok = ml_sampler_pick(s, ml_decoder_logits(d));
        if (eos >= 0 && tok == eos) {
            st->hit_eos = 1;
            break;
        }
        st->new_tokens++;
        if (sink) ML_TRY(sink(user, tok));
        if (i + 1 == max_new) break;
        if (ml_decoder_len(d) >= d->kv.max_len) {
            st->hit_max_len = 1;
            break;
        }
        ML_TRY(ml_decoder_feed(d, &tok, 1, 0, NULL));
    }
    st->decode_s = ml_now_seconds() - t1;
    return ML_OK;
}

size_t ml_utf8_complete_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    /* look back at most 3 bytes for the lead byte of the last sequence */
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        return need > back ? n - back : n; /* incomplete: hold the sequence back */
    }
    return n;
}

ml_status ml_text_stream_init(ml_text_stream *ts, const ml_tokenizer *tok, FILE *out, const int32_t *prompt,
                              int n_prompt, size_t cap) {
    memset(ts, 0, sizeof *ts);
    ts->tok = tok;
    ts->out = out;
    if (cap < (size_t)n_prompt) cap = (size_t)n_prompt;
    ts->ids = malloc(sizeof(uint32_t) * (cap ? cap : 1));
    if (!ts->ids) return ml_fail(ML_ERR_NOMEM, "out of memory for %zu token ids", cap);
    ts->cap_ids = cap;
    for (int i = 0; i < n_prompt; i++) ts->ids[i] = (uint32_t)prompt[i];
    ts->n_ids = ts->n_prompt = (size_t)n_prompt;
    ml_status s = ml_byte_buf_reserve(&ts->text, cap * 8 + 64); /* grown only for unusually long pieces */
    if (s == ML_OK) s = ml_tokenizer_decode(tok, &ts->text, ts->ids, ts->n_ids);
    if (s != ML_OK) {
        ml_text_stream_free(ts);
        return s;
    }
    ts->emitted = ts->text.n;
    return ML_OK;
}

ml_status ml_text_stream_push(ml_text_stream *ts, int32_t id) {
    if (ts->n_ids == ts->cap_ids) return ml_fail(ML_ERR_RANGE, "text stream holds at most %zu tokens", ts->cap_ids);
    ts->ids[ts->n_ids++] = (uint32_t)id;
    ts->text.n = 0;
    ML_TRY(ml_tokenizer_decode(ts->tok, &ts->text, ts->ids, ts->n_ids));
    size_t end = ml_utf8_complete_prefix(ts->text.bytes, ts->text.n);
    if (end > ts->emitted) {
        if (fwrite(ts->text.bytes + ts->emitted, 1, end - ts->emitted, ts->out) != end - ts->emitted)
            return ml_fail(ML_ERR_IO, "cannot write generated text");
        ts->emitted = end;
    }
    fflush(ts->out);
    return ML_OK;
}

ml_status ml_text_stream_finish(ml_text_stream *ts) {
    if (ts->text.n > ts->emitted) {
        if (fwrite(ts->text.bytes + ts->emitted, 1, ts->text.n - ts->emitted, ts->out) != ts->text.n - ts->emitted)
            return ml_fail(ML_ERR_IO, "cannot write generated text");
        ts->emitted = ts->text.n;
    }
    fflush(ts->out);
    return ML_OK;
}

void ml_text_stream_free(ml_text_stream *ts) {
    free(ts->ids);
    ml_byte_buf_free(&ts->text);
    memset(ts, 0, sizeof *ts);
}
