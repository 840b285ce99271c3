#include "data/bpe_train.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/atomic_file.h"
#include "data/bpe.h"
#include "data/shard.h"
#include "data/utf8.h"

typedef struct {
    uint8_t *bytes; /* the piece */
    uint32_t len, n; /* bytes, current symbols */
    uint32_t *ids;
    uint64_t count;
    uint32_t stamp; /* last merge that touched it (+1) */
} word;

typedef struct {
    uint64_t key;
    int64_t count;
    uint32_t *where, nwhere, capwhere;
    int dirty;
} pair_stat;

typedef struct {
    int64_t count;
    uint32_t a, b;
} hent;

struct ml_bpe_trainer {
    ml_pretok *re;
    word *words;
    size_t n_words, cap_words;
    uint32_t *wtab; /* word index by bytes (open addressing), UINT32_MAX empty */
    size_t wtab_cap;
    /* result */
    uint32_t (*merges)[2];
    uint32_t n_merges;
    uint8_t **tok;
    uint32_t *tok_len;
    uint32_t vocab;
    char **specials;
    int n_specials;
    /* training state */
    pair_stat *ps;
    size_t n_ps, cap_ps;
    uint32_t *ptab; /* pair index by key */
    size_t ptab_cap;
    hent *heap;
    size_t n_heap, cap_heap;
    uint32_t *dirty;
    size_t n_dirty, cap_dirty;
};

static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    return x ^ (x >> 33);
}

static ml_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return ML_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return ml_fail(ML_ERR_NOMEM, "out of memory training BPE");
    *p = q;
    *cap = c;
    return ML_OK;
}

ml_status ml_bpe_trainer_new(ml_bpe_trainer **out) {
    *out = NULL;
    ml_bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) return ml_fail(ML_ERR_NOMEM, "out of memory");
    ml_status s = ml_pretok_new(&t->re, ML_PAT_LLAMA3, 1);
    if (s != ML_OK) {
        free(t);
        return s;
    }
    *out = t;
    return ML_OK;
}

void ml_bpe_trainer_free(ml_bpe_trainer *t) {
    if (!t) return;
    ml_pretok_free(t->re);
    for (size_t i = 0; i < t->n_words; i++) {
        free(t->words[i].bytes);
        free(t->words[i].ids);
    }
    free(t->words);
    free(t->wtab);
    free(t->merges);
    if (t->tok)
        for (uint32_t i = 0; i < t->vocab; i++) free(t->tok[i]);
    free(t->tok);
    free(t->tok_len);
    for (int i = 0; i < t->n_specials; i++) free(t->specials[i]);
    free(t->specials);
    for (size_t i = 0; i < t->n_ps; i++) free(t->ps[i].where);
    free(t->ps);
    free(t->ptab);
    free(t->heap);
    free(t->dirty);
    free(t);
}

static ml_status wtab_rehash(ml_bpe_trainer *t, size_t cap) {
    uint32_t *tab = malloc(cap * sizeof *tab);
    if (!tab) return ml_fail(ML_ERR_NOMEM, "out of memory counting words");
    memset(tab, 0xff, cap * sizeof *tab);
    for (size_t w = 0; w < t->n_words; w++) {
        size_t i = mix(ml_fnv1a64(ML_FNV1A64_INIT, t->words[w].bytes, t->words[w].len)) & (cap - 1);
        while (tab[i] != UINT32_MAX) i = (i + 1) & (cap - 1);
        tab[i] = (uint32_t)w;
    }
    free(t->wtab);
    t->wtab = tab;
    t->wtab_cap = cap;
    return ML_OK;
}

