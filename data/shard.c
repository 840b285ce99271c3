#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "common/atomic_file.h"

#define MAX_HEADER_BYTES 65536u /* any version: a bound for a corrupt header-size field */
#define ZSTD_FRAME_HEADER_MAX 18 /* ZSTD_FRAMEHEADERSIZE_MAX, which zstd.h only shows to static linkers */

/* ---------------------------------------------------------------- little-endian helpers */

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Token arrays are stored little-endian; on a big-endian host swap them in place. */
static void u32_to_from_le(uint32_t *v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) v[i] = __builtin_bswap32(v[i]);
#else
    (void)v;
    (void)n;
#endif
}

uint64_t ml_fnv1a64(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Header field offsets (see shard.h). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_FLAGS = 12, H_HEADER_BYTES = 16, H_TOKEN_BYTES = 20,
    H_TOKENS = 24, H_DOCS = 32, H_VOCAB = 40, H_FRAME_TOKENS = 44, H_FRAMES = 48,
    H_DATA_OFF = 56, H_DATA_BYTES = 64, H_META_OFF = 72, H_META_BYTES = 80, H_DOCS_OFF = 88,
    H_INDEX_OFF = 96, H_TAIL_SUM = 104, H_RESERVED = 112, H_HEADER_SUM = 120,
};

/* ---------------------------------------------------------------- writer */

struct ml_shard_writer {
    ml_atomic_file af;
    uint32_t vocab;
    uint32_t frame_tokens;
    int level;
    char tokenizer[ML_SHARD_MAX_STR];
    char domain[ML_SHARD_MAX_STR];
    int started; /* a document was begun: frame size and level are fixed */
    int failed;  /* an i/o error happened: only abort is possible */
    uint32_t *frame; /* tokens of the frame being filled */
    size_t frame_n;
    void *cbuf;
    size_t cbuf_cap;
    ZSTD_CCtx *cctx;
    uint64_t n_tokens;
    uint64_t cur_doc_tokens;
    uint64_t *docs;
    size_t n_docs, docs_cap;
    uint64_t *index; /* 2 per frame: offset, bytes */
    size_t n_frames, index_cap;
    uint64_t pos; /* file offset of the next byte */
};

static ml_status wr_bytes(ml_shard_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->af.fp) != n) {
        w->failed = 1;
        return ml_fail(ML_ERR_IO, "cannot write %s: %s", w->af.final_path, strerror(errno));
    }
    w->pos += n;
    return ML_OK;
}

ml_status ml_shard_writer_open(ml_shard_writer **out, const char *path) {
    *out = NULL;
    ml_shard_writer *w = calloc(1, sizeof *w);
    if (!w) return ml_fail(ML_ERR_NOMEM, "out of memory opening shard writer for %s", path);
    w->frame_tokens = ML_SHARD_DEFAULT_FRAME_TOKENS;
    w->level = 3;
    ml_status s = ml_atomic_begin(&w->af, path, 1);
    if (s != ML_OK) {
        free(w);
        return s;
    }
    /* Placeholder header: rewritten at close, when the counts and offsets are known. */
    uint8_t zero[ML_SHARD_HEADER_BYTES] = {0};
    s = wr_bytes(w, zero, sizeof zero);
    if (s != ML_OK) {
        ml_shard_writer_abort(w);
        return s;
    }
    *out = w;
    return ML_OK;
}

ml_status ml_shard_writer_set_vocab(ml_shard_writer *w, uint32_t vocab_size) {
    if (w->started) return ml_fail(ML_ERR_ARG, "%s: the vocab size must be set before the first document", w->af.final_path);
    if (vocab_size == 0) return ml_fail(ML_ERR_ARG, "%s: vocab size must be positive", w->af.final_path);
    w->vocab = vocab_size;
    return ML_OK;
}

static ml_status set_str(char *dst, const char *src, const char *what, const char *path) {
    if (strlen(src) >= ML_SHARD_MAX_STR)
        return ml_fail(ML_ERR_ARG, "%s: %s '%.40s...' is longer than %d bytes", path, what, src, ML_SHARD_MAX_STR - 1);
    snprintf(dst, ML_SHARD_MAX_STR, "%s", src);
    return ML_OK;
}

ml_status ml_shard_writer_set_tokenizer(ml_shard_writer *w, const char *fingerprint) {
    if (!fingerprint[0]) return ml_fail(ML_ERR_ARG, "%s: empty tokenizer fingerprint", w->af.final_path);
    return set_str(w->tokenizer, fingerprint, "tokenizer fingerprint", w->af.final_path);
}

