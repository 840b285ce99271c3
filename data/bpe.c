#include "data/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "data/utf8.h"

const char ML_PAT_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char ML_PAT_LLAMA4[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char ML_PAT_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define NONE UINT32_MAX
#define SMALL 64

typedef struct {
    uint64_t key; /* (a << 32) | b; UINT64_MAX = empty */
    uint32_t rank, id;
} pair_slot;

struct ml_bpe {
    uint32_t n_ids;
    uint64_t *tok_off; /* offset into bytes, or UINT64_MAX when unset */
    uint32_t *tok_len;
    uint8_t *bytes;
    size_t nbytes, capbytes;
    char **special; /* special names by id (NULL: not special) */
    uint32_t *tab;  /* open-addressing table of ids keyed by their bytes */
    size_t tab_cap, tab_n;
    pair_slot *pairs;
    size_t pair_cap, pair_n;
    uint32_t byte_id[256];
    int ignore_merges, finished;
};

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const void *p, size_t n) { return mix64(ml_fnv1a64(ML_FNV1A64_INIT, p, n)); }

ml_status ml_bpe_new(ml_bpe **out, uint32_t n_ids) {
    *out = NULL;
    if (n_ids == 0 || n_ids >= (1u << 31)) return ml_fail(ML_ERR_RANGE, "BPE vocabulary of %u ids", n_ids);
    ml_bpe *b = calloc(1, sizeof *b);
    if (!b) return ml_fail(ML_ERR_NOMEM, "out of memory creating a BPE vocabulary");
    b->n_ids = n_ids;
    b->tok_off = malloc(n_ids * sizeof *b->tok_off);
    b->tok_len = calloc(n_ids, sizeof *b->tok_len);
    b->special = calloc(n_ids, sizeof *b->special);
    b->tab_cap = 16;
    while (b->tab_cap < 2 * (size_t)n_ids) b->tab_cap *= 2;
    b->tab = malloc(b->tab_cap * sizeof *b->tab);
    if (!b->tok_off || !b->tok_len || !b->special || !b->tab) {
        ml_bpe_free(b);
        return ml_fail(ML_ERR_NOMEM, "out of memory creating a BPE vocabulary of %u ids", n_ids);
    }
    for (uint32_t i = 0; i < n_ids; i++) b->tok_off[i] = UINT64_MAX;
    memset(b->tab, 0xff, b->tab_cap * sizeof *b->tab);
    *out = b;
    return ML_OK;
}

void ml_bpe_free(ml_bpe *b) {
    if (!b) return;
    if (b->special)
        for (uint32_t i = 0; i < b->n_ids; i++) free(b->special[i]);
    free(b->special);
    free(b->tok_off);
    free(b->tok_len);
    free(b->bytes);
    free(b->tab);
    free(b->pairs);
    free(b);
}

uint32_t ml_bpe_n_ids(const ml_bpe *b) { return b->n_ids; }
size_t ml_bpe_n_merges(const ml_bpe *b) { return b->pair_n; }

const uint8_t *ml_bpe_token(const ml_bpe *b, uint32_t id, size_t *len) {
    if (id >= b->n_ids || b->tok_off[id] == UINT64_MAX) return NULL;
    *len = b->tok_len[id];
    return b->bytes + b->tok_off[id];
}

const char *ml_bpe_special_name(const ml_bpe *b, uint32_t id) { return id < b->n_ids ? b->special[id] : NULL; }

int64_t ml_bpe_lookup(const ml_bpe *b, const void *bytes, size_t len) {
    size_t mask = b->tab_cap - 1;
    for (size_t i = hash_bytes(bytes, len) & mask;; i = (i + 1) & mask) {
        uint32_t id = b->tab[i];
        if (id == NONE) return -1;
        if (b->tok_len[id] == len && !memcmp(b->bytes + b->tok_off[id], bytes, len)) return id;
    }
}

