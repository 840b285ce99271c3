/* Token shards: round trips (empty documents, many frames), seeking, corruption and truncation
 * detection, id range checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/atomic_file.h"
#include "data/shard.h"
#include "tests/support/test_util.h"

static const char *dir;

/* A deterministic generator independent of common/rng.h's API details. */
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

typedef struct {
    uint32_t *tokens;
    uint64_t n_tokens;
    uint64_t *starts;
    uint64_t n_docs;
} corpus;

/* n_docs random documents (lengths 0..max_len, the first and every 7th empty) over vocab. */
static corpus make_corpus(uint64_t n_docs, uint32_t max_len, uint32_t vocab) {
    corpus c = {0};
    c.starts = calloc(n_docs, sizeof *c.starts);
    c.tokens = malloc((size_t)n_docs * (max_len + 1) * sizeof *c.tokens);
    for (uint64_t d = 0; d < n_docs; d++) {
        c.starts[d] = c.n_tokens;
        uint32_t len = (d % 7 == 0) ? 0 : rnd() % (max_len + 1);
        for (uint32_t i = 0; i < len; i++) c.tokens[c.n_tokens++] = rnd() % vocab;
    }
    c.n_docs = n_docs;
    return c;
}

static void free_corpus(corpus *c) {
    free(c->tokens);
    free(c->starts);
}

static uint64_t doc_len(const corpus *c, uint64_t d) {
    return (d + 1 < c->n_docs ? c->starts[d + 1] : c->n_tokens) - c->starts[d];
}

/* Write c; odd documents are streamed in pieces through begin_doc/add_tokens. */
static void write_corpus(const char *path, const corpus *c, uint32_t vocab, uint32_t frame_tokens, const char *tok,
                         const char *domain) {
    ml_shard_writer *w = NULL;
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_set_vocab(w, vocab), ML_OK);
    assert_int_equal(ml_shard_writer_set_tokenizer(w, tok), ML_OK);
    if (domain) assert_int_equal(ml_shard_writer_set_domain(w, domain), ML_OK);
    if (frame_tokens) assert_int_equal(ml_shard_writer_set_frame_tokens(w, frame_tokens), ML_OK);
    for (uint64_t d = 0; d < c->n_docs; d++) {
        const uint32_t *ids = c->tokens + c->starts[d];
        uint64_t n = doc_len(c, d);
        if (d % 2 == 0) {
            assert_int_equal(ml_shard_writer_append_doc(w, ids, n), ML_OK);
        } else {
            assert_int_equal(ml_shard_writer_begin_doc(w), ML_OK);
            for (uint64_t i = 0; i < n;) {
                uint64_t k = 1 + rnd() % 50;
                if (k > n - i) k = n - i;
                assert_int_equal(ml_shard_writer_add_tokens(w, ids + i, k), ML_OK);
                i += k;
            }
        }
    }
    assert_int_equal(ml_shard_writer_tokens(w), c->n_tokens);
    assert_int_equal(ml_shard_writer_docs(w), c->n_docs);
    assert_int_equal(ml_shard_writer_close(w), ML_OK);
}