ml_status ml_shard_writer_set_domain(ml_shard_writer *w, const char *domain) {
    return set_str(w->domain, domain, "domain", w->af.final_path);
}

ml_status ml_shard_writer_set_frame_tokens(ml_shard_writer *w, uint32_t frame_tokens) {
    if (w->started) return ml_fail(ML_ERR_ARG, "%s: the frame size must be set before the first document", w->af.final_path);
    if (frame_tokens == 0 || frame_tokens > ML_SHARD_MAX_FRAME_TOKENS)
        return ml_fail(ML_ERR_ARG, "%s: tokens per frame must be in 1..%u, got %u", w->af.final_path,
                       ML_SHARD_MAX_FRAME_TOKENS, frame_tokens);
    w->frame_tokens = frame_tokens;
    return ML_OK;
}

ml_status ml_shard_writer_set_level(ml_shard_writer *w, int level) {
    if (w->started) return ml_fail(ML_ERR_ARG, "%s: the zstd level must be set before the first document", w->af.final_path);
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return ml_fail(ML_ERR_ARG, "%s: zstd level %d is outside %d..%d", w->af.final_path, level, ZSTD_minCLevel(),
                       ZSTD_maxCLevel());
    w->level = level;
    return ML_OK;
}

static ml_status writer_start(ml_shard_writer *w) {
    if (w->started) return ML_OK;
    if (w->vocab == 0) return ml_fail(ML_ERR_ARG, "%s: set the vocab size before adding documents", w->af.final_path);
    w->frame = malloc((size_t)w->frame_tokens * 4);
    w->cbuf_cap = ZSTD_compressBound((size_t)w->frame_tokens * 4);
    w->cbuf = malloc(w->cbuf_cap);
    w->cctx = ZSTD_createCCtx();
    if (!w->frame || !w->cbuf || !w->cctx)
        return ml_fail(ML_ERR_NOMEM, "out of memory for a %u-token frame writing %s", w->frame_tokens, w->af.final_path);
    /* Content size and checksum in every frame: the reader checks both. */
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    w->started = 1;
    return ML_OK;
}

static ml_status flush_frame(ml_shard_writer *w) {
    if (w->frame_n == 0) return ML_OK;
    u32_to_from_le(w->frame, w->frame_n);
    size_t c = ZSTD_compress2(w->cctx, w->cbuf, w->cbuf_cap, w->frame, w->frame_n * 4);
    if (ZSTD_isError(c)) {
        w->failed = 1;
        return ml_fail(ML_ERR_IO, "%s: zstd compression of frame %zu failed: %s", w->af.final_path, w->n_frames,
                       ZSTD_getErrorName(c));
    }
    if (w->n_frames == w->index_cap) {
        size_t cap = w->index_cap ? 2 * w->index_cap : 64;
        uint64_t *p = realloc(w->index, cap * 2 * sizeof *p);
        if (!p) {
            w->failed = 1;
            return ml_fail(ML_ERR_NOMEM, "out of memory for the frame index of %s", w->af.final_path);
        }
        w->index = p;
        w->index_cap = cap;
    }
    w->index[2 * w->n_frames] = w->pos;
    w->index[2 * w->n_frames + 1] = c;
    ML_TRY(wr_bytes(w, w->cbuf, c));
    w->n_frames++;
    w->frame_n = 0;
    return ML_OK;
}

ml_status ml_shard_writer_begin_doc(ml_shard_writer *w) {
    if (w->failed) return ml_fail(ML_ERR_ARG, "%s: writer already failed", w->af.final_path);
    ML_TRY(writer_start(w));
    if (w->n_docs == w->docs_cap) {
        size_t cap = w->docs_cap ? 2 * w->docs_cap : 1024;
        uint64_t *p = realloc(w->docs, cap * sizeof *p);
        if (!p) return ml_fail(ML_ERR_NOMEM, "out of memory for the document table of %s", w->af.final_path);
        w->docs = p;
        w->docs_cap = cap;
    }
    w->docs[w->n_docs++] = w->n_tokens;
    w->cur_doc_tokens = 0;
    return ML_OK;
}