ml_status ml_bpe_set_token(ml_bpe *b, uint32_t id, const void *bytes, size_t len) {
    if (id >= b->n_ids) return ml_fail(ML_ERR_RANGE, "token id %u outside the vocabulary of %u", id, b->n_ids);
    if (len == 0) return ml_fail(ML_ERR_FORMAT, "token id %u is empty", id);
    if (len > UINT32_MAX) return ml_fail(ML_ERR_FORMAT, "token id %u is too long", id);
    if (b->tok_off[id] != UINT64_MAX || b->special[id]) return ml_fail(ML_ERR_FORMAT, "token id %u given twice", id);
    int64_t other = ml_bpe_lookup(b, bytes, len);
    if (other >= 0) return ml_fail(ML_ERR_FORMAT, "ids %lld and %u have the same bytes", (long long)other, id);
    if (b->nbytes + len > b->capbytes) {
        size_t c = b->capbytes ? b->capbytes : 1 << 16;
        while (c < b->nbytes + len) c *= 2;
        uint8_t *p = realloc(b->bytes, c);
        if (!p) return ml_fail(ML_ERR_NOMEM, "out of memory storing the BPE vocabulary");
        b->bytes = p;
        b->capbytes = c;
    }
    memcpy(b->bytes + b->nbytes, bytes, len);
    b->tok_off[id] = b->nbytes;
    b->tok_len[id] = (uint32_t)len;
    b->nbytes += len;
    size_t mask = b->tab_cap - 1, i = hash_bytes(bytes, len) & mask;
    while (b->tab[i] != NONE) i = (i + 1) & mask;
    b->tab[i] = id;
    b->tab_n++;
    return ML_OK;
}

ml_status ml_bpe_set_special(ml_bpe *b, uint32_t id, const char *name) {
    if (id >= b->n_ids) return ml_fail(ML_ERR_RANGE, "special token id %u outside the vocabulary of %u", id, b->n_ids);
    if (b->tok_off[id] != UINT64_MAX || b->special[id])
        return ml_fail(ML_ERR_FORMAT, "special token id %u (%s) given twice", id, name);
    if (!(b->special[id] = strdup(name))) return ml_fail(ML_ERR_NOMEM, "out of memory");
    return ML_OK;
}

static inline size_t pair_index(const ml_bpe *b, uint64_t key) {
    size_t mask = b->pair_cap - 1, i = mix64(key) & mask;
    while (b->pairs[i].key != UINT64_MAX && b->pairs[i].key != key) i = (i + 1) & mask;
    return i;
}

static ml_status pair_put(ml_bpe *b, uint32_t x, uint32_t y, uint32_t rank, uint32_t id) {
    if (2 * (b->pair_n + 1) > b->pair_cap) {
        size_t nc = b->pair_cap ? 2 * b->pair_cap : 1 << 12;
        pair_slot *old = b->pairs, *p = malloc(nc * sizeof *p);
        if (!p) return ml_fail(ML_ERR_NOMEM, "out of memory storing BPE merges");
        for (size_t i = 0; i < nc; i++) p[i].key = UINT64_MAX;
        size_t oc = b->pair_cap;
        b->pairs = p;
        b->pair_cap = nc;
        for (size_t i = 0; i < oc; i++)
            if (old[i].key != UINT64_MAX) b->pairs[pair_index(b, old[i].key)] = old[i];
        free(old);
    }
    uint64_t key = (uint64_t)x << 32 | y;
    size_t i = pair_index(b, key);
    if (b->pairs[i].key == key) {
        if (rank < b->pairs[i].rank) b->pairs[i].rank = rank, b->pairs[i].id = id;
        return ML_OK;
    }
    b->pairs[i] = (pair_slot){key, rank, id};
    b->pair_n++;
    return ML_OK;
}

/* rank of the pair (x, y), NONE if it does not merge; *id gets the merged token */
static inline uint32_t pair_get(const ml_bpe *b, uint32_t x, uint32_t y, uint32_t *id) {
    if (!b->pair_cap) return NONE;
    const pair_slot *s = &b->pairs[pair_index(b, (uint64_t)x << 32 | y)];
    if (s->key == UINT64_MAX) return NONE;
    *id = s->id;
    return s->rank;
}

