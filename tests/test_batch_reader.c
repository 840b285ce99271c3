/* The sequential batch reader: exact-size data, wrap-around, cursor resume, document ids and
 * positions, checked by hand on small cases and against a direct model on random ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "data/batch_reader.h"
#include "data/shard.h"
#include "tests/support/test_util.h"

static const char *dir;

static uint64_t rs = 0x1234567887654321ull;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

/* A shard of the given tokens with documents starting at starts[0..n_docs). */
static void write_shard(const char *path, const uint32_t *tokens, uint64_t n, const uint64_t *starts, uint64_t n_docs,
                        uint32_t vocab, const char *tok, uint32_t frame_tokens) {
    ml_shard_writer *w = NULL;
    assert_int_equal(ml_shard_writer_open(&w, path), ML_OK);
    assert_int_equal(ml_shard_writer_set_vocab(w, vocab), ML_OK);
    assert_int_equal(ml_shard_writer_set_tokenizer(w, tok), ML_OK);
    if (frame_tokens) assert_int_equal(ml_shard_writer_set_frame_tokens(w, frame_tokens), ML_OK);
    for (uint64_t d = 0; d < n_docs; d++) {
        uint64_t end = d + 1 < n_docs ? starts[d + 1] : n;
        assert_int_equal(ml_shard_writer_append_doc(w, tokens + starts[d], end - starts[d]), ML_OK);
    }
    assert_int_equal(ml_shard_writer_close(w), ML_OK);
}

static const uint32_t seq[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

static ml_batch_reader *open1(const char *path, int B, int T, ml_pos_mode pm) {
    ml_batch_reader *br = NULL;
    ml_batch_opts o = {B, T, pm};
    const char *paths[1] = {path};
    assert_int_equal(ml_batch_reader_open(&br, paths, 1, &o), ML_OK);
    return br;
}

/* Exactly B*(T+1) tokens: the first batch takes them all; the cursor then wraps. */
static void test_exact_size_one_batch(void **state) {
    (void)state;
    const char *p = ml_test_path(dir, "exact.shard");
    uint64_t starts[3] = {0, 3, 7};
    write_shard(p, seq, 10, starts, 3, 100, "t", 0);
    ml_batch_reader *br = open1(p, 2, 4, ML_POS_DOC);
    int32_t in[8], tg[8], doc[8], pos[8];
    assert_int_equal(ml_batch_reader_next(br, in, tg, doc, pos), ML_OK);
    int32_t want_in[8] = {0, 1, 2, 3, 5, 6, 7, 8}, want_tg[8] = {1, 2, 3, 4, 6, 7, 8, 9};
    int32_t want_doc[8] = {0, 0, 0, 1, 1, 1, 2, 2}, want_pos[8] = {0, 1, 2, 0, 0, 1, 0, 1};
    assert_memory_equal(in, want_in, sizeof in);
    assert_memory_equal(tg, want_tg, sizeof tg);
    assert_memory_equal(doc, want_doc, sizeof doc);
    assert_memory_equal(pos, want_pos, sizeof pos);
    ml_data_cursor c = ml_batch_reader_get_cursor(br);
    assert_int_equal(c.epoch, 1);
    assert_int_equal(c.shard, 0);
    assert_int_equal(c.offset, 0);
    /* The next batch is the same again; positions per row when asked for. */
    ml_batch_reader_close(br);
    br = open1(p, 2, 4, ML_POS_ROW);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ml_batch_reader_next(br, in, tg, NULL, pos), ML_OK);
        assert_memory_equal(in, want_in, sizeof in);
        int32_t want_row[8] = {0, 1, 2, 3, 0, 1, 2, 3};
        assert_memory_equal(pos, want_row, sizeof pos);
    }
    assert_int_equal(ml_batch_reader_get_cursor(br).epoch, 2);
    ml_batch_reader_close(br);

    /* One token short: an error that names the numbers. */
    const char *q = ml_test_path(dir, "short.shard");
    write_shard(q, seq, 9, starts, 3, 100, "t", 0);
    ml_batch_opts o = {2, 4, ML_POS_ROW};
    const char *paths[1] = {q};
    br = NULL;
    assert_int_equal(ml_batch_reader_open(&br, paths, 1, &o), ML_ERR_RANGE);
    assert_null(br);
    assert_non_null(strstr(ml_last_error(), "9 tokens"));
    assert_non_null(strstr(ml_last_error(), "10"));
}

/* The same 10 tokens split over two shards (and an empty one between) read the same; document
 * ids continue across shards and positions restart at the shard boundary. */