ml_status ml_shard_writer_add_tokens(ml_shard_writer *w, const uint32_t *ids, size_t n) {
    if (w->failed) return ml_fail(ML_ERR_ARG, "%s: writer already failed", w->af.final_path);
    if (w->n_docs == 0) return ml_fail(ML_ERR_ARG, "%s: tokens added before the first document was begun", w->af.final_path);
    /* Validate first so that a rejected document leaves the writer as it was. */
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= w->vocab)
            return ml_fail(ML_ERR_RANGE, "%s: document %zu, position %" PRIu64 ": token id %u is >= the vocab size %u",
                           w->af.final_path, w->n_docs - 1, w->cur_doc_tokens + i, ids[i], w->vocab);
    size_t done = 0;
    while (done < n) {
        size_t take = w->frame_tokens - w->frame_n;
        if (take > n - done) take = n - done;
        memcpy(w->frame + w->frame_n, ids + done, take * 4);
        w->frame_n += take;
        done += take;
        w->n_tokens += take;
        w->cur_doc_tokens += take;
        if (w->frame_n == w->frame_tokens) ML_TRY(flush_frame(w));
    }
    return ML_OK;
}

ml_status ml_shard_writer_append_doc(ml_shard_writer *w, const uint32_t *ids, size_t n) {
    if (w->failed) return ml_fail(ML_ERR_ARG, "%s: writer already failed", w->af.final_path);
    ML_TRY(writer_start(w));
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= w->vocab)
            return ml_fail(ML_ERR_RANGE, "%s: document %zu, position %zu: token id %u is >= the vocab size %u",
                           w->af.final_path, w->n_docs, i, ids[i], w->vocab);
    ML_TRY(ml_shard_writer_begin_doc(w));
    return ml_shard_writer_add_tokens(w, ids, n);
}

uint64_t ml_shard_writer_tokens(const ml_shard_writer *w) { return w->n_tokens; }
uint64_t ml_shard_writer_docs(const ml_shard_writer *w) { return w->n_docs; }

static ml_status writer_finish(ml_shard_writer *w) {
    if (w->failed) return ml_fail(ML_ERR_ARG, "%s: writer already failed", w->af.final_path);
    if (!w->tokenizer[0]) return ml_fail(ML_ERR_ARG, "%s: no tokenizer fingerprint was set", w->af.final_path);
    if (w->vocab == 0) return ml_fail(ML_ERR_ARG, "%s: no vocab size was set", w->af.final_path);
    if (w->started) ML_TRY(flush_frame(w));
    uint64_t data_off = ML_SHARD_HEADER_BYTES, data_bytes = w->pos - data_off;
    uint64_t h = ML_FNV1A64_INIT;

    /* meta */
    const char *keys[2] = {"tokenizer", "domain"};
    const char *vals[2] = {w->tokenizer, w->domain};
    uint8_t meta[4 + 2 * (2 + 16 + 4 + ML_SHARD_MAX_STR)];
    size_t m = 0;
    put_u32(meta, 2);
    m = 4;
    for (int i = 0; i < 2; i++) {
        size_t kl = strlen(keys[i]), vl = strlen(vals[i]);
        put_u16(meta + m, (uint16_t)kl);
        memcpy(meta + m + 2, keys[i], kl);
        m += 2 + kl;
        put_u32(meta + m, (uint32_t)vl);
        memcpy(meta + m + 4, vals[i], vl);
        m += 4 + vl;
    }
    uint64_t meta_off = w->pos;
    h = ml_fnv1a64(h, meta, m);
    ML_TRY(wr_bytes(w, meta, m));

    /* doc table and frame index, in chunks through a small LE buffer */
    uint8_t buf[8 * 512];
    uint64_t docs_off = w->pos;
    for (size_t i = 0; i < w->n_docs;) {
        size_t k = 0;
        for (; k < 512 && i < w->n_docs; k++, i++) put_u64(buf + 8 * k, w->docs[i]);
        h = ml_fnv1a64(h, buf, 8 * k);
        ML_TRY(wr_bytes(w, buf, 8 * k));
    }
    uint64_t index_off = w->pos;
    for (size_t i = 0; i < 2 * w->n_frames;) {
        size_t k = 0;
        for (; k < 512 && i < 2 * w->n_frames; k++, i++) put_u64(buf + 8 * k, w->index[i]);
        h = ml_fnv1a64(h, buf, 8 * k);
        ML_TRY(wr_bytes(w, buf, 8 * k));
    }

    uint8_t hd[ML_SHARD_HEADER_BYTES] = {0};
    memcpy(hd + H_MAGIC, ML_SHARD_MAGIC, 8);
    put_u32(hd + H_VERSION, ML_SHARD_VERSION);
    put_u32(hd + H_FLAGS, 0);
    put_u32(hd + H_HEADER_BYTES, ML_SHARD_HEADER_BYTES);
    put_u32(hd + H_TOKEN_BYTES, 4);
    put_u64(hd + H_TOKENS, w->n_tokens);
    put_u64(hd + H_DOCS, w->n_docs);
    put_u32(hd + H_VOCAB, w->vocab);
    put_u32(hd + H_FRAME_TOKENS, w->frame_tokens);
    put_u64(hd + H_FRAMES, w->n_frames);
    put_u64(hd + H_DATA_OFF, data_off);
    put_u64(hd + H_DATA_BYTES, data_bytes);
    put_u64(hd + H_META_OFF, meta_off);
    put_u64(hd + H_META_BYTES, m);
    put_u64(hd + H_DOCS_OFF, docs_off);
    put_u64(hd + H_INDEX_OFF, index_off);
    put_u64(hd + H_TAIL_SUM, h);
    put_u64(hd + H_RESERVED, 0);
    put_u64(hd + H_HEADER_SUM, ml_fnv1a64(ML_FNV1A64_INIT, hd, H_HEADER_SUM));
    if (fseek(w->af.fp, 0, SEEK_SET) != 0 || fwrite(hd, 1, sizeof hd, w->af.fp) != sizeof hd) {
        w->failed = 1;
        return ml_fail(ML_ERR_IO, "cannot write the header of %s: %s", w->af.final_path, strerror(errno));
    }
    return ml_atomic_commit(&w->af);
}

