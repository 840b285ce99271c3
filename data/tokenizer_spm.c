#include "data/tokenizer_spm.h"

#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "data/shard.h"

/* SentencePiece piece types (sentencepiece_model.proto). */
enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER_DEFINED = 4, T_UNUSED = 5, T_BYTE = 6 };
#define SPACE_CP 0x2581u /* U+2581, "▁" */
#define BPE_MODEL 2      /* TrainerSpec.ModelType.BPE */

/* Encoding large text in chunks on threads pays off above this size. */
#define PAR_MIN_BYTES (256u << 10)
#define PAR_CHUNK_BYTES (64u << 10)

typedef struct {
    uint32_t n;
    char *pool;                /* all piece strings, back to back */
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    uint32_t *piece_slots;     /* string -> id + 1 (all pieces); 0 = empty */
    size_t piece_mask;
    int32_t ascii[128];        /* single-character NORMAL pieces, < 0 when none */
    uint32_t *ch_keys;         /* code point -> NORMAL piece id, for non-ASCII */
    int32_t *ch_vals;          /* id + 1; 0 = empty */
    size_t ch_mask;
    uint64_t *pair_keys;       /* (left id, right id) -> merged NORMAL id */
    int32_t *pair_vals;        /* id + 1; 0 = empty */
    size_t pair_mask;
    int32_t byte_id[256];
    int32_t unk;
    int byte_fallback, add_dummy_prefix, escape_ws;
    int barrier_nl; /* no multi-character NORMAL piece holds '\n': nothing merges across it */
    int barrier_ws; /* no NORMAL piece holds a U+2581 after another character: nothing merges into a
                     * U+2581 that follows another character (a word start) */
    uint32_t max_piece_len;
    char *unk_surface;
    size_t unk_surface_len;
    char normalizer[64];
    uint32_t counts[7];
} spm_model;

/* ---- UTF-8, with sentencepiece's rules: a sequence that is malformed, overlong, a surrogate or
 * past U+10FFFF is an error that consumes one byte and stands for U+FFFD. */
static inline int is_trail(unsigned char c) { return (c & 0xC0) == 0x80; }
static inline int valid_cp(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

static inline uint32_t utf8_next(const unsigned char *s, size_t n, size_t *used) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *used = 1;
        return c;
    }
    if ((c & 0xE0) == 0xC0) {
        if (n >= 2 && is_trail(s[1])) {
            uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
            if (cp >= 0x80) {
                *used = 2;
                return cp;
            }
        }
    } else if ((c & 0xF0) == 0xE0) {
        if (n >= 3 && is_trail(s[1]) && is_trail(s[2])) {
            uint32_t cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
            if (cp >= 0x800 && valid_cp(cp)) {
                *used = 3;
                return cp;
            }
        }
    } else if ((c & 0xF8) == 0xF0) {
        if (n >= 4 && is_trail(s[1]) && is_trail(s[2]) && is_trail(s[3])) {
            uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
            if (cp >= 0x10000 && valid_cp(cp)) {
                *used = 4;
                return cp;
            }
        }
    }
    *used = 1;
    return 0xFFFD;
}

static inline int utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- hash tables (open addressing, power-of-two sizes) */
static inline size_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (size_t)k;
}

static size_t table_size(size_t n) {
    size_t c = 16;
    while (c < 2 * n) c *= 2;
    return c;
}

/* Id of the piece spelled s[0..n), any type; -1 when none. */
static int32_t piece_find(const spm_model *m, const char *s, size_t n) {
    size_t i = (size_t)ml_fnv1a64(ML_FNV1A64_INIT, s, n) & m->piece_mask;
    for (;; i = (i + 1) & m->piece_mask) {
        uint32_t v = m->piece_slots[i];
        if (!v) return -1;
        uint32_t id = v - 1;
        if (m->len[id] == n && !memcmp(m->pool + m->off[id], s, n)) return (int32_t)id;
    }
}

static inline int32_t char_find(const spm_model *m, uint32_t cp) {
    if (cp < 128) return m->ascii[cp];
    size_t i = mix64(cp) & m->ch_mask;
    for (;; i = (i + 1) & m->ch_mask) {
        if (!m->ch_vals[i]) return -1;
        if (m->ch_keys[i] == cp) return m->ch_vals[i] - 1;
    }
}

static inline int32_t pair_find(const spm_model *m, int32_t l, int32_t r) {
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t i = mix64(k) & m->pair_mask;
    for (;; i = (i + 1) & m->pair_mask) {
        if (!m->pair_vals[i]) return -1;
        if (m->pair_keys[i] == k) return m->pair_vals[i] - 1;
    }
}

static void pair_insert(spm_model *m, int32_t l, int32_t r, int32_t id) {
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    size_t i = mix64(k) & m->pair_mask;
    while (m->pair_vals[i] && m->pair_keys[i] != k) i = (i + 1) & m->pair_mask;
    m->pair_keys[i] = k;
    m->pair_vals[i] = id + 1;
}

/* ---- encoding */
typedef struct {
    int32_t id;   /* NORMAL piece, or -1: a single character without one (cp) */
    uint32_t cp;
    uint32_t len; /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
} sym;