static void test_across_shards(void **state) {
    (void)state;
    const char *a = ml_test_path(dir, "xa.shard"), *e = ml_test_path(dir, "xe.shard"), *b = ml_test_path(dir, "xb.shard");
    uint64_t sa[2] = {0, 3}, sb[1] = {0};
    write_shard(a, seq, 4, sa, 2, 100, "t", 2);
    write_shard(e, seq, 0, NULL, 0, 100, "t", 0);
    write_shard(b, seq + 4, 6, sb, 1, 100, "t", 0);
    const char *paths[3] = {a, e, b};
    ml_batch_opts o = {2, 4, ML_POS_DOC};
    ml_batch_reader *br = NULL;
    assert_int_equal(ml_batch_reader_open(&br, paths, 3, &o), ML_OK);
    assert_int_equal(ml_batch_reader_total_tokens(br), 10);
    assert_int_equal(ml_batch_reader_total_docs(br), 3);
    int32_t in[8], tg[8], doc[8], pos[8];
    assert_int_equal(ml_batch_reader_next(br, in, tg, doc, pos), ML_OK);
    int32_t want_in[8] = {0, 1, 2, 3, 5, 6, 7, 8}, want_tg[8] = {1, 2, 3, 4, 6, 7, 8, 9};
    int32_t want_doc[8] = {0, 0, 0, 1, 2, 2, 2, 2}, want_pos[8] = {0, 1, 2, 0, 0, 1, 2, 3};
    assert_memory_equal(in, want_in, sizeof in);
    assert_memory_equal(tg, want_tg, sizeof tg);
    assert_memory_equal(doc, want_doc, sizeof doc);
    assert_memory_equal(pos, want_pos, sizeof pos);
    ml_batch_reader_close(br);

    /* A shard with another tokenizer or vocab: an error naming both files. */
    const char *c = ml_test_path(dir, "xc.shard"), *v = ml_test_path(dir, "xv.shard");
    write_shard(c, seq, 6, sb, 1, 100, "other", 0);
    write_shard(v, seq, 6, sb, 1, 200, "t", 0);
    const char *bad1[2] = {a, c}, *bad2[3] = {a, b, v};
    assert_int_equal(ml_batch_reader_open(&br, bad1, 2, &o), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), a));
    assert_non_null(strstr(ml_last_error(), c));
    assert_int_equal(ml_batch_reader_open(&br, bad2, 3, &o), ML_ERR_ARG);
    assert_non_null(strstr(ml_last_error(), v));
    const char *missing[1] = {ml_test_path(dir, "nope.shard")};
    assert_int_equal(ml_batch_reader_open(&br, missing, 1, &o), ML_ERR_IO);
    ml_batch_opts bad_t = {2, 0, ML_POS_ROW};
    assert_int_equal(ml_batch_reader_open(&br, paths, 3, &bad_t), ML_ERR_ARG);
}

/* 23 tokens, rows of 5: rows start at 0, 5, 10, 15; the 3 left over are skipped on the wrap. */
static void test_wrap_around(void **state) {
    (void)state;
    const char *p = ml_test_path(dir, "wrap.shard");
    uint64_t s[1] = {0};
    write_shard(p, seq, 23, s, 1, 100, "t", 4);
    ml_batch_reader *br = open1(p, 2, 4, ML_POS_ROW);
    int32_t in[8], tg[8];
    int starts[6][2] = {{0, 5}, {10, 15}, {0, 5}, {10, 15}, {0, 5}, {10, 15}};
    uint64_t epochs[6] = {0, 1, 1, 2, 2, 3};
    for (int k = 0; k < 6; k++) {
        assert_int_equal(ml_batch_reader_next(br, in, tg, NULL, NULL), ML_OK);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 4; t++) {
                assert_int_equal(in[r * 4 + t], starts[k][r] + t);
                assert_int_equal(tg[r * 4 + t], starts[k][r] + t + 1);
            }
        assert_int_equal(ml_batch_reader_get_cursor(br).epoch, epochs[k]);
    }
    ml_batch_reader_close(br);
}

/* A direct model: the concatenated stream with global document ids. */
typedef struct {
    uint32_t *tok;
    uint64_t *doc;
    uint64_t n;
} stream;

static void model_batch(const stream *s, uint64_t *pos, int B, int T, ml_pos_mode pm, int32_t *in, int32_t *tg,
                        int32_t *doc, int32_t *ps) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            uint64_t i = *pos + (uint64_t)t;
            in[b * T + t] = (int32_t)s->tok[i];
            tg[b * T + t] = (int32_t)s->tok[i + 1];
            doc[b * T + t] = (int32_t)s->doc[i];
            if (pm == ML_POS_ROW || t == 0) ps[b * T + t] = t == 0 ? 0 : t;
            else ps[b * T + t] = s->doc[i] != s->doc[i - 1] ? 0 : ps[b * T + t - 1] + 1;
        }
        *pos += (uint64_t)T + 1;
        if (*pos + (uint64_t)T + 1 > s->n) *pos = 0;
    }
}