static void writer_free(ml_shard_writer *w) {
    free(w->frame);
    free(w->cbuf);
    ZSTD_freeCCtx(w->cctx);
    free(w->docs);
    free(w->index);
    free(w);
}

ml_status ml_shard_writer_close(ml_shard_writer *w) {
    ml_status s = writer_finish(w);
    if (s != ML_OK) ml_atomic_abort(&w->af);
    writer_free(w);
    return s;
}

void ml_shard_writer_abort(ml_shard_writer *w) {
    if (!w) return;
    ml_atomic_abort(&w->af);
    writer_free(w);
}

/* ---------------------------------------------------------------- reader */

struct ml_shard_cache {
    uint32_t *tokens;
    uint32_t cap_tokens;
    void *cbuf;
    uint64_t cap_bytes;
    ZSTD_DCtx *dctx;
    const ml_shard_reader *owner; /* whose frame is cached (NULL: none) */
    uint64_t frame;
};

struct ml_shard_reader {
    char path[4096];
    int fd;
    ml_shard_info info;
    uint64_t data_off;
    uint64_t *docs;
    uint64_t *index; /* 2 per frame */
    ml_shard_cache *cache;
    int own_cache;
};

ml_status ml_shard_cache_new(ml_shard_cache **out, uint32_t max_frame_tokens, uint64_t max_frame_bytes) {
    *out = NULL;
    ml_shard_cache *c = calloc(1, sizeof *c);
    if (!c) return ml_fail(ML_ERR_NOMEM, "out of memory for a shard frame cache");
    if (max_frame_tokens == 0) max_frame_tokens = 1;
    if (max_frame_bytes == 0) max_frame_bytes = 1;
    c->tokens = malloc((size_t)max_frame_tokens * 4);
    c->cbuf = malloc(max_frame_bytes);
    c->dctx = ZSTD_createDCtx();
    c->cap_tokens = max_frame_tokens;
    c->cap_bytes = max_frame_bytes;
    if (!c->tokens || !c->cbuf || !c->dctx) {
        ml_shard_cache_free(c);
        return ml_fail(ML_ERR_NOMEM, "out of memory for a shard frame cache of %u tokens", max_frame_tokens);
    }
    *out = c;
    return ML_OK;
}

void ml_shard_cache_free(ml_shard_cache *c) {
    if (!c) return;
    free(c->tokens);
    free(c->cbuf);
    ZSTD_freeDCtx(c->dctx);
    free(c);
}

/* Tokens a frame of this reader decodes to (the largest frame, for sizing a cache). */
static uint32_t reader_cache_tokens(const ml_shard_reader *r) {
    uint64_t n = r->info.n_tokens < r->info.frame_tokens ? r->info.n_tokens : r->info.frame_tokens;
    return (uint32_t)n;
}

ml_status ml_shard_use_cache(ml_shard_reader *r, ml_shard_cache *c) {
    if (c->cap_tokens < reader_cache_tokens(r) || c->cap_bytes < r->info.max_frame_bytes)
        return ml_fail(ML_ERR_ARG, "%s: the shared frame cache (%u tokens, %" PRIu64 " bytes) is too small for its frames",
                       r->path, c->cap_tokens, c->cap_bytes);
    if (r->own_cache) ml_shard_cache_free(r->cache);
    r->cache = c;
    r->own_cache = 0;
    return ML_OK;
}