typedef struct {
    float score;
    int32_t left, right, id;
    uint32_t size;
} cand;

typedef struct {
    sym *s;
    size_t ns, cap_s;
    cand *h;
    size_t nh, cap_h;
    char *buf; /* 2 * max piece length, for string lookups */
} scratch;

static inline int cand_better(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static ml_status heap_push(scratch *sc, cand c) {
    if (sc->nh == sc->cap_h) {
        size_t cap = sc->cap_h ? 2 * sc->cap_h : 1024;
        cand *h = realloc(sc->h, cap * sizeof *h);
        if (!h) return ml_fail(ML_ERR_NOMEM, "out of memory in the SentencePiece encoder");
        sc->h = h;
        sc->cap_h = cap;
    }
    size_t i = sc->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_better(&c, &sc->h[p])) break;
        sc->h[i] = sc->h[p];
        i = p;
    }
    sc->h[i] = c;
    return ML_OK;
}

static cand heap_pop(scratch *sc) {
    cand top = sc->h[0], last = sc->h[--sc->nh];
    size_t n = sc->nh, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t b = l + 1 < n && cand_better(&sc->h[l + 1], &sc->h[l]) ? l + 1 : l;
        if (!cand_better(&sc->h[b], &last)) break;
        sc->h[i] = sc->h[b];
        i = b;
    }
    if (n) sc->h[i] = last;
    return top;
}

static size_t sym_str(const spm_model *m, const sym *s, char *o) {
    if (s->id >= 0) {
        memcpy(o, m->pool + m->off[s->id], m->len[s->id]);
        return m->len[s->id];
    }
    return (size_t)utf8_put(o, s->cp);
}

/* The NORMAL piece that the concatenation of two symbols spells, or -1. */
static int32_t merge_of(const spm_model *m, scratch *sc, const sym *l, const sym *r) {
    if (l->id >= 0 && r->id >= 0) return pair_find(m, l->id, r->id);
    /* A character without a piece: only a string lookup can tell (never for Llama-2). */
    if (l->len + r->len > m->max_piece_len) return -1;
    size_t n = sym_str(m, l, sc->buf);
    n += sym_str(m, r, sc->buf + n);
    int32_t id = piece_find(m, sc->buf, n);
    return id >= 0 && m->type[id] == T_NORMAL ? id : -1;
}

static ml_status maybe_add(const spm_model *m, scratch *sc, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return ML_OK;
    int32_t id = merge_of(m, sc, &sc->s[l], &sc->s[r]);
    if (id < 0) return ML_OK;
    cand c = {m->score[id], l, r, id, sc->s[l].len + sc->s[r].len};
    return heap_push(sc, c);
}

static ml_status push_sym(scratch *sc, int32_t id, uint32_t cp, uint32_t len) {
    if (sc->ns == sc->cap_s) {
        size_t cap = sc->cap_s ? 2 * sc->cap_s : 1024;
        sym *s = realloc(sc->s, cap * sizeof *s);
        if (!s) return ml_fail(ML_ERR_NOMEM, "out of memory in the SentencePiece encoder");
        sc->s = s;
        sc->cap_s = cap;
    }
    sym *s = &sc->s[sc->ns];
    s->id = id;
    s->cp = cp;
    s->len = len;
    s->prev = (int32_t)sc->ns - 1;
    s->next = -1;
    if (sc->ns) sc->s[sc->ns - 1].next = (int32_t)sc->ns;
    sc->ns++;
    return ML_OK;
}

static ml_status emit_sym(const spm_model *m, scratch *sc, const sym *s, ml_id_buf *out) {
    if (s->id >= 0) {
        out->ids[out->n++] = (uint32_t)s->id;
        return ML_OK;
    }
    char b[4];
    size_t n = sym_str(m, s, b);
    int32_t id = piece_find(m, b, n); /* a reserved piece spelled by one character */
    if (id >= 0 && id != m->unk) out->ids[out->n++] = (uint32_t)id;
    else if (m->byte_fallback)
        for (size_t i = 0; i < n; i++) out->ids[out->n++] = (uint32_t)m->byte_id[(unsigned char)b[i]];
    else out->ids[out->n++] = (uint32_t)m->unk;
    (void)sc;
    return ML_OK;
}

/* BPE over the symbols collected so far, append their ids, start over. */
static ml_status flush(const spm_model *m, scratch *sc, ml_id_buf *out) {
    size_t n = sc->ns;
    if (!n) return ML_OK;
    ML_TRY(ml_id_buf_reserve(out, 4 * n));
    sc->nh = 0;
    for (size_t i = 0; i + 1 < n; i++) ML_TRY(maybe_add(m, sc, (int32_t)i, (int32_t)i + 1));
    while (sc->nh) {
        cand c = heap_pop(sc);
        sym *l = &sc->s[c.left], *r = &sc->s[c.right];
        if (!l->len || !r->len || l->len + r->len != c.size) continue; /* stale */
        l->id = c.id;
        l->len = c.size;
        l->next = r->next;
        if (r->next >= 0) sc->s[r->next].prev = c.left;
        r->len = 0;
        ML_TRY(maybe_add(m, sc, l->prev, c.left));
        ML_TRY(maybe_add(m, sc, c.left, l->next));
    }
    for (int32_t i = 0; i >= 0; i = sc->s[i].next) ML_TRY(emit_sym(m, sc, &sc->s[i], out));
    sc->ns = 0;
    return ML_OK;
}