static void test_round_trip_many_frames(void **state) {
    (void)state;
    const uint32_t vocab = 50000, F = 97;
    corpus c = make_corpus(80, 300, vocab);
    const char *path = ml_test_path(dir, "rt.shard");
    write_corpus(path, &c, vocab, F, "test-tok-v1", "wiki");

    ml_shard_reader *r = NULL;
    assert_int_equal(ml_shard_open(&r, path), ML_OK);
    const ml_shard_info *in = ml_shard_get_info(r);
    assert_int_equal(in->version, 1);
    assert_int_equal(in->n_tokens, c.n_tokens);
    assert_int_equal(in->n_docs, c.n_docs);
    assert_int_equal(in->vocab_size, vocab);
    assert_int_equal(in->frame_tokens, F);
    assert_int_equal(in->n_frames, (c.n_tokens + F - 1) / F);
    assert_true(in->n_frames > 20);
    assert_string_equal(in->tokenizer, "test-tok-v1");
    assert_string_equal(in->domain, "wiki");

    uint32_t *all = malloc(c.n_tokens * 4 + 4);
    assert_int_equal(ml_shard_read_u32(r, all, 0, c.n_tokens), ML_OK);
    assert_memory_equal(all, c.tokens, c.n_tokens * 4);
    for (uint64_t d = 0; d < c.n_docs; d++) {
        assert_int_equal(ml_shard_doc_starts(r)[d], c.starts[d]);
        assert_int_equal(ml_shard_doc_start(r, d), c.starts[d]);
        assert_int_equal(ml_shard_doc_end(r, d), c.starts[d] + doc_len(&c, d));
    }
    /* The document of each token: the one whose [start, end) holds it. */
    for (uint64_t t = 0; t < c.n_tokens; t++) {
        uint64_t d = ml_shard_doc_of_token(r, t);
        assert_true(c.starts[d] <= t && t < c.starts[d] + doc_len(&c, d));
    }
    /* Seeking reads equal slices of the full read, in random order (so the cache misses). */
    uint32_t *buf = malloc(c.n_tokens * 4 + 4);
    int32_t *ibuf = malloc(c.n_tokens * 4 + 4);
    for (int k = 0; k < 300; k++) {
        uint64_t s = rnd() % (c.n_tokens + 1), n = rnd() % (c.n_tokens - s + 1);
        if (k % 3 == 0 && n > 3 * F) n = rnd() % (3 * F); /* short reads too */
        assert_int_equal(ml_shard_read_u32(r, buf, s, n), ML_OK);
        assert_memory_equal(buf, c.tokens + s, n * 4);
        assert_int_equal(ml_shard_read_i32(r, ibuf, s, n), ML_OK);
        for (uint64_t i = 0; i < n; i++) assert_int_equal(ibuf[i], (int32_t)c.tokens[s + i]);
    }
    assert_int_equal(ml_shard_read_u32(r, buf, c.n_tokens - 1, 2), ML_ERR_RANGE);
    assert_int_equal(ml_shard_read_u32(r, buf, UINT64_MAX, 2), ML_ERR_RANGE);
    assert_int_equal(ml_shard_verify(r), ML_OK);

    /* Two readers sharing one cache interleave correctly. */
    ml_shard_reader *r2 = NULL;
    assert_int_equal(ml_shard_open(&r2, path), ML_OK);
    ml_shard_cache *cache = NULL;
    assert_int_equal(ml_shard_cache_new(&cache, F, in->max_frame_bytes), ML_OK);
    assert_int_equal(ml_shard_use_cache(r, cache), ML_OK);
    assert_int_equal(ml_shard_use_cache(r2, cache), ML_OK);
    for (int k = 0; k < 50; k++) {
        uint64_t s = rnd() % c.n_tokens, n = 1 + rnd() % (c.n_tokens - s);
        if (n > 2 * F) n = 2 * F;
        assert_int_equal(ml_shard_read_u32(k % 2 ? r : r2, buf, s, n), ML_OK);
        assert_memory_equal(buf, c.tokens + s, n * 4);
    }
    ml_shard_cache *tiny = NULL;
    assert_int_equal(ml_shard_cache_new(&tiny, F - 1, in->max_frame_bytes), ML_OK);
    assert_int_equal(ml_shard_use_cache(r2, tiny), ML_ERR_ARG);
    ml_shard_cache_free(tiny);
    ml_shard_close(r);
    ml_shard_close(r2);
    ml_shard_cache_free(cache);
    free(all);
    free(buf);
    free(ibuf);
    free_corpus(&c);
}

static void test_default_frames_and_empty(void **state) {
    (void)state;
    corpus c = make_corpus(10, 100, 259);
    const char *path = ml_test_path(dir, "one.shard");
    write_corpus(path, &c, 259, 0, "bytes-v1", NULL);
    ml_shard_reader *r = NULL;
    assert_int_equal(ml_shard_open(&r, path), ML_OK);
    assert_int_equal(ml_shard_get_info(r)->n_frames, 1);
    assert_int_equal(ml_shard_get_info(r)->frame_tokens, ML_SHARD_DEFAULT_FRAME_TOKENS);
    assert_string_equal(ml_shard_get_info(r)->domain, "");
    uint32_t buf[1000];
    assert_int_equal(ml_shard_read_u32(r, buf, 0, c.n_tokens), ML_OK);
    assert_memory_equal(buf, c.tokens, c.n_tokens * 4);
    ml_shard_close(r);
    free_corpus(&c);

    /* No documents at all, and only empty documents: valid, zero tokens, zero frames. */
    for (int docs = 0; docs <= 3; docs += 3) {
        const char *p = ml_test_path(dir, "empty.shard");
        ml_shard_writer *w = NULL;
        assert_int_equal(ml_shard_writer_open(&w, p), ML_OK);
        assert_int_equal(ml_shard_writer_set_vocab(w, 259), ML_OK);
        assert_int_equal(ml_shard_writer_set_tokenizer(w, "bytes-v1"), ML_OK);
        for (int d = 0; d < docs; d++) assert_int_equal(ml_shard_writer_append_doc(w, NULL, 0), ML_OK);
        assert_int_equal(ml_shard_writer_close(w), ML_OK);
        assert_int_equal(ml_shard_open(&r, p), ML_OK);
        assert_int_equal(ml_shard_get_info(r)->n_tokens, 0);
        assert_int_equal(ml_shard_get_info(r)->n_docs, docs);
        assert_int_equal(ml_shard_get_info(r)->n_frames, 0);
        assert_int_equal(ml_shard_read_u32(r, buf, 0, 0), ML_OK);
        assert_int_equal(ml_shard_read_u32(r, buf, 0, 1), ML_ERR_RANGE);
        assert_int_equal(ml_shard_verify(r), ML_OK);
        ml_shard_close(r);
    }
}