static ml_status count_piece(void *ctx, const uint8_t *p, size_t n) {
    ml_bpe_trainer *t = ctx;
    if (n > UINT32_MAX) return ml_fail(ML_ERR_RANGE, "a piece of %zu bytes is too long to train on", n);
    if (2 * (t->n_words + 1) > t->wtab_cap) ML_TRY(wtab_rehash(t, t->wtab_cap ? 2 * t->wtab_cap : 1 << 16));
    size_t mask = t->wtab_cap - 1, i = mix(ml_fnv1a64(ML_FNV1A64_INIT, p, n)) & mask;
    for (; t->wtab[i] != UINT32_MAX; i = (i + 1) & mask) {
        word *w = &t->words[t->wtab[i]];
        if (w->len == n && !memcmp(w->bytes, p, n)) {
            w->count++;
            return ML_OK;
        }
    }
    if (t->n_words >= UINT32_MAX - 1) return ml_fail(ML_ERR_RANGE, "too many distinct pieces");
    ML_TRY(grow((void **)&t->words, &t->cap_words, t->n_words + 1, sizeof *t->words));
    word *w = &t->words[t->n_words];
    memset(w, 0, sizeof *w);
    w->bytes = malloc(n);
    if (!w->bytes) return ml_fail(ML_ERR_NOMEM, "out of memory counting words");
    memcpy(w->bytes, p, n);
    w->len = (uint32_t)n;
    w->count = 1;
    t->wtab[i] = (uint32_t)t->n_words++;
    return ML_OK;
}

ml_status ml_bpe_trainer_add_text(ml_bpe_trainer *t, const char *text, size_t len) {
    if (t->tok) return ml_fail(ML_ERR_ARG, "BPE trainer: text added after training");
    char *clean = NULL;
    if (ml_utf8_valid_prefix((const uint8_t *)text, len) < len) {
        ML_TRY(ml_utf8_sanitize((const uint8_t *)text, len, &clean, &len));
        text = clean;
    }
    ml_status s = ml_pretok_split(t->re, text, len, count_piece, t);
    free(clean);
    return s;
}

/* ---- pair statistics ---- */

static ml_status pair_find(ml_bpe_trainer *t, uint32_t a, uint32_t b, uint32_t *idx) {
    if (2 * (t->n_ps + 1) > t->ptab_cap) {
        size_t cap = t->ptab_cap ? 2 * t->ptab_cap : 1 << 16;
        uint32_t *tab = malloc(cap * sizeof *tab);
        if (!tab) return ml_fail(ML_ERR_NOMEM, "out of memory training BPE");
        memset(tab, 0xff, cap * sizeof *tab);
        for (size_t k = 0; k < t->n_ps; k++) {
            size_t i = mix(t->ps[k].key) & (cap - 1);
            while (tab[i] != UINT32_MAX) i = (i + 1) & (cap - 1);
            tab[i] = (uint32_t)k;
        }
        free(t->ptab);
        t->ptab = tab;
        t->ptab_cap = cap;
    }
    uint64_t key = (uint64_t)a << 32 | b;
    size_t mask = t->ptab_cap - 1, i = mix(key) & mask;
    for (; t->ptab[i] != UINT32_MAX; i = (i + 1) & mask)
        if (t->ps[t->ptab[i]].key == key) {
            *idx = t->ptab[i];
            return ML_OK;
        }
    ML_TRY(grow((void **)&t->ps, &t->cap_ps, t->n_ps + 1, sizeof *t->ps));
    memset(&t->ps[t->n_ps], 0, sizeof *t->ps);
    t->ps[t->n_ps].key = key;
    t->ptab[i] = (uint32_t)t->n_ps;
    *idx = (uint32_t)t->n_ps++;
    return ML_OK;
}