static ml_status encode_range_sc(const spm_model *m, scratch *sc, ml_id_buf *out, const unsigned char *s, size_t len,
                                 int dummy) {
    if (len == 0) return ML_OK;
    if (dummy && m->add_dummy_prefix) ML_TRY(push_sym(sc, char_find(m, SPACE_CP), SPACE_CP, 3));
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t cp = utf8_next(s + i, len - i, &used);
        i += used;
        if (cp == ' ' && m->escape_ws) cp = SPACE_CP;
        uint32_t clen = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (cp == '\n' && m->barrier_nl) {
            ML_TRY(flush(m, sc, out)); /* nothing merges across a newline */
            ML_TRY(push_sym(sc, char_find(m, cp), cp, 1));
            ML_TRY(flush(m, sc, out));
            continue;
        }
        if (cp == SPACE_CP && m->barrier_ws && sc->ns && sc->s[sc->ns - 1].cp != SPACE_CP)
            ML_TRY(flush(m, sc, out)); /* a word start: BPE word by word, with small heaps */
        ML_TRY(push_sym(sc, char_find(m, cp), cp, clen));
    }
    return flush(m, sc, out);
}

static ml_status encode_range(const spm_model *m, ml_id_buf *out, const char *text, size_t len, int dummy) {
    scratch sc = {0};
    ml_status s = ML_OK;
    if (!(sc.buf = malloc(2 * (size_t)m->max_piece_len + 8)))
        s = ml_fail(ML_ERR_NOMEM, "out of memory in the SentencePiece encoder");
    if (s == ML_OK) s = encode_range_sc(m, &sc, out, (const unsigned char *)text, len, dummy);
    free(sc.s);
    free(sc.h);
    free(sc.buf);
    return s;
}

/* Whether text can be cut before byte p (0 < p < len) without changing the ids. Both tests
 * look at ASCII bytes only, which are always characters of their own in sentencepiece's UTF-8
 * decoding (a lead byte consumes only continuation bytes). */
static inline int split_ok(const spm_model *m, const char *text, size_t p) {
    unsigned char a = (unsigned char)text[p - 1], b = (unsigned char)text[p];
    if (m->barrier_nl && a == '\n') return 1;
    return m->barrier_ws && m->escape_ws && b == ' ' && a < 0x80 && a != ' ';
}

static ml_status spm_encode(const ml_tokenizer *t, ml_id_buf *out, const char *text, size_t len, unsigned flags) {
    const spm_model *m = t->impl;
    if ((flags & ML_TOK_ADD_BOS) && t->bos >= 0) {
        ML_TRY(ml_id_buf_reserve(out, 1));
        out->ids[out->n++] = (uint32_t)t->bos;
    }
    int threads = omp_get_max_threads();
    if ((m->barrier_nl || m->barrier_ws) && len >= PAR_MIN_BYTES && threads > 1 && !omp_in_parallel()) {
        /* Chunks that end at a barrier (after a newline, or before a space that follows another
         * ASCII character), encoded independently (only the first one gets the dummy prefix)
         * and concatenated in order: the same ids as one serial encode. */
        size_t nch = len / PAR_CHUNK_BYTES;
        if (nch > (size_t)threads * 8) nch = (size_t)threads * 8;
        size_t *b = calloc(nch + 1, sizeof *b);
        ml_id_buf *bufs = calloc(nch, sizeof *bufs);
        ml_status *st = calloc(nch, sizeof *st);
        ml_status s = ML_OK;
        if (!b || !bufs || !st) s = ml_fail(ML_ERR_NOMEM, "out of memory in the SentencePiece encoder");
        if (s == ML_OK) {
            for (size_t k = 1; k < nch; k++) {
                size_t p = len / nch * k;
                if (p < b[k - 1]) p = b[k - 1];
                if (p == 0) p = 1;
                while (p < len && !split_ok(m, text, p)) p++;
                b[k] = p;
            }
            b[nch] = len;
#pragma omp parallel for schedule(dynamic, 1)
            for (size_t k = 0; k < nch; k++) st[k] = encode_range(m, &bufs[k], text + b[k], b[k + 1] - b[k], k == 0);
            size_t total = 0;
            for (size_t k = 0; k < nch; k++) {
                if (st[k] != ML_OK && s == ML_OK)
                    s = ml_fail(st[k], "SentencePiece encoder: chunk %zu of %zu failed (out of memory?)", k, nch);
                total += bufs[k].n;
            }
            if (s == ML_OK) s = ml_id_buf_reserve(out, total);
            for (size_t k = 0; k < nch && s == ML_OK; k++) {
                if (bufs[k].n) memcpy(out->ids + out->n, bufs[k].ids, bufs[k].n * sizeof *out->ids);
                out->n += bufs[k].n;
            }
        }
        for (size_t k = 0; bufs && k < nch; k++) ml_id_buf_free(&bufs[k]);
        free(b);
        free(bufs);
        free(st);
        ML_TRY(s);
    } else {
        ML_TRY(encode_range(m, out, text, len, 1));
    }
    if ((flags & ML_TOK_ADD_EOS) && t->eos >= 0) {
        ML_TRY(ml_id_buf_reserve(out, 1));
        out->ids[out->n++] = (uint32_t)t->eos;
    }
    return ML_OK;
}