ml_status ml_bpe_add_merge(ml_bpe *b, uint32_t a, uint32_t bb, uint32_t rank) {
    size_t la = 0, lb = 0;
    const uint8_t *pa = ml_bpe_token(b, a, &la), *pb = ml_bpe_token(b, bb, &lb);
    if (!pa || !pb) return ml_fail(ML_ERR_FORMAT, "merge %u of ids %u, %u: not both tokens", rank, a, bb);
    uint8_t stackbuf[256], *buf = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
    if (!buf) return ml_fail(ML_ERR_NOMEM, "out of memory");
    memcpy(buf, pa, la);
    memcpy(buf + la, pb, lb);
    int64_t id = ml_bpe_lookup(b, buf, la + lb);
    if (buf != stackbuf) free(buf);
    if (id < 0) return ml_fail(ML_ERR_FORMAT, "merge %u of ids %u, %u: the merged token is not in the vocabulary", rank, a, bb);
    return pair_put(b, a, bb, rank, (uint32_t)id);
}

ml_status ml_bpe_derive_merges(ml_bpe *b) {
    for (uint32_t id = 0; id < b->n_ids; id++) {
        if (b->tok_off[id] == UINT64_MAX) continue;
        const uint8_t *p = b->bytes + b->tok_off[id];
        size_t n = b->tok_len[id];
        for (size_t k = 1; k < n; k++) {
            int64_t x = ml_bpe_lookup(b, p, k);
            if (x < 0) continue;
            int64_t y = ml_bpe_lookup(b, p + k, n - k);
            if (y < 0) continue;
            ML_TRY(pair_put(b, (uint32_t)x, (uint32_t)y, id, id));
        }
    }
    return ML_OK;
}

ml_status ml_bpe_finish(ml_bpe *b, int ignore_merges) {
    for (int c = 0; c < 256; c++) {
        uint8_t ch = (uint8_t)c;
        int64_t id = ml_bpe_lookup(b, &ch, 1);
        if (id < 0) return ml_fail(ML_ERR_UNSUPPORTED, "byte 0x%02x is not a token (byte-level BPE needs all 256)", c);
        b->byte_id[c] = (uint32_t)id;
    }
    b->ignore_merges = ignore_merges;
    b->finished = 1;
    return ML_OK;
}

/* ---- encoding ---- */

typedef struct {
    uint32_t rank, pos, left, right;
} heap_ent;