static ml_status pread_all(const ml_shard_reader *r, void *buf, size_t n, uint64_t off, const char *what) {
    uint8_t *p = buf;
    while (n) {
        ssize_t got = pread(r->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return ml_fail(ML_ERR_IO, "cannot read %s of %s: %s", what, r->path, strerror(errno));
        if (got == 0) return ml_fail(ML_ERR_FORMAT, "%s is truncated: end of file while reading %s", r->path, what);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return ML_OK;
}

/* [off, off+len) lies inside [lo, hi) without overflow. */
static int in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi) {
    return off >= lo && off <= hi && len <= hi - off;
}

static ml_status parse_meta(ml_shard_reader *r, const uint8_t *m, uint64_t n) {
    if (n < 4) return ml_fail(ML_ERR_FORMAT, "%s: metadata section is %" PRIu64 " bytes, too short", r->path, n);
    uint32_t count = get_u32(m);
    uint64_t p = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (n - p < 2) goto bad;
        uint16_t kl = get_u16(m + p);
        p += 2;
        if (n - p < kl) goto bad;
        const char *key = (const char *)m + p;
        p += kl;
        if (n - p < 4) goto bad;
        uint32_t vl = get_u32(m + p);
        p += 4;
        if (n - p < vl) goto bad;
        const char *val = (const char *)m + p;
        p += vl;
        char *dst = NULL;
        if (kl == 9 && !memcmp(key, "tokenizer", 9)) dst = r->info.tokenizer;
        if (kl == 6 && !memcmp(key, "domain", 6)) dst = r->info.domain;
        if (!dst) continue; /* a key from a later writer */
        if (vl >= ML_SHARD_MAX_STR || memchr(val, 0, vl))
            return ml_fail(ML_ERR_FORMAT, "%s: metadata value of '%.*s' is malformed (%u bytes)", r->path, (int)kl, key, vl);
        memcpy(dst, val, vl);
        dst[vl] = 0;
    }
    if (!r->info.tokenizer[0]) return ml_fail(ML_ERR_FORMAT, "%s: metadata has no tokenizer fingerprint", r->path);
    return ML_OK;
bad:
    return ml_fail(ML_ERR_FORMAT, "%s: metadata section is malformed", r->path);
}