/* ---- decoding */
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Bytes of a run of byte pieces as UTF-8, each invalid byte as U+FFFD. */
static ml_status put_bytes(ml_byte_buf *out, const unsigned char *b, size_t n) {
    ML_TRY(ml_byte_buf_reserve(out, 3 * n));
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t cp = utf8_next(b + i, n - i, &used);
        if (cp == 0xFFFD && used == 1) out->n += (size_t)utf8_put(out->bytes + out->n, cp);
        else {
            memcpy(out->bytes + out->n, b + i, used);
            out->n += used;
        }
        i += used;
    }
    return ML_OK;
}

static ml_status spm_decode(const ml_tokenizer *t, ml_byte_buf *out, const uint32_t *ids, size_t n) {
    const spm_model *m = t->impl;
    unsigned char *run = malloc(n ? n : 1); /* pending byte pieces */
    if (!run) return ml_fail(ML_ERR_NOMEM, "out of memory decoding %zu ids", n);
    size_t nrun = 0;
    int bos_ws = 1; /* at the start: the first piece's leading U+2581 is the dummy prefix */
    ml_status s = ML_OK;
    for (size_t i = 0; i < n && s == ML_OK; i++) {
        uint32_t id = ids[i];
        if (id >= m->n) {
            s = ml_fail(ML_ERR_RANGE, "token id %u at position %zu is not in the SentencePiece vocabulary (%u pieces)",
                        id, i, m->n);
            break;
        }
        int ty = m->type[id];
        if (ty == T_BYTE) {
            const char *p = m->pool + m->off[id]; /* "<0xNN>", checked at load */
            run[nrun++] = (unsigned char)(hexval(p[3]) * 16 + hexval(p[4]));
            bos_ws = 0;
            continue;
        }
        if (nrun) {
            s = put_bytes(out, run, nrun);
            nrun = 0;
            if (s != ML_OK) break;
        }
        if (ty == T_CONTROL) continue;
        if (ty == T_UNKNOWN) {
            s = ml_byte_buf_reserve(out, m->unk_surface_len);
            if (s == ML_OK) {
                memcpy(out->bytes + out->n, m->unk_surface, m->unk_surface_len);
                out->n += m->unk_surface_len;
            }
            bos_ws = 0;
            continue;
        }
        const char *p = m->pool + m->off[id], *e = p + m->len[id];
        if (bos_ws && m->add_dummy_prefix && e - p >= 3 && !memcmp(p, "\xE2\x96\x81", 3)) p += 3;
        bos_ws = 0;
        if ((s = ml_byte_buf_reserve(out, (size_t)(e - p))) != ML_OK) break;
        while (p < e) {
            if (e - p >= 3 && !memcmp(p, "\xE2\x96\x81", 3)) {
                out->bytes[out->n++] = ' ';
                p += 3;
            } else out->bytes[out->n++] = *p++;
        }
    }
    if (s == ML_OK && nrun) s = put_bytes(out, run, nrun);
    free(run);
    return s;
}

/* ---- the model file: a protobuf wire-format reader for the fields we need */
typedef struct {
    const uint8_t *p, *end, *base;
    const char *name;
} pb;

static ml_status pb_err(const pb *r, const char *what) {
    return ml_fail(ML_ERR_FORMAT, "%s: not a valid SentencePiece model: %s at byte %zu", r->name, what,
                   (size_t)(r->p - r->base));
}

static ml_status pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (r->p >= r->end) return pb_err(r, "truncated varint");
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) {
            *v = x;
            return ML_OK;
        }
    }
    return pb_err(r, "varint longer than 10 bytes");
}

typedef struct {
    uint32_t field;
    int wire;
    uint64_t v;        /* varint / fixed value */
    const uint8_t *d;  /* length-delimited data */
    size_t n;
} pb_field;

static ml_status pb_next(pb *r, pb_field *f) {
    uint64_t key = 0;
    ML_TRY(pb_varint(r, &key));
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->field == 0) return pb_err(r, "field number 0");
    switch (f->wire) {
    case 0: return pb_varint(r, &f->v);
    case 1:
        if (r->end - r->p < 8) return pb_err(r, "truncated fixed64");
        memcpy(&f->v, r->p, 8);
        r->p += 8;
        return ML_OK;
    case 5: {
        if (r->end - r->p < 4) return pb_err(r, "truncated fixed32");
        uint32_t x;
        memcpy(&x, r->p, 4);
        f->v = x;
        r->p += 4;
        return ML_OK;
    }
    case 2: {
        uint64_t n = 0;
        ML_TRY(pb_varint(r, &n));
        if (n > (uint64_t)(r->end - r->p)) return pb_err(r, "length-delimited field runs past the end (truncated file?)");
        f->d = r->p;
        f->n = (size_t)n;
        r->p += n;
        return ML_OK;
    }
    default: return pb_err(r, "unsupported wire type (groups)");
    }
}