/* Add delta occurrences of every adjacent pair of word w. */
static ml_status word_pairs(ml_bpe_trainer *t, uint32_t w, int64_t sign) {
    word *wd = &t->words[w];
    int64_t delta = sign * (int64_t)wd->count;
    for (uint32_t i = 0; i + 1 < wd->n; i++) {
        uint32_t k;
        ML_TRY(pair_find(t, wd->ids[i], wd->ids[i + 1], &k));
        pair_stat *p = &t->ps[k];
        p->count += delta;
        if (!p->dirty) {
            p->dirty = 1;
            ML_TRY(grow((void **)&t->dirty, &t->cap_dirty, t->n_dirty + 1, sizeof *t->dirty));
            t->dirty[t->n_dirty++] = k;
        }
        if (sign > 0 && (p->nwhere == 0 || p->where[p->nwhere - 1] != w)) {
            size_t cap = p->capwhere;
            ML_TRY(grow((void **)&p->where, &cap, (size_t)p->nwhere + 1, sizeof *p->where));
            p->capwhere = (uint32_t)cap;
            p->where[p->nwhere++] = w;
        }
    }
    return ML_OK;
}

static int hbetter(const hent *x, const hent *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static ml_status hpush(ml_bpe_trainer *t, hent e) {
    ML_TRY(grow((void **)&t->heap, &t->cap_heap, t->n_heap + 1, sizeof *t->heap));
    size_t i = t->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hbetter(&e, &t->heap[p])) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = e;
    return ML_OK;
}