static ml_status reader_validate(ml_shard_reader *r) {
    ml_shard_info *in = &r->info;
    struct stat st;
    if (fstat(r->fd, &st) != 0) return ml_fail(ML_ERR_IO, "cannot stat %s: %s", r->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return ml_fail(ML_ERR_IO, "%s is not a regular file", r->path);
    uint64_t fsz = (uint64_t)st.st_size;
    in->file_bytes = fsz;

    /* The stable prefix: magic, version, flags, header size. */
    uint8_t pre[20];
    if (fsz < 8 || pread_all(r, pre, 8, 0, "the header") != ML_OK || memcmp(pre, ML_SHARD_MAGIC, 8) != 0)
        return ml_fail(ML_ERR_FORMAT, "%s is not a token shard (no %s magic)", r->path, ML_SHARD_MAGIC);
    if (fsz < sizeof pre)
        return ml_fail(ML_ERR_FORMAT, "%s is truncated: %" PRIu64 " bytes, shorter than a header", r->path, fsz);
    ML_TRY(pread_all(r, pre, sizeof pre, 0, "the header"));
    uint32_t version = get_u32(pre + H_VERSION), hbytes = get_u32(pre + H_HEADER_BYTES);
    if (hbytes < 28 || hbytes > MAX_HEADER_BYTES)
        return ml_fail(ML_ERR_FORMAT, "%s: corrupt header (header size %u)", r->path, hbytes);
    if (fsz < hbytes)
        return ml_fail(ML_ERR_FORMAT, "%s is truncated: %" PRIu64 " bytes, shorter than its %u-byte header", r->path, fsz, hbytes);
    uint8_t *hd = malloc(hbytes);
    if (!hd) return ml_fail(ML_ERR_NOMEM, "out of memory reading %s", r->path);
    ml_status s = pread_all(r, hd, hbytes, 0, "the header");
    if (s == ML_OK && get_u64(hd + hbytes - 8) != ml_fnv1a64(ML_FNV1A64_INIT, hd, hbytes - 8))
        s = ml_fail(ML_ERR_FORMAT, "%s: header checksum mismatch (the file is corrupt)", r->path);
    if (s == ML_OK && version != ML_SHARD_VERSION)
        s = ml_fail(ML_ERR_UNSUPPORTED, "%s: shard format version %u is not supported (this build reads version %u)",
                    r->path, version, ML_SHARD_VERSION);
    if (s == ML_OK && hbytes != ML_SHARD_HEADER_BYTES)
        s = ml_fail(ML_ERR_FORMAT, "%s: header is %u bytes, version 1 has %u", r->path, hbytes, ML_SHARD_HEADER_BYTES);
    if (s != ML_OK) {
        free(hd);
        return s;
    }
    in->version = version;
    in->flags = get_u32(hd + H_FLAGS);
    in->token_bytes = get_u32(hd + H_TOKEN_BYTES);
    in->n_tokens = get_u64(hd + H_TOKENS);
    in->n_docs = get_u64(hd + H_DOCS);
    in->vocab_size = get_u32(hd + H_VOCAB);
    in->frame_tokens = get_u32(hd + H_FRAME_TOKENS);
    in->n_frames = get_u64(hd + H_FRAMES);
    uint64_t data_off = get_u64(hd + H_DATA_OFF), data_bytes = get_u64(hd + H_DATA_BYTES);
    uint64_t meta_off = get_u64(hd + H_META_OFF), meta_bytes = get_u64(hd + H_META_BYTES);
    uint64_t docs_off = get_u64(hd + H_DOCS_OFF), index_off = get_u64(hd + H_INDEX_OFF);
    uint64_t tail_sum = get_u64(hd + H_TAIL_SUM);
    free(hd);
    r->data_off = data_off;
    in->data_bytes = data_bytes;

    if (in->flags != 0)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: unknown shard flags 0x%x (written by a newer version?)", r->path, in->flags);
    if (in->token_bytes != 4)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: %u-byte token ids are not supported (only 4)", r->path, in->token_bytes);
    if (in->vocab_size == 0) return ml_fail(ML_ERR_FORMAT, "%s: vocab size is 0", r->path);
    if (in->frame_tokens == 0 || in->frame_tokens > ML_SHARD_MAX_FRAME_TOKENS)
        return ml_fail(ML_ERR_FORMAT, "%s: corrupt header (%u tokens per frame)", r->path, in->frame_tokens);
    uint64_t want_frames = in->n_tokens / in->frame_tokens + (in->n_tokens % in->frame_tokens != 0);
    if (in->n_frames != want_frames)
        return ml_fail(ML_ERR_FORMAT, "%s: corrupt header (%" PRIu64 " frames for %" PRIu64 " tokens of %u per frame)",
                       r->path, in->n_frames, in->n_tokens, in->frame_tokens);
    if (in->n_tokens > 0 && in->n_docs == 0)
        return ml_fail(ML_ERR_FORMAT, "%s: %" PRIu64 " tokens but no documents", r->path, in->n_tokens);
    if (in->n_docs > fsz / 8 || in->n_frames > fsz / 16)
        return ml_fail(ML_ERR_FORMAT, "%s is truncated or corrupt: %" PRIu64 " documents and %" PRIu64
                       " frames cannot fit in %" PRIu64 " bytes", r->path, in->n_docs, in->n_frames, fsz);
    uint64_t docs_bytes = in->n_docs * 8, index_bytes = in->n_frames * 16;
    struct { const char *name; uint64_t off, len; } sec[4] = {
        {"frame data", data_off, data_bytes}, {"metadata", meta_off, meta_bytes},
        {"document table", docs_off, docs_bytes}, {"frame index", index_off, index_bytes}};
    for (int i = 0; i < 4; i++)
        if (!in_range(sec[i].off, sec[i].len, hbytes, fsz))
            return ml_fail(ML_ERR_FORMAT, "%s is truncated or corrupt: its %s (bytes %" PRIu64 "+%" PRIu64
                           ") lies outside the file (%" PRIu64 " bytes)", r->path, sec[i].name, sec[i].off, sec[i].len, fsz);
    if (meta_bytes > (1u << 20)) return ml_fail(ML_ERR_FORMAT, "%s: metadata section of %" PRIu64 " bytes is implausible", r->path, meta_bytes);

    /* Tail: read, checksum, parse. */
    uint8_t *meta = malloc(meta_bytes ? meta_bytes : 1);
    uint8_t *raw_docs = malloc(docs_bytes ? docs_bytes : 1);
    uint8_t *raw_index = malloc(index_bytes ? index_bytes : 1);
    r->docs = malloc(docs_bytes ? docs_bytes : 1);
    r->index = malloc(index_bytes ? index_bytes : 1);
    if (!meta || !raw_docs || !raw_index || !r->docs || !r->index) {
        s = ml_fail(ML_ERR_NOMEM, "out of memory reading the index of %s", r->path);
        goto out;
    }
    if ((s = pread_all(r, meta, meta_bytes, meta_off, "the metadata")) != ML_OK) goto out;
    if ((s = pread_all(r, raw_docs, docs_bytes, docs_off, "the document table")) != ML_OK) goto out;
    if ((s = pread_all(r, raw_index, index_bytes, index_off, "the frame index")) != ML_OK) goto out;
    uint64_t h = ml_fnv1a64(ML_FNV1A64_INIT, meta, meta_bytes);
    h = ml_fnv1a64(h, raw_docs, docs_bytes);
    h = ml_fnv1a64(h, raw_index, index_bytes);
    if (h != tail_sum) {
        s = ml_fail(ML_ERR_FORMAT, "%s: index checksum mismatch (the metadata, document table or frame index is corrupt)", r->path);
        goto out;
    }
    if ((s = parse_meta(r, meta, meta_bytes)) != ML_OK) goto out;
    for (uint64_t i = 0; i < in->n_docs; i++) r->docs[i] = get_u64(raw_docs + 8 * i);
    for (uint64_t i = 0; i < 2 * in->n_frames; i++) r->index[i] = get_u64(raw_index + 8 * i);
    for (uint64_t i = 0; i < in->n_docs; i++) {
        uint64_t prev = i ? r->docs[i - 1] : 0;
        if (r->docs[i] < prev || r->docs[i] > in->n_tokens || (i == 0 && r->docs[0] != 0)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: document table is corrupt at document %" PRIu64 " (start %" PRIu64 ")", r->path, i,
                        r->docs[i]);
            goto out;
        }
    }
    /* Every frame: inside the data section, and its zstd header promises the right size. */
    for (uint64_t f = 0; f < in->n_frames; f++) {
        uint64_t off = r->index[2 * f], len = r->index[2 * f + 1];
        uint64_t ntok = in->n_tokens - f * in->frame_tokens;
        if (ntok > in->frame_tokens) ntok = in->frame_tokens;
        if (len == 0 || !in_range(off, len, data_off, data_off + data_bytes) || len > ZSTD_compressBound(ntok * 4)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: frame %" PRIu64 " of %" PRIu64 " has a corrupt index entry (bytes %" PRIu64 "+%" PRIu64 ")",
                        r->path, f, in->n_frames, off, len);
            goto out;
        }
        uint8_t fh[ZSTD_FRAME_HEADER_MAX];
        size_t fhn = len < sizeof fh ? (size_t)len : sizeof fh;
        if ((s = pread_all(r, fh, fhn, off, "a frame header")) != ML_OK) goto out;
        unsigned long long cs = ZSTD_getFrameContentSize(fh, fhn);
        if (cs != ntok * 4) {
            s = ml_fail(ML_ERR_FORMAT, "%s: frame %" PRIu64 " of %" PRIu64 " is corrupt (%s; expected %" PRIu64 " tokens)", r->path,
                        f, in->n_frames,
                        cs == ZSTD_CONTENTSIZE_ERROR ? "not a zstd frame" : cs == ZSTD_CONTENTSIZE_UNKNOWN ? "no content size" : "wrong content size",
                        ntok);
            goto out;
        }
        if (len > in->max_frame_bytes) in->max_frame_bytes = len;
    }