static pb pb_sub(const pb *r, const pb_field *f) {
    pb s = {f->d, f->d + f->n, r->base, r->name};
    return s;
}

static ml_status pb_want(const pb *r, const pb_field *f, int wire, const char *what) {
    if (f->wire == wire) return ML_OK;
    pb q = *r;
    char msg[96];
    snprintf(msg, sizeof msg, "field %s has wire type %d, expected %d", what, f->wire, wire);
    return pb_err(&q, msg);
}

typedef struct {
    int model_type, byte_fallback, treat_ws_suffix;
    int32_t unk_id, bos_id, eos_id, pad_id;
    const uint8_t *unk_surface;
    size_t unk_surface_len;
    int has_unk_surface;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
    char name[64];
} spm_specs;

static ml_status parse_trainer(pb r, spm_specs *sp) {
    pb_field f;
    while (r.p < r.end) {
        ML_TRY(pb_next(&r, &f));
        switch (f.field) {
        case 3: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.model_type")); sp->model_type = (int)f.v; break;
        case 35: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.byte_fallback")); sp->byte_fallback = f.v != 0; break;
        case 24: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.treat_whitespace_as_suffix")); sp->treat_ws_suffix = f.v != 0; break;
        case 40: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.unk_id")); sp->unk_id = (int32_t)(uint32_t)f.v; break;
        case 41: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.bos_id")); sp->bos_id = (int32_t)(uint32_t)f.v; break;
        case 42: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.eos_id")); sp->eos_id = (int32_t)(uint32_t)f.v; break;
        case 43: ML_TRY(pb_want(&r, &f, 0, "trainer_spec.pad_id")); sp->pad_id = (int32_t)(uint32_t)f.v; break;
        case 44:
            ML_TRY(pb_want(&r, &f, 2, "trainer_spec.unk_surface"));
            sp->unk_surface = f.d;
            sp->unk_surface_len = f.n;
            sp->has_unk_surface = 1;
            break;
        default: break;
        }
    }
    return ML_OK;
}

static ml_status parse_normalizer(pb r, spm_specs *sp) {
    pb_field f;
    while (r.p < r.end) {
        ML_TRY(pb_next(&r, &f));
        switch (f.field) {
        case 1:
            ML_TRY(pb_want(&r, &f, 2, "normalizer_spec.name"));
            snprintf(sp->name, sizeof sp->name, "%.*s", (int)(f.n < 63 ? f.n : 63), (const char *)f.d);
            break;
        case 2: ML_TRY(pb_want(&r, &f, 2, "normalizer_spec.precompiled_charsmap")); sp->charsmap_len = f.n; break;
        case 3: ML_TRY(pb_want(&r, &f, 0, "normalizer_spec.add_dummy_prefix")); sp->add_dummy_prefix = f.v != 0; break;
        case 4: ML_TRY(pb_want(&r, &f, 0, "normalizer_spec.remove_extra_whitespaces")); sp->remove_extra_ws = f.v != 0; break;
        case 5: ML_TRY(pb_want(&r, &f, 0, "normalizer_spec.escape_whitespaces")); sp->escape_ws = f.v != 0; break;
        default: break;
        }
    }
    return ML_OK;
}

/* One SentencePiece message: piece (1), score (2, float), type (3, default NORMAL). */
static ml_status parse_piece(pb r, const uint8_t **str, size_t *len, float *score, int *type) {
    pb_field f;
    *str = NULL;
    *len = 0;
    *score = 0;
    *type = T_NORMAL;
    int seen = 0;
    while (r.p < r.end) {
        ML_TRY(pb_next(&r, &f));
        if (f.field == 1) {
            ML_TRY(pb_want(&r, &f, 2, "piece"));
            *str = f.d;
            *len = f.n;
            seen = 1;
        } else if (f.field == 2) {
            ML_TRY(pb_want(&r, &f, 5, "score"));
            uint32_t x = (uint32_t)f.v;
            memcpy(score, &x, 4);
        } else if (f.field == 3) {
            ML_TRY(pb_want(&r, &f, 0, "type"));
            *type = (int)f.v;
        }
    }
    if (!seen || *len == 0) return pb_err(&r, "a piece with an empty string");
    if (*type < T_NORMAL || *type > T_BYTE) return pb_err(&r, "a piece of unknown type");
    return ML_OK;
}