static inline int heap_less(const heap_ent *x, const heap_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Long pieces: symbols in a linked list, candidate merges in a heap ordered by (rank, start);
 * stale entries are recognised by the ids they were pushed with. */
static ml_status encode_long(const ml_bpe *b, const uint8_t *p, size_t n, ml_id_buf *out) {
    uint32_t *id = malloc(n * sizeof *id), *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    heap_ent *h = malloc(3 * n * sizeof *h); /* n-1 initial pushes + at most 2 per merge */
    ml_status s = ML_OK;
    if (!id || !next || !prev || !h) {
        s = ml_fail(ML_ERR_NOMEM, "out of memory encoding a piece of %zu bytes", n);
        goto done;
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = b->byte_id[p[i]];
        next[i] = i + 1 < n ? (uint32_t)(i + 1) : NONE;
        prev[i] = i ? (uint32_t)(i - 1) : NONE;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t m, r = pair_get(b, id[i], id[i + 1], &m);
        if (r != NONE) heap_push(h, &hn, (heap_ent){r, (uint32_t)i, id[i], id[i + 1]});
    }
    size_t count = n;
    while (hn) {
        heap_ent e = heap_pop(h, &hn);
        uint32_t i = e.pos, j = next[i];
        if (id[i] == NONE || j == NONE || id[i] != e.left || id[j] != e.right) continue;
        uint32_t m = 0;
        pair_get(b, e.left, e.right, &m);
        id[i] = m;
        id[j] = NONE;
        next[i] = next[j];
        if (next[j] != NONE) prev[next[j]] = i;
        count--;
        uint32_t r, mm;
        if (prev[i] != NONE && (r = pair_get(b, id[prev[i]], m, &mm)) != NONE)
            heap_push(h, &hn, (heap_ent){r, prev[i], id[prev[i]], m});
        if (next[i] != NONE && (r = pair_get(b, m, id[next[i]], &mm)) != NONE)
            heap_push(h, &hn, (heap_ent){r, i, m, id[next[i]]});
    }
    s = ml_id_buf_reserve(out, count);
    if (s == ML_OK)
        for (uint32_t i = 0; i != NONE; i = next[i]) out->ids[out->n++] = id[i];
done:
    free(id);
    free(next);
    free(prev);
    free(h);
    return s;
}

ml_status ml_bpe_encode_piece(const ml_bpe *b, const uint8_t *p, size_t n, ml_id_buf *out) {
    if (n == 0) return ML_OK;
    if (b->ignore_merges || n == 1) {
        int64_t whole = n == 1 ? b->byte_id[p[0]] : ml_bpe_lookup(b, p, n);
        if (whole >= 0) {
            ML_TRY(ml_id_buf_reserve(out, 1));
            out->ids[out->n++] = (uint32_t)whole;
            return ML_OK;
        }
    }
    if (n > SMALL) return encode_long(b, p, n, out);
    uint32_t id[SMALL], rk[SMALL], nid[SMALL];
    size_t m = n;
    for (size_t i = 0; i < n; i++) id[i] = b->byte_id[p[i]];
    for (size_t i = 0; i + 1 < m; i++) rk[i] = pair_get(b, id[i], id[i + 1], &nid[i]);
    for (;;) {
        uint32_t best = NONE;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == NONE) break;
        id[bi] = nid[bi];
        memmove(id + bi + 1, id + bi + 2, (m - bi - 2) * sizeof *id);
        memmove(rk + bi + 1, rk + bi + 2, (m > bi + 2 ? m - bi - 2 : 0) * sizeof *rk);
        memmove(nid + bi + 1, nid + bi + 2, (m > bi + 2 ? m - bi - 2 : 0) * sizeof *nid);
        m--;
        if (bi + 1 < m) rk[bi] = pair_get(b, id[bi], id[bi + 1], &nid[bi]);
        if (bi > 0) rk[bi - 1] = pair_get(b, id[bi - 1], id[bi], &nid[bi - 1]);
    }
    ML_TRY(ml_id_buf_reserve(out, m));
    memcpy(out->ids + out->n, id, m * sizeof *id);
    out->n += m;
    return ML_OK;
}

ml_status ml_bpe_decode(const ml_bpe *b, ml_byte_buf *out, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t t = ids[i];
        if (t < b->n_ids && b->tok_off[t] != UINT64_MAX) {
            ML_TRY(ml_byte_buf_reserve(out, b->tok_len[t]));
            memcpy(out->bytes + out->n, b->bytes + b->tok_off[t], b->tok_len[t]);
            out->n += b->tok_len[t];
        } else if (t >= b->n_ids || !b->special[t]) {
            return ml_fail(ML_ERR_RANGE, "token id %u at position %zu is not in the vocabulary (%u ids)", t, i, b->n_ids);
        }
    }
    return ML_OK;
}

/* ---- regex pre-tokenizer ---- */

struct ml_pretok {
    pcre2_code *re;
    int jit, keep_gaps;
};

#define WS_LIST "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrite \s and \S (outside and inside classes) to the White_Space set. */
static ml_status rewrite_ws(const char *pat, char **out) {
    size_t n = strlen(pat), cap = n * 16 + 64, m = 0;
    char *o = malloc(cap);
    if (!o) return ml_fail(ML_ERR_NOMEM, "out of memory compiling a regex");
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[++i];
            const char *rep = NULL;
            if (d == 's') rep = in_class ? WS_LIST : "[" WS_LIST "]";
            else if (d == 'S') {
                if (in_class) {
                    free(o);
                    return ml_fail(ML_ERR_UNSUPPORTED, "regex %s: \\S inside a character class", pat);
                }
                rep = "[^" WS_LIST "]";
            }
            if (rep) {
                memcpy(o + m, rep, strlen(rep));
                m += strlen(rep);
            } else {
                o[m++] = '\\';
                o[m++] = d;
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[m++] = c;
            if (i + 1 < n && pat[i + 1] == '^') o[m++] = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') o[m++] = pat[++i]; /* literal ] first */
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        o[m++] = c;
    }
    o[m] = 0;
    *out = o;
    return ML_OK;
}