static int dir_has_tmp_files(void) {
    return ml_test_run("ls '%s' | grep -q tmp", dir) == 0;
}

static void test_id_out_of_vocab_rejected(void **state) {
    (void)state;
    const char *path = ml_test_path(dir, "bad_ids.shard");
    ml_shard_writer *w = NULL;
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_append_doc(w, (uint32_t[]){1}, 1), ML_ERR_ARG); /* no vocab yet */
    assert_int_equal(ml_shard_writer_set_vocab(w, 100), ML_OK);
    assert_int_equal(ml_shard_writer_set_tokenizer(w, "t"), ML_OK);
    uint32_t good[4] = {0, 1, 99, 5}, bad[5] = {1, 2, 3, 100, 4};
    assert_int_equal(ml_shard_writer_append_doc(w, good, 4), ML_OK);
    assert_int_equal(ml_shard_writer_append_doc(w, bad, 5), ML_ERR_RANGE);
    assert_non_null(strstr(ml_last_error(), "document 1, position 3"));
    assert_non_null(strstr(ml_last_error(), "100"));
    assert_int_equal(ml_shard_writer_tokens(w), 4); /* the rejected document left no trace */
    assert_int_equal(ml_shard_writer_docs(w), 1);
    /* Streamed: the position counts from the document's start. */
    assert_int_equal(ml_shard_writer_begin_doc(w), ML_OK);
    assert_int_equal(ml_shard_writer_add_tokens(w, good, 4), ML_OK);
    assert_int_equal(ml_shard_writer_add_tokens(w, bad, 5), ML_ERR_RANGE);
    assert_non_null(strstr(ml_last_error(), "document 1, position 7"));
    assert_int_equal(ml_shard_writer_set_vocab(w, 1000), ML_ERR_ARG); /* too late */
    ml_shard_writer_abort(w);
    assert_false(ml_test_file_exists(path));
    assert_false(dir_has_tmp_files());

    /* Closing without a tokenizer fingerprint fails and leaves nothing. */
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_set_vocab(w, 100), ML_OK);
    assert_int_equal(ml_shard_writer_append_doc(w, good, 4), ML_OK);
    assert_int_equal(ml_shard_writer_close(w), ML_ERR_ARG);
    assert_false(ml_test_file_exists(path));
    assert_false(dir_has_tmp_files());
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Open then decode everything; returns the first failure (ML_OK if none). */
static ml_status open_and_verify(const char *path) {
    ml_shard_reader *r = NULL;
    ml_status s = ml_shard_open(&r, path);
    if (s != ML_OK) return s;
    s = ml_shard_verify(r);
    ml_shard_close(r);
    return s;
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void reseal_header(uint8_t *h) {
    uint64_t sum = ml_fnv1a64(ML_FNV1A64_INIT, h, 120);
    for (int i = 0; i < 8; i++) h[120 + i] = (uint8_t)(sum >> (8 * i));
}

static void test_corruption_detected(void **state) {
    (void)state;
    const uint32_t vocab = 1000;
    corpus c = make_corpus(12, 60, vocab);
    const char *good = ml_test_path(dir, "good.shard");
    write_corpus(good, &c, vocab, 64, "bytes-v9", "d");
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(ml_read_file(good, &data, &n), ML_OK);
    assert_int_equal(open_and_verify(good), ML_OK);
    const char *bad = ml_test_path(dir, "bad.shard");
    uint8_t *copy = malloc(n);
    uint64_t data_end = get64((uint8_t *)data + 56) + get64((uint8_t *)data + 64);

    /* Every truncation is caught at open. */
    for (size_t len = 0; len < n; len++) {
        write_bytes(bad, data, len);
        ml_shard_reader *r = NULL;
        assert_int_not_equal(ml_shard_open(&r, bad), ML_OK);
        assert_non_null(strstr(ml_last_error(), bad));
        assert_null(r);
    }
    /* No single-bit corruption gives wrong tokens: header and index are caught at open, frames
     * at open (their zstd header) or when decoded (zstd content checksum). The only flips that
     * pass are of bits that do not change the decoded content (the frame descriptor's unused bit,
     * redundant bits of entropy tables), and then the tokens are intact. Errors name the file, and frame errors the frame. */
    int frame_errors = 0, harmless = 0;
    uint32_t *back = malloc(c.n_tokens * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, data, n);
        copy[i] ^= (uint8_t)(1u << (i % 8));
        write_bytes(bad, copy, n);
        ml_status s = open_and_verify(bad);
        if (s == ML_OK) {
            ml_shard_reader *r = NULL;
            assert_int_equal(ml_shard_open(&r, bad), ML_OK);
            assert_int_equal(ml_shard_read_u32(r, back, 0, c.n_tokens), ML_OK);
            if (memcmp(back, c.tokens, c.n_tokens * 4) != 0) fail_msg("flipping a bit of byte %zu went unnoticed", i);
            ml_shard_close(r);
            harmless++;
            continue;
        }
        assert_non_null(strstr(ml_last_error(), bad));
        if (i >= 128 && i < data_end) {
            assert_non_null(strstr(ml_last_error(), "frame"));
            frame_errors++;
        }
    }
    assert_true(frame_errors > 0);
    assert_true(harmless * 20 < (int)n); /* rare: redundant bits of zstd's entropy tables */
    free(back);

    /* Not shards at all. */
    write_bytes(bad, "hello, this is a text file\n", 27);
    assert_int_equal(open_and_verify(bad), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "not a token shard"));
    for (size_t i = 0; i < n; i++) copy[i] = (uint8_t)rnd();
    write_bytes(bad, copy, n);
    assert_int_equal(open_and_verify(bad), ML_ERR_FORMAT);
    assert_int_equal(open_and_verify(ml_test_path(dir, "missing.shard")), ML_ERR_IO);
    assert_int_equal(open_and_verify(dir), ML_ERR_IO); /* a directory */

    /* A later format version is "unsupported", not "corrupt". */
    memcpy(copy, data, n);
    put32(copy + 8, 2);
    reseal_header(copy);
    write_bytes(bad, copy, n);
    assert_int_equal(open_and_verify(bad), ML_ERR_UNSUPPORTED);
    assert_non_null(strstr(ml_last_error(), "version 2"));
    /* Unknown flags too. */
    memcpy(copy, data, n);
    put32(copy + 12, 4);
    reseal_header(copy);
    write_bytes(bad, copy, n);
    assert_int_equal(open_and_verify(bad), ML_ERR_UNSUPPORTED);

    /* A (consistently resealed) header whose vocab is smaller than the ids stored: reading
     * catches the out-of-range id. */
    memcpy(copy, data, n);
    put32(copy + 40, 10);
    reseal_header(copy);
    write_bytes(bad, copy, n);
    assert_int_equal(open_and_verify(bad), ML_ERR_FORMAT);
    assert_non_null(strstr(ml_last_error(), "vocab"));

    free(copy);
    free(data);
    free_corpus(&c);
}