/* A varint at *p (< e) that fits 32 bits; 0 when malformed. */
static int sniff_varint(const uint8_t **p, const uint8_t *e, uint32_t *v) {
    uint32_t x = 0;
    for (int sh = 0; sh <= 28; sh += 7) {
        if (*p >= e) return 0;
        uint8_t c = *(*p)++;
        x |= (uint32_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

int ml_spm_sniff(const void *data, size_t n) {
    const uint8_t *p = data, *e = p + n;
    uint32_t len, k;
    if (n < 4 || *p++ != 0x0A) return 0; /* field 1 (pieces), length-delimited */
    if (!sniff_varint(&p, e, &len) || len < 2 || len > 4096 || len > (size_t)(e - p)) return 0;
    /* The first piece message: field 1 (the string) first, then only fields 1-3 with the wire
     * types of the schema, each inside the message. */
    const uint8_t *me = p + len;
    if (*p != 0x0A) return 0;
    while (p < me) {
        if (!sniff_varint(&p, me, &k)) return 0;
        if (k == 0x0A) {
            if (!sniff_varint(&p, me, &len) || len == 0 || len > (size_t)(me - p)) return 0;
            p += len;
        } else if (k == 0x15) {
            if (me - p < 4) return 0;
            p += 4;
        } else if (k == 0x18) {
            if (!sniff_varint(&p, me, &len) || len < T_NORMAL || len > T_BYTE) return 0;
        } else return 0;
    }
    return 1;
}

static void model_free(spm_model *m) {
    if (!m) return;
    free(m->pool);
    free(m->off);
    free(m->len);
    free(m->score);
    free(m->type);
    free(m->piece_slots);
    free(m->ch_keys);
    free(m->ch_vals);
    free(m->pair_keys);
    free(m->pair_vals);
    free(m->unk_surface);
    free(m);
}

static void spm_destroy(ml_tokenizer *t) {
    model_free(t->impl);
    free(t);
}

static const ml_tokenizer_vtable spm_vt = {spm_encode, spm_decode, spm_destroy};

static ml_status build_model(spm_model *m, const uint8_t *data, size_t size, const char *name) {
    pb r = {data, data + size, data, name};
    spm_specs sp = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1, .add_dummy_prefix = 1,
                    .remove_extra_ws = 1, .escape_ws = 1};
    /* Pass 1: structure, counts, specs. */
    size_t n = 0, pool = 0;
    int have_trainer = 0;
    pb_field f;
    while (r.p < r.end) {
        ML_TRY(pb_next(&r, &f));
        if (f.field == 1) {
            ML_TRY(pb_want(&r, &f, 2, "pieces"));
            const uint8_t *s;
            size_t len;
            float score;
            int type;
            ML_TRY(parse_piece(pb_sub(&r, &f), &s, &len, &score, &type));
            n++;
            pool += len;
        } else if (f.field == 2) {
            ML_TRY(pb_want(&r, &f, 2, "trainer_spec"));
            ML_TRY(parse_trainer(pb_sub(&r, &f), &sp));
            have_trainer = 1;
        } else if (f.field == 3) {
            ML_TRY(pb_want(&r, &f, 2, "normalizer_spec"));
            ML_TRY(parse_normalizer(pb_sub(&r, &f), &sp));
        }
    }
    if (n == 0) return ml_fail(ML_ERR_FORMAT, "%s: not a valid SentencePiece model: no pieces", name);
    if (n > 0x7FFFFFF) return ml_fail(ML_ERR_FORMAT, "%s: %zu pieces is too many", name, n);
    if (!have_trainer)
        return ml_fail(ML_ERR_FORMAT, "%s: not a valid SentencePiece model: no trainer_spec (truncated file?)", name);
    if (sp.model_type != BPE_MODEL) {
        static const char *types[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        int t = sp.model_type;
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: SentencePiece model type %s; only BPE models are supported", name,
                       t >= 0 && t <= 4 ? types[t] : "?");
    }
    if (sp.charsmap_len > 0)
        return ml_fail(ML_ERR_UNSUPPORTED,
                       "%s: normalization rule '%s' needs a precompiled charsmap (%zu bytes); only identity "
                       "normalization is supported",
                       name, sp.name[0] ? sp.name : "?", sp.charsmap_len);
    if (sp.remove_extra_ws)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: normalizer remove_extra_whitespaces is not supported", name);
    if (sp.treat_ws_suffix)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: treat_whitespace_as_suffix is not supported", name);

    /* Pass 2: the pieces. */
    m->n = (uint32_t)n;
    m->pool = malloc(pool ? pool : 1);
    m->off = malloc(n * sizeof *m->off);
    m->len = malloc(n * sizeof *m->len);
    m->score = malloc(n * sizeof *m->score);
    m->type = malloc(n);
    m->piece_mask = table_size(n) - 1;
    m->piece_slots = calloc(m->piece_mask + 1, sizeof *m->piece_slots);
    if (!m->pool || !m->off || !m->len || !m->score || !m->type || !m->piece_slots)
        return ml_fail(ML_ERR_NOMEM, "out of memory loading %s", name);
    r.p = data;
    size_t k = 0, at = 0;
    while (r.p < r.end) {
        ML_TRY(pb_next(&r, &f));
        if (f.field != 1) continue;
        const uint8_t *s;
        size_t len;
        float score;
        int type;
        ML_TRY(parse_piece(pb_sub(&r, &f), &s, &len, &score, &type));
        memcpy(m->pool + at, s, len);
        m->off[k] = (uint32_t)at;
        m->len[k] = (uint32_t)len;
        m->score[k] = score;
        m->type[k] = (uint8_t)type;
        at += len;
        k++;
    }
    memcpy(m->normalizer, sp.name, sizeof m->normalizer);
    m->byte_fallback = sp.byte_fallback;
    m->add_dummy_prefix = sp.add_dummy_prefix;
    m->escape_ws = sp.escape_ws;
    m->unk = -1;
    for (int i = 0; i < 128; i++) m->ascii[i] = -1;
    for (int i = 0; i < 256; i++) m->byte_id[i] = -1;
    size_t n_char = 0;
    for (uint32_t id = 0; id < n; id++) {
        const char *s = m->pool + m->off[id];
        uint32_t len = m->len[id];
        int ty = m->type[id];
        m->counts[ty]++;
        if (len > m->max_piece_len) m->max_piece_len = len;
        if (piece_find(m, s, len) >= 0)
            return ml_fail(ML_ERR_FORMAT, "%s: piece %u '%.*s' is defined twice", name, id, (int)len, s);
        size_t i = (size_t)ml_fnv1a64(ML_FNV1A64_INIT, s, len) & m->piece_mask;
        while (m->piece_slots[i]) i = (i + 1) & m->piece_mask;
        m->piece_slots[i] = id + 1;
        if (ty == T_USER_DEFINED || ty == T_UNUSED)
            return ml_fail(ML_ERR_UNSUPPORTED, "%s: piece %u '%.*s' is %s; such pieces are not supported", name, id,
                           (int)len, s, ty == T_UNUSED ? "UNUSED" : "USER_DEFINED");
        if (ty == T_UNKNOWN) {
            if (m->unk >= 0) return ml_fail(ML_ERR_FORMAT, "%s: more than one UNKNOWN piece (%d and %u)", name, m->unk, id);
            m->unk = (int32_t)id;
        }
        if (ty == T_BYTE) {
            int hi = len == 6 ? hexval(s[3]) : -1, lo = len == 6 ? hexval(s[4]) : -1;
            if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || hi < 0 || lo < 0)
                return ml_fail(ML_ERR_FORMAT, "%s: BYTE piece %u '%.*s' is not <0xNN>", name, id, (int)len, s);
            if (!sp.byte_fallback)
                return ml_fail(ML_ERR_FORMAT, "%s: BYTE piece %u although byte_fallback is off", name, id);
            m->byte_id[hi * 16 + lo] = (int32_t)id;
        }
        if (ty == T_NORMAL) {
            size_t used;
            uint32_t cp = utf8_next((const unsigned char *)s, len, &used);
            if (used == len) {
                if (cp < 128) m->ascii[cp] = (int32_t)id;
                else n_char++;
            }
        }
    }
    if (m->unk < 0) return ml_fail(ML_ERR_FORMAT, "%s: no UNKNOWN piece (<unk>)", name);
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (m->byte_id[b] < 0)
                return ml_fail(ML_ERR_FORMAT, "%s: byte_fallback is on but the piece <0x%02X> is missing", name, b);
    if (sp.has_unk_surface) {
        m->unk_surface_len = sp.unk_surface_len;
        if (!(m->unk_surface = malloc(sp.unk_surface_len + 1))) return ml_fail(ML_ERR_NOMEM, "out of memory");
        memcpy(m->unk_surface, sp.unk_surface, sp.unk_surface_len);
    } else {
        m->unk_surface_len = 5;
        if (!(m->unk_surface = strdup(" \xE2\x81\x87 "))) return ml_fail(ML_ERR_NOMEM, "out of memory");
    }

    /* Single characters (non-ASCII) and the pair table: every split of a NORMAL piece at a
     * character boundary into two NORMAL pieces is a merge. */
    m->ch_mask = table_size(n_char) - 1;
    m->ch_keys = calloc(m->ch_mask + 1, sizeof *m->ch_keys);
    m->ch_vals = calloc(m->ch_mask + 1, sizeof *m->ch_vals);
    if (!m->ch_keys || !m->ch_vals) return ml_fail(ML_ERR_NOMEM, "out of memory loading %s", name);
    size_t n_pairs = 0;
    m->barrier_nl = 1;
    m->barrier_ws = 1;
    for (uint32_t id = 0; id < n; id++) {
        if (m->type[id] != T_NORMAL) continue;
        const unsigned char *s = (const unsigned char *)m->pool + m->off[id];
        size_t len = m->len[id], used;
        uint32_t cp = utf8_next(s, len, &used);
        if (used == len) {
            if (cp >= 128) {
                size_t i = mix64(cp) & m->ch_mask;
                while (m->ch_vals[i]) i = (i + 1) & m->ch_mask;
                m->ch_keys[i] = cp;
                m->ch_vals[i] = (int32_t)id + 1;
            }
        } else {
            if (memchr(s, '\n', len)) m->barrier_nl = 0;
            for (size_t i = 0, u; i < len; i += u) { /* a U+2581 after another character? */
                uint32_t c = utf8_next(s + i, len - i, &u);
                if (i + u + 3 <= len && c != SPACE_CP && !memcmp(s + i + u, "\xE2\x96\x81", 3)) m->barrier_ws = 0;
            }
            n_pairs += len; /* at most one split per byte */
        }
    }
    m->pair_mask = table_size(n_pairs) - 1;
    m->pair_keys = calloc(m->pair_mask + 1, sizeof *m->pair_keys);
    m->pair_vals = calloc(m->pair_mask + 1, sizeof *m->pair_vals);
    if (!m->pair_keys || !m->pair_vals) return ml_fail(ML_ERR_NOMEM, "out of memory loading %s", name);
    for (uint32_t id = 0; id < n; id++) {
        if (m->type[id] != T_NORMAL) continue;
        const char *s = m->pool + m->off[id];
        size_t len = m->len[id], used;
        for (size_t cut = 0; cut < len;) {
            utf8_next((const unsigned char *)s + cut, len - cut, &used);
            cut += used;
            if (cut >= len) break;
            int32_t a = piece_find(m, s, cut), b = piece_find(m, s + cut, len - cut);
            if (a >= 0 && b >= 0 && m->type[a] == T_NORMAL && m->type[b] == T_NORMAL) pair_insert(m, a, b, (int32_t)id);
        }
    }
    return ML_OK;
}

ml_status ml_tokenizer_spm_from_memory(ml_tokenizer **out, const void *data, size_t n, const char *name) {
    *out = NULL;
    spm_model *m = calloc(1, sizeof *m);
    ml_tokenizer *t = calloc(1, sizeof *t);
    if (!m || !t) {
        free(m);
        free(t);
        return ml_fail(ML_ERR_NOMEM, "out of memory loading %s", name);
    }
    ml_status s = build_model(m, data, n, name);
    if (s != ML_OK) {
        model_free(m);
        free(t);
        return s;
    }
    t->vt = &spm_vt;
    t->impl = m;
    t->vocab_size = m->n;
    /* bos/eos/pad as sentencepiece reports them: the trainer's id when it names a CONTROL piece. */
    spm_specs sp = {.bos_id = 1, .eos_id = 2, .pad_id = -1};
    pb r = {data, (const uint8_t *)data + n, data, name};
    pb_field f;
    while (r.p < r.end && pb_next(&r, &f) == ML_OK)
        if (f.field == 2 && f.wire == 2) parse_trainer(pb_sub(&r, &f), &sp);
    int32_t ids[3] = {sp.bos_id, sp.eos_id, sp.pad_id};
    for (int i = 0; i < 3; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= m->n || m->type[ids[i]] != T_CONTROL) ids[i] = -1;
    t->bos = ids[0];
    t->eos = ids[1];
    t->pad = ids[2];
    snprintf(t->fingerprint, sizeof t->fingerprint, "spm-%016" PRIx64, ml_fnv1a64(ML_FNV1A64_INIT, data, n));
    *out = t;
    return ML_OK;
}

ml_status ml_tokenizer_spm_open(ml_tokenizer **t, const char *path) {
    *t = NULL;
    char *data = NULL;
    size_t n = 0;
    ML_TRY(ml_read_file(path, &data, &n));
    ml_status s = ml_tokenizer_spm_from_memory(t, data, n, path);
    free(data);
    return s;
}

ml_status ml_tokenizer_spm_info(const ml_tokenizer *t, ml_spm_info *info) {
    if (!t || t->vt != &spm_vt) return ml_fail(ML_ERR_UNSUPPORTED, "not a SentencePiece tokenizer");
    const spm_model *m = t->impl;
    memset(info, 0, sizeof *info);
    info->n_normal = m->counts[T_NORMAL];
    info->n_byte = m->counts[T_BYTE];
    info->n_control = m->counts[T_CONTROL];
    info->n_unknown = m->counts[T_UNKNOWN];
    info->unk = m->unk;
    info->byte_fallback = m->byte_fallback;
    info->add_dummy_prefix = m->add_dummy_prefix;
    info->escape_whitespaces = m->escape_ws;
    info->line_parallel = m->barrier_nl;
    info->word_parallel = m->barrier_ws && m->escape_ws;
    snprintf(info->normalizer, sizeof info->normalizer, "%s", m->normalizer[0] ? m->normalizer : "(none)");
    return ML_OK;
}

int ml_tokenizer_spm_piece_kind(const ml_tokenizer *t, uint32_t id, float *score) {
    if (!t || t->vt != &spm_vt) return 0;
    const spm_model *m = t->impl;
    if (id >= m->n) return 0;
    if (score) *score = m->score[id];
    return m->type[id];
}

int32_t ml_tokenizer_spm_find(const ml_tokenizer *t, const char *s, size_t n) {
    if (!t || t->vt != &spm_vt) return -1;
    return piece_find(t->impl, s, n);
}

const char *ml_tokenizer_spm_piece(const ml_tokenizer *t, uint32_t id, size_t *len) {
    if (!t || t->vt != &spm_vt) return NULL;
    const spm_model *m = t->impl;
    if (id >= m->n) return NULL;
    *len = m->len[id];
    return m->pool + m->off[id];
}