out:
    free(meta);
    free(raw_docs);
    free(raw_index);
    return s;
}

ml_status ml_shard_open(ml_shard_reader **out, const char *path) {
    *out = NULL;
    ml_shard_reader *r = calloc(1, sizeof *r);
    if (!r) return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", path);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        ml_status s = ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        free(r);
        return s;
    }
    ml_status s = reader_validate(r);
    if (s != ML_OK) {
        ml_shard_close(r);
        return s;
    }
    *out = r;
    return ML_OK;
}

void ml_shard_close(ml_shard_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    if (r->own_cache) ml_shard_cache_free(r->cache);
    else if (r->cache && r->cache->owner == r) r->cache->owner = NULL; /* a later reader may reuse the address */
    free(r->docs);
    free(r->index);
    free(r);
}

const ml_shard_info *ml_shard_get_info(const ml_shard_reader *r) { return &r->info; }
const char *ml_shard_path(const ml_shard_reader *r) { return r->path; }
const uint64_t *ml_shard_doc_starts(const ml_shard_reader *r) { return r->docs; }

uint64_t ml_shard_doc_of_token(const ml_shard_reader *r, uint64_t token) {
    /* Last doc with start <= token (empty documents before it share its start). */
    uint64_t lo = 0, hi = r->info.n_docs; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (r->docs[mid] <= token) lo = mid;
        else hi = mid;
    }
    return lo;
}

uint64_t ml_shard_doc_start(const ml_shard_reader *r, uint64_t doc) { return r->docs[doc]; }
uint64_t ml_shard_doc_end(const ml_shard_reader *r, uint64_t doc) {
    return doc + 1 < r->info.n_docs ? r->docs[doc + 1] : r->info.n_tokens;
}