static void test_compatibility(void **state) {
    (void)state;
    corpus c = make_corpus(3, 20, 259);
    const char *a = ml_test_path(dir, "ca.shard"), *b = ml_test_path(dir, "cb.shard"), *v = ml_test_path(dir, "cv.shard");
    write_corpus(a, &c, 259, 0, "bytes-v1", NULL);
    write_corpus(b, &c, 259, 0, "llama2-abc", NULL);
    write_corpus(v, &c, 300, 0, "bytes-v1", NULL);
    ml_shard_reader *ra, *rb, *rv, *ra2;
    assert_int_equal(ml_shard_open(&ra, a), ML_OK);
    assert_int_equal(ml_shard_open(&ra2, a), ML_OK);
    assert_int_equal(ml_shard_open(&rb, b), ML_OK);
    assert_int_equal(ml_shard_open(&rv, v), ML_OK);
    assert_int_equal(ml_shard_check_compatible(ra, ra2), ML_OK);
    assert_int_equal(ml_shard_check_compatible(ra, rb), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), a));
    assert_non_null(strstr(ml_last_error(), b));
    assert_int_equal(ml_shard_check_compatible(ra, rv), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), v));
    ml_shard_close(ra);
    ml_shard_close(ra2);
    ml_shard_close(rb);
    ml_shard_close(rv);
    free_corpus(&c);
}

int main(void) {
    dir = ml_test_tmpdir("test_shard");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_many_frames),
        cmocka_unit_test(test_default_frames_and_empty),
        cmocka_unit_test(test_id_out_of_vocab_rejected),
        cmocka_unit_test(test_corruption_detected),
        cmocka_unit_test(test_compatibility),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