static void test_random_against_model_and_resume(void **state) {
    (void)state;
    enum { NS = 4 };
    const uint32_t vocab = 5000;
    const char *paths[NS];
    stream s = {malloc(4000 * 4), malloc(4000 * 8), 0};
    uint64_t doc_base = 0, lens[NS];
    for (int k = 0; k < NS; k++) {
        char name[32];
        snprintf(name, sizeof name, "r%d.shard", k);
        paths[k] = strdup(ml_test_path(dir, name));
        uint64_t n = k == 2 ? 0 : 300 + rnd() % 600, starts[200], nd = 0;
        uint32_t *tok = s.tok + s.n;
        for (uint64_t i = 0; i < n; i++) tok[i] = rnd() % vocab;
        /* Documents: random lengths, some empty. */
        for (uint64_t at = 0; at < n || (n == 0 && nd == 0);) {
            starts[nd++] = at;
            uint64_t len = rnd() % 5 == 0 ? 0 : 1 + rnd() % 60;
            at = at + len > n ? n : at + len;
            if (n == 0) break;
        }
        for (uint64_t d = 0; d < nd; d++) {
            uint64_t end = d + 1 < nd ? starts[d + 1] : n;
            for (uint64_t i = starts[d]; i < end; i++) s.doc[s.n + i] = doc_base + d;
        }
        write_shard(paths[k], tok, n, starts, nd, vocab, "rand-tok", 1 + rnd() % 128);
        s.n += n;
        lens[k] = n;
        doc_base += nd;
    }
    for (int pm = 0; pm < 2; pm++) {
        const int B = 3, T = 37;
        ml_batch_opts o = {B, T, (ml_pos_mode)pm};
        ml_batch_reader *br = NULL;
        assert_int_equal(ml_batch_reader_open(&br, paths, NS, &o), ML_OK);
        assert_int_equal(ml_batch_reader_total_tokens(br), s.n);
        assert_int_equal(ml_batch_reader_total_docs(br), doc_base);
        assert_int_equal(ml_batch_reader_vocab_size(br), vocab);
        assert_string_equal(ml_batch_reader_tokenizer(br), "rand-tok");
        int32_t in[B * T], tg[B * T], doc[B * T], ps[B * T];
        int32_t m_in[B * T], m_tg[B * T], m_doc[B * T], m_ps[B * T];
        uint64_t mpos = 0;
        const int steps = 80, save_at = 37; /* several epochs */
        ml_data_cursor saved = {0};
        int32_t after_save[10][B * T];
        for (int k = 0; k < steps; k++) {
            if (k == save_at) saved = ml_batch_reader_get_cursor(br);
            assert_int_equal(ml_batch_reader_next(br, in, tg, doc, ps), ML_OK);
            model_batch(&s, &mpos, B, T, (ml_pos_mode)pm, m_in, m_tg, m_doc, m_ps);
            assert_memory_equal(in, m_in, sizeof in);
            assert_memory_equal(tg, m_tg, sizeof tg);
            assert_memory_equal(doc, m_doc, sizeof doc);
            assert_memory_equal(ps, m_ps, sizeof ps);
            if (k >= save_at && k < save_at + 10) memcpy(after_save[k - save_at], in, sizeof in);
        }
        assert_true(ml_batch_reader_get_cursor(br).epoch >= 2);
        ml_batch_reader_close(br);

        /* A fresh reader restored to the saved cursor continues bit-exactly. */
        assert_int_equal(ml_batch_reader_open(&br, paths, NS, &o), ML_OK);
        assert_int_equal(ml_batch_reader_set_cursor(br, &saved), ML_OK);
        ml_data_cursor back = ml_batch_reader_get_cursor(br);
        assert_memory_equal(&back, &saved, sizeof back);
        for (int k = 0; k < 10; k++) {
            assert_int_equal(ml_batch_reader_next(br, in, tg, NULL, NULL), ML_OK);
            assert_memory_equal(in, after_save[k], sizeof in);
        }
        /* Cursors that do not fit the data are refused. */
        ml_data_cursor bad = {0, NS, 0};
        assert_int_equal(ml_batch_reader_set_cursor(br, &bad), ML_ERR_RANGE);
        bad = (ml_data_cursor){0, 0, 100000};
        assert_int_equal(ml_batch_reader_set_cursor(br, &bad), ML_ERR_RANGE);
        bad = (ml_data_cursor){0, NS - 1, lens[NS - 1] - T}; /* T tokens left: no room for a row */
        assert_int_equal(ml_batch_reader_set_cursor(br, &bad), ML_ERR_RANGE);
        bad.offset--;
        assert_int_equal(ml_batch_reader_set_cursor(br, &bad), ML_OK);
        ml_batch_reader_close(br);
    }
    for (int k = 0; k < NS; k++) free((void *)paths[k]);
    free(s.tok);
    free(s.doc);
}

int main(void) {
    dir = ml_test_tmpdir("test_batch_reader");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_size_one_batch),
        cmocka_unit_test(test_across_shards),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_random_against_model_and_resume),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