static hent hpop(ml_bpe_trainer *t) {
    hent top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hbetter(&t->heap[c + 1], &t->heap[c])) c++;
        if (!hbetter(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = last;
    return top;
}

static ml_status flush_dirty(ml_bpe_trainer *t) {
    for (size_t k = 0; k < t->n_dirty; k++) {
        pair_stat *p = &t->ps[t->dirty[k]];
        p->dirty = 0;
        if (p->count > 0) ML_TRY(hpush(t, (hent){p->count, (uint32_t)(p->key >> 32), (uint32_t)p->key}));
    }
    t->n_dirty = 0;
    return ML_OK;
}

static const char *const default_specials[] = {"<|begin_of_text|>", "<|end_of_text|>"};

ml_status ml_bpe_trainer_train(ml_bpe_trainer *t, const ml_bpe_train_opts *o) {
    if (t->tok) return ml_fail(ML_ERR_ARG, "BPE trainer: already trained");
    const char *const *sp = o->specials ? o->specials : default_specials;
    int nsp = o->specials ? o->n_specials : 2;
    uint64_t minf = o->min_frequency ? o->min_frequency : 2;
    if (o->vocab_size < 256u + (uint32_t)nsp)
        return ml_fail(ML_ERR_ARG, "vocabulary size %u is below 256 bytes + %d specials", o->vocab_size, nsp);
    if (t->n_words == 0) return ml_fail(ML_ERR_ARG, "no training text");
    uint32_t target = o->vocab_size - (uint32_t)nsp;
    t->tok = calloc(target, sizeof *t->tok);
    t->tok_len = calloc(target, sizeof *t->tok_len);
    t->merges = calloc(target - 256 + 1, sizeof *t->merges);
    t->specials = calloc((size_t)nsp + 1, sizeof *t->specials);
    if (!t->tok || !t->tok_len || !t->merges || !t->specials) return ml_fail(ML_ERR_NOMEM, "out of memory");
    for (uint32_t c = 0; c < 256; c++) {
        if (!(t->tok[c] = malloc(1))) return ml_fail(ML_ERR_NOMEM, "out of memory");
        t->tok[c][0] = (uint8_t)c;
        t->tok_len[c] = 1;
    }
    t->vocab = 256;
    for (int i = 0; i < nsp; i++) {
        if (!(t->specials[i] = strdup(sp[i]))) return ml_fail(ML_ERR_NOMEM, "out of memory");
        t->n_specials = i + 1;
    }
    for (size_t w = 0; w < t->n_words; w++) {
        word *wd = &t->words[w];
        if (!(wd->ids = malloc(wd->len * sizeof *wd->ids))) return ml_fail(ML_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < wd->len; i++) wd->ids[i] = wd->bytes[i];
        wd->n = wd->len;
        ML_TRY(word_pairs(t, (uint32_t)w, +1));
    }
    ML_TRY(flush_dirty(t));
    clock_t c0 = clock();
    while (t->vocab < target && t->n_heap) {
        hent e = hpop(t);
        uint32_t k;
        ML_TRY(pair_find(t, e.a, e.b, &k));
        if (t->ps[k].count != e.count) continue; /* stale */
        if ((uint64_t)e.count < minf) break;
        uint32_t id = t->vocab, la = t->tok_len[e.a], lb = t->tok_len[e.b];
        if (!(t->tok[id] = malloc((size_t)la + lb))) return ml_fail(ML_ERR_NOMEM, "out of memory");
        memcpy(t->tok[id], t->tok[e.a], la);
        memcpy(t->tok[id] + la, t->tok[e.b], lb);
        t->tok_len[id] = la + lb;
        t->merges[t->n_merges][0] = e.a;
        t->merges[t->n_merges][1] = e.b;
        t->n_merges++;
        t->vocab++;
        /* every word holding (a, b): remove its pairs, merge, add its pairs back */
        uint32_t *where = t->ps[k].where, nwhere = t->ps[k].nwhere;
        t->ps[k].where = NULL;
        t->ps[k].nwhere = t->ps[k].capwhere = 0;
        ml_status s = ML_OK;
        for (uint32_t q = 0; q < nwhere && s == ML_OK; q++) {
            uint32_t w = where[q];
            word *wd = &t->words[w];
            if (wd->stamp == t->n_merges) continue;
            wd->stamp = t->n_merges;
            int has = 0;
            for (uint32_t i = 0; i + 1 < wd->n && !has; i++) has = wd->ids[i] == e.a && wd->ids[i + 1] == e.b;
            if (!has) continue;
            s = word_pairs(t, w, -1);
            uint32_t m = 0;
            for (uint32_t i = 0; i < wd->n; i++) {
                if (i + 1 < wd->n && wd->ids[i] == e.a && wd->ids[i + 1] == e.b) {
                    wd->ids[m++] = id;
                    i++;
                } else {
                    wd->ids[m++] = wd->ids[i];
                }
            }
            wd->n = m;
            if (s == ML_OK) s = word_pairs(t, w, +1);
        }
        free(where);
        ML_TRY(s);
        ML_TRY(flush_dirty(t));
        if (o->verbose && (t->n_merges % 1000 == 0)) {
            char line[128];
            double sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
            snprintf(line, sizeof line, "merge %u: count %lld, %.1f s", t->n_merges, (long long)e.count, sec);
            ml_progress_report r = {.task = "bpe-train", .done = t->n_merges, .rate = sec > 0 ? t->n_merges / sec : 0,
                                    .line = line};
            ml_progress_emit(&o->on_progress, &r);
        }
    }
    return ML_OK;
}

size_t ml_bpe_trainer_n_words(const ml_bpe_trainer *t) { return t->n_words; }
uint32_t ml_bpe_trainer_n_merges(const ml_bpe_trainer *t) { return t->n_merges; }
uint32_t ml_bpe_trainer_vocab_size(const ml_bpe_trainer *t) { return t->vocab + (uint32_t)t->n_specials; }

const uint8_t *ml_bpe_trainer_word(const ml_bpe_trainer *t, size_t i, size_t *len, uint64_t *count,
                                   const uint32_t **ids, size_t *n_ids) {
    const word *w = &t->words[i];
    *len = w->len;
    *count = w->count;
    *ids = w->ids;
    *n_ids = w->ids ? w->n : 0;
    return w->bytes;
}

/* ---- tokenizer.json ---- */

static char *bl_string(const uint8_t *p, size_t n) {
    char *s = malloc(2 * n + 1);
    if (s) ml_bytelevel_encode(p, n, s);
    return s;
}

static cJSON *obj(cJSON *parent, const char *key) {
    cJSON *o = cJSON_CreateObject();
    if (parent && o) cJSON_AddItemToObject(parent, key, o);
    return o;
}

ml_status ml_bpe_trainer_write_json(const ml_bpe_trainer *t, const char *path) {
    if (!t->tok) return ml_fail(ML_ERR_ARG, "BPE trainer: nothing trained");
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok) {
        cJSON_AddStringToObject(root, "version", "1.0");
        cJSON_AddNullToObject(root, "truncation");
        cJSON_AddNullToObject(root, "padding");
        cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
        for (int i = 0; added && i < t->n_specials; i++) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", t->vocab + (uint32_t)i);
            cJSON_AddStringToObject(a, "content", t->specials[i]);
            cJSON_AddFalseToObject(a, "single_word");
            cJSON_AddFalseToObject(a, "lstrip");
            cJSON_AddFalseToObject(a, "rstrip");
            cJSON_AddFalseToObject(a, "normalized");
            cJSON_AddTrueToObject(a, "special");
            cJSON_AddItemToArray(added, a);
        }
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *pt = obj(root, "pre_tokenizer");
        cJSON_AddStringToObject(pt, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pt, "pretokenizers");
        cJSON *split = obj(NULL, NULL), *bl = obj(NULL, NULL);
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(obj(split, "pattern"), "Regex", ML_PAT_LLAMA3);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddFalseToObject(split, "invert");
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddFalseToObject(bl, "add_prefix_space");
        cJSON_AddTrueToObject(bl, "trim_offsets");
        cJSON_AddFalseToObject(bl, "use_regex");
        cJSON_AddItemToArray(list, split);
        cJSON_AddItemToArray(list, bl);
        cJSON_AddNullToObject(root, "post_processor");
        cJSON *dec = obj(root, "decoder");
        cJSON_AddStringToObject(dec, "type", "ByteLevel");
        cJSON_AddTrueToObject(dec, "add_prefix_space");
        cJSON_AddTrueToObject(dec, "trim_offsets");
        cJSON_AddTrueToObject(dec, "use_regex");
        cJSON *model = obj(root, "model");
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddNullToObject(model, "dropout");
        cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddNullToObject(model, "continuing_subword_prefix");
        cJSON_AddNullToObject(model, "end_of_word_suffix");
        cJSON_AddFalseToObject(model, "fuse_unk");
        cJSON_AddFalseToObject(model, "byte_fallback");
        cJSON_AddFalseToObject(model, "ignore_merges");
        cJSON *vocab = obj(model, "vocab");
        cJSON *merges = cJSON_AddArrayToObject(model, "merges");
        for (uint32_t i = 0; ok && i < t->vocab; i++) {
            char *s = bl_string(t->tok[i], t->tok_len[i]);
            ok = s && cJSON_AddNumberToObject(vocab, s, i);
            free(s);
        }
        for (uint32_t i = 0; ok && i < t->n_merges; i++) {
            char *a = bl_string(t->tok[t->merges[i][0]], t->tok_len[t->merges[i][0]]);
            char *b = bl_string(t->tok[t->merges[i][1]], t->tok_len[t->merges[i][1]]);
            char *ab = a && b ? malloc(strlen(a) + strlen(b) + 2) : NULL;
            if (ab) sprintf(ab, "%s %s", a, b);
            cJSON *str = ab ? cJSON_CreateString(ab) : NULL;
            ok = str && cJSON_AddItemToArray(merges, str);
            free(a);
            free(b);
            free(ab);
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return ml_fail(ML_ERR_NOMEM, "out of memory writing %s", path);
    ml_atomic_file f;
    ml_status s = ml_atomic_begin(&f, path, 1);
    if (s == ML_OK) {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, f.fp) != n || fputc('\n', f.fp) == EOF) {
            ml_atomic_abort(&f);
            s = ml_fail(ML_ERR_IO, "cannot write %s", path);
        } else {
            s = ml_atomic_commit(&f);
        }
    }
    free(text);
    return s;
}