/* Decode frame f into the cache (a no-op when it is there already). */
static ml_status load_frame(ml_shard_reader *r, uint64_t f) {
    if (!r->cache) {
        ML_TRY(ml_shard_cache_new(&r->cache, reader_cache_tokens(r), r->info.max_frame_bytes));
        r->own_cache = 1;
    }
    ml_shard_cache *c = r->cache;
    if (c->owner == r && c->frame == f) return ML_OK;
    c->owner = NULL;
    uint64_t off = r->index[2 * f], len = r->index[2 * f + 1];
    uint64_t ntok = r->info.n_tokens - f * r->info.frame_tokens;
    if (ntok > r->info.frame_tokens) ntok = r->info.frame_tokens;
    ML_TRY(pread_all(r, c->cbuf, (size_t)len, off, "a frame"));
    size_t got = ZSTD_decompressDCtx(c->dctx, c->tokens, (size_t)ntok * 4, c->cbuf, (size_t)len);
    if (ZSTD_isError(got))
        return ml_fail(ML_ERR_FORMAT, "%s: frame %" PRIu64 " of %" PRIu64 " (tokens %" PRIu64 "..%" PRIu64 ") is corrupt: %s",
                       r->path, f, r->info.n_frames, f * r->info.frame_tokens, f * r->info.frame_tokens + ntok - 1,
                       ZSTD_getErrorName(got));
    if (got != ntok * 4)
        return ml_fail(ML_ERR_FORMAT, "%s: frame %" PRIu64 " of %" PRIu64 " is corrupt: decodes to %zu bytes, expected %" PRIu64,
                       r->path, f, r->info.n_frames, got, ntok * 4);
    u32_to_from_le(c->tokens, (size_t)ntok);
    for (uint64_t i = 0; i < ntok; i++)
        if (c->tokens[i] >= r->info.vocab_size)
            return ml_fail(ML_ERR_FORMAT, "%s: frame %" PRIu64 ": token %" PRIu64 " has id %u >= the vocab size %u (corrupt shard)",
                           r->path, f, f * r->info.frame_tokens + i, c->tokens[i], r->info.vocab_size);
    c->owner = r;
    c->frame = f;
    return ML_OK;
}

ml_status ml_shard_read_u32(ml_shard_reader *r, uint32_t *out, uint64_t start, uint64_t n) {
    if (start > r->info.n_tokens || n > r->info.n_tokens - start)
        return ml_fail(ML_ERR_RANGE, "%s: tokens %" PRIu64 "+%" PRIu64 " are beyond its %" PRIu64 " tokens", r->path, start, n,
                       r->info.n_tokens);
    uint64_t F = r->info.frame_tokens;
    while (n) {
        uint64_t f = start / F, in_f = start % F;
        ML_TRY(load_frame(r, f));
        uint64_t ntok = r->info.n_tokens - f * F;
        if (ntok > F) ntok = F;
        uint64_t take = ntok - in_f;
        if (take > n) take = n;
        memcpy(out, r->cache->tokens + in_f, (size_t)take * 4);
        out += take;
        start += take;
        n -= take;
    }
    return ML_OK;
}

ml_status ml_shard_read_i32(ml_shard_reader *r, int32_t *out, uint64_t start, uint64_t n) {
    if (r->info.vocab_size > (uint32_t)INT32_MAX + 1u)
        return ml_fail(ML_ERR_RANGE, "%s: vocab size %u does not fit int32 ids", r->path, r->info.vocab_size);
    /* Ids are < vocab <= 2^31, so the u32 bit patterns are the same int32 values. */
    return ml_shard_read_u32(r, (uint32_t *)out, start, n);
}

ml_status ml_shard_verify(ml_shard_reader *r) {
    for (uint64_t f = 0; f < r->info.n_frames; f++) ML_TRY(load_frame(r, f));
    return ML_OK;
}

ml_status ml_shard_check_compatible(const ml_shard_reader *a, const ml_shard_reader *b) {
    if (strcmp(a->info.tokenizer, b->info.tokenizer) != 0)
        return ml_fail(ML_ERR_ARG, "shards use different tokenizers: %s has '%s', %s has '%s'", a->path, a->info.tokenizer,
                       b->path, b->info.tokenizer);
    if (a->info.vocab_size != b->info.vocab_size)
        return ml_fail(ML_ERR_ARG, "shards have different vocab sizes: %s has %u, %s has %u", a->path, a->info.vocab_size,
                       b->path, b->info.vocab_size);
    return ML_OK;
}