ml_status ml_pretok_new(ml_pretok **out, const char *pattern, int keep_gaps) {
    *out = NULL;
    char *pat = NULL;
    ML_TRY(rewrite_ws(pattern, &pat));
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ml_fail(ML_ERR_FORMAT, "pre-tokenizer regex: %s near offset %zu", (char *)msg, (size_t)off);
    }
    ml_pretok *r = calloc(1, sizeof *r);
    if (!r) {
        pcre2_code_free(re);
        return ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    r->re = re;
    r->keep_gaps = keep_gaps;
    r->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *out = r;
    return ML_OK;
}

void ml_pretok_free(ml_pretok *r) {
    if (!r) return;
    pcre2_code_free(r->re);
    free(r);
}

ml_status ml_pretok_split(const ml_pretok *r, const char *text, size_t len, ml_pretok_fn fn, void *ctx) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_jit_stack *js = r->jit ? pcre2_jit_stack_create(32 << 10, 8 << 20, NULL) : NULL;
    ml_status s = ML_OK;
    if (!md || !mc || (r->jit && !js)) {
        s = ml_fail(ML_ERR_NOMEM, "out of memory for regex matching");
        goto done;
    }
    if (js) pcre2_jit_stack_assign(mc, NULL, js);
    const uint8_t *t = (const uint8_t *)text;
    size_t pos = 0, gap = 0;
    while (pos < len) {
        int rc = pcre2_match(r->re, t, len, pos, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            s = ml_fail(ML_ERR_UNSUPPORTED, "pre-tokenizer regex failed at byte %zu: %s", pos, (char *)msg);
            goto done;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], e = ov[1];
        if (e == a) { /* empty match: not a piece; step over one character */
            pos = a + 1;
            while (pos < len && (t[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (r->keep_gaps && a > gap && (s = fn(ctx, t + gap, a - gap)) != ML_OK) goto done;
        if ((s = fn(ctx, t + a, e - a)) != ML_OK) goto done;
        pos = gap = e;
    }
    if (r->keep_gaps && len > gap) s = fn(ctx, t + gap, len - gap);
done:
    if (js) pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    return s;
}

typedef struct {
    const ml_bpe *b;
    ml_id_buf *out;
} enc_ctx;

static ml_status enc_piece(void *ctx, const uint8_t *p, size_t n) {
    enc_ctx *c = ctx;
    return ml_bpe_encode_piece(c->b, p, n, c->out);
}

ml_status ml_bpe_encode_text(const ml_bpe *b, const ml_pretok *r, const char *text, size_t len, ml_id_buf *out) {
    char *clean = NULL;
    size_t valid = ml_utf8_valid_prefix((const uint8_t *)text, len);
    if (valid < len) {
        ML_TRY(ml_utf8_sanitize((const uint8_t *)text, len, &clean, &len));
        text = clean;
    }
    enc_ctx c = {b, out};
    ml_status s = ml_pretok_split(r, text, len, enc_piece, &c);
    free(clean);
    return s;
}

/* ---- the tokenizer wrapper ---- */

typedef struct {
    ml_bpe *b;
    ml_pretok *r;
    int add_prefix_space;
} bpe_tok;

static ml_status bt_encode(const ml_tokenizer *t, ml_id_buf *out, const char *text, size_t len, unsigned flags) {
    const bpe_tok *k = t->impl;
    if ((flags & ML_TOK_ADD_BOS) && t->bos < 0) return ml_fail(ML_ERR_UNSUPPORTED, "this tokenizer has no BOS token");
    if ((flags & ML_TOK_ADD_EOS) && t->eos < 0) return ml_fail(ML_ERR_UNSUPPORTED, "this tokenizer has no EOS token");
    if (flags & ML_TOK_ADD_BOS) {
        ML_TRY(ml_id_buf_reserve(out, 1));
        out->ids[out->n++] = (uint32_t)t->bos;
    }
    if (k->add_prefix_space && len && text[0] != ' ') {
        char *p = malloc(len + 1);
        if (!p) return ml_fail(ML_ERR_NOMEM, "out of memory");
        p[0] = ' ';
        memcpy(p + 1, text, len);
        ml_status s = ml_bpe_encode_text(k->b, k->r, p, len + 1, out);
        free(p);
        ML_TRY(s);
    } else {
        ML_TRY(ml_bpe_encode_text(k->b, k->r, text, len, out));
    }
    if (flags & ML_TOK_ADD_EOS) {
        ML_TRY(ml_id_buf_reserve(out, 1));
        out->ids[out->n++] = (uint32_t)t->eos;
    }
    return ML_OK;
}

static ml_status bt_decode(const ml_tokenizer *t, ml_byte_buf *out, const uint32_t *ids, size_t n) {
    return ml_bpe_decode(((const bpe_tok *)t->impl)->b, out, ids, n);
}

static void bt_destroy(ml_tokenizer *t) {
    bpe_tok *k = t->impl;
    if (k) {
        ml_bpe_free(k->b);
        ml_pretok_free(k->r);
        free(k);
    }
    free(t);
}

static const ml_tokenizer_vtable bpe_vt = {bt_encode, bt_decode, bt_destroy};

static int64_t special_by_name(const ml_bpe *b, const char *name) {
    if (!name) return -1;
    for (uint32_t i = 0; i < b->n_ids; i++)
        if (b->special[i] && !strcmp(b->special[i], name)) return i;
    return -1;
}

ml_status ml_bpe_tokenizer_wrap(ml_tokenizer **out, ml_bpe *b, const ml_bpe_tok_spec *spec) {
    *out = NULL;
    ml_tokenizer *t = calloc(1, sizeof *t);
    bpe_tok *k = calloc(1, sizeof *k);
    if (!t || !k) {
        free(t);
        free(k);
        ml_bpe_free(b);
        return ml_fail(ML_ERR_NOMEM, "out of memory");
    }
    k->b = b;
    k->add_prefix_space = spec->add_prefix_space;
    t->vt = &bpe_vt;
    t->impl = k;
    ml_status s = ml_pretok_new(&k->r, spec->pattern, spec->keep_gaps);
    if (s != ML_OK) {
        bt_destroy(t);
        return s;
    }
    t->vocab_size = b->n_ids;
    t->bos = (int32_t)special_by_name(b, spec->bos);
    t->eos = (int32_t)special_by_name(b, spec->eos);
    t->pad = (int32_t)special_by_name(b, spec->pad);
    snprintf(t->fingerprint, sizeof t->fingerprint, "%s", spec->fingerprint);
    *out = t;
    return ML_OK;
}

const ml_bpe *ml_tokenizer_bpe(const ml_tokenizer *t) {
    return t && t->vt == &bpe_vt ? ((const bpe_tok *)t->impl)->b : NULL;
}

int64_t ml_tokenizer_special_id(const ml_tokenizer *t, const char *name) {
    const ml_bpe *b = ml_tokenizer_bpe(t);
    return b ? special_by_name(b, name) : -1;
}

/* ---- byte-level map ---- */

static int bl_self(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

/* The 68 remapped bytes in order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD (1). */
uint32_t ml_bytelevel_cp(uint8_t byte) {
    if (bl_self(byte)) return byte;
    if (byte <= 0x20) return 256u + byte;
    if (byte <= 0xA0) return 256u + 33 + (byte - 0x7Fu);
    return 256u + 67; /* 0xAD */
}

int ml_bytelevel_byte(uint32_t cp) {
    if (cp < 256) return bl_self(cp) ? (int)cp : -1;
    uint32_t k = cp - 256;
    if (k <= 32) return (int)k;
    if (k <= 66) return (int)(0x7F + k - 33);
    if (k == 67) return 0xAD;
    return -1;
}

long ml_bytelevel_decode(const char *s, size_t len, uint8_t *out) {
    size_t i = 0, m = 0;
    while (i < len) {
        uint32_t cp;
        int l = ml_utf8_get((const uint8_t *)s + i, len - i, &cp);
        if (l <= 0) return -1;
        int b = ml_bytelevel_byte(cp);
        if (b < 0) return -1;
        out[m++] = (uint8_t)b;
        i += (size_t)l;
    }
    return (long)m;
}

size_t ml_bytelevel_encode(const uint8_t *bytes, size_t n, char *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += (size_t)ml_utf8_put(ml_bytelevel_cp(bytes[i]), out + m);
    out[m] = 0;
    return m;
}
