/* The SentencePiece tokenizer against python3-sentencepiece (tests/spm_reference.py) on the
 * Llama-2 model in ../shared: llama.cpp's test strings (and their expected ids), samples of
 * every corpus in ../shared/data (lines, arbitrary byte windows that cut UTF-8 sequences, and
 * large documents through the parallel path), hand-made edge cases, random bytes; decode of
 * our ids and of random id sequences against DecodeIds; and bad model files. Exact equality
 * everywhere. Skips (with a message) when ../shared or the Python module is absent. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <omp.h>

#include "common/atomic_file.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "data/tokenizer_spm.h"
#include "tests/support/test_util.h"

#define MODEL ml_test_shared("tokenizers/llama2-spm-32000.model")
#define LLAMACPP_INP ml_test_shared("tokenizers/llamacpp-ggml-vocab-llama-spm.gguf.inp")
#define LLAMACPP_OUT ml_test_shared("tokenizers/llamacpp-ggml-vocab-llama-spm.gguf.out")

static int have_model(void) { return ml_test_have_shared(MODEL); }

static int have_python(void) {
    if (ML_PYTHON[0] == '\0' || ml_test_run("%s -c 'import sentencepiece' 2>/dev/null", ML_PYTHON) != 0) {
        ml_test_note_skip("python3-sentencepiece is not importable (apt-get install python3-sentencepiece)");
        return 0;
    }
    return 1;
}

/* ---- a growable list of documents */
typedef struct {
    char **s;
    size_t *n;
    size_t count, cap;
    size_t bytes;
} docs;

static void docs_add(docs *d, const char *s, size_t n) {
    if (d->count == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->s = realloc(d->s, d->cap * sizeof *d->s);
        d->n = realloc(d->n, d->cap * sizeof *d->n);
        assert_non_null(d->s);
        assert_non_null(d->n);
    }
    d->s[d->count] = malloc(n + 1);
    assert_non_null(d->s[d->count]);
    memcpy(d->s[d->count], s, n);
    d->n[d->count++] = n;
    d->bytes += n;
}

static void docs_free(docs *d) {
    for (size_t i = 0; i < d->count; i++) free(d->s[i]);
    free(d->s);
    free(d->n);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void put_u32(FILE *f, uint32_t v) { assert_int_equal(fwrite(&v, 4, 1, f), 1); }

static uint32_t get_u32(const char *buf, size_t n, size_t *at) {
    assert_true(*at + 4 <= n);
    uint32_t v;
    memcpy(&v, buf + *at, 4);
    *at += 4;
    return v;
}

/* ---- llama.cpp's cases: inputs separated by "\n__ggml_vocab_test__\n", one id line each */
static size_t load_llamacpp(docs *in, char ***want_lines) {
    char *inp = NULL, *out = NULL;
    size_t ni = 0, no = 0;
    if (ml_read_file(LLAMACPP_INP, &inp, &ni) != ML_OK || ml_read_file(LLAMACPP_OUT, &out, &no) != ML_OK) {
        free(inp);
        return 0;
    }
    const char *marker = "\n__ggml_vocab_test__\n";
    size_t ml = strlen(marker), k = 0;
    for (char *p = inp; p < inp + ni;) {
        char *e = strstr(p, marker);
        if (!e) break;
        docs_add(in, p, (size_t)(e - p));
        p = e + ml;
        k++;
    }
    char **lines = calloc(k, sizeof *lines);
    char *p = out;
    for (size_t i = 0; i < k; i++) {
        char *e = strchr(p, '\n');
        assert_non_null(e);
        *e = 0;
        lines[i] = strdup(p);
        p = e + 1;
    }
    free(inp);
    free(out);
    *want_lines = lines;
    return k;
}

static void test_llamacpp_cases(void **state) {
    (void)state;
    if (!have_model()) skip();
    docs in = {0};
    char **want = NULL;
    size_t k = load_llamacpp(&in, &want);
    if (!k) {
        ML_NEED_SHARED(LLAMACPP_INP);
        ML_NEED_SHARED(LLAMACPP_OUT);
        fail_msg("cannot read %s", LLAMACPP_INP);
    }
    assert_true(k >= 40);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, MODEL), ML_OK);
    ml_id_buf ids = {0};
    for (size_t i = 0; i < k; i++) {
        ids.n = 0;
        assert_int_equal(ml_tokenizer_encode(t, &ids, in.s[i], in.n[i], 0), ML_OK);
        char got[4096] = "", *g = got;
        for (size_t j = 0; j < ids.n; j++) g += sprintf(g, " %u", ids.ids[j]);
        if (strcmp(got, want[i]) != 0) printf("case %zu: got '%s' want '%s'\n", i, got, want[i]);
        assert_string_equal(got, want[i]);
        free(want[i]);
    }
    printf("  %zu llama.cpp cases identical\n", k);
    free(want);
    ml_id_buf_free(&ids);
    docs_free(&in);
    ml_tokenizer_free(t);
}

/* ---- documents from every corpus file */
static void add_corpus_file(docs *d, const char *path, size_t lines_budget, size_t window) {
    char *buf = NULL;
    size_t n = 0;
    assert_int_equal(ml_read_file(path, &buf, &n), ML_OK);
    /* Lines, evenly spaced, up to lines_budget bytes. */
    size_t nlines = 0;
    for (size_t i = 0; i < n; i++) nlines += buf[i] == '\n';
    size_t every = n > lines_budget ? n / lines_budget + 1 : 1, li = 0, taken = 0;
    for (size_t i = 0; i < n && taken < lines_budget;) {
        char *e = memchr(buf + i, '\n', n - i);
        size_t end = e ? (size_t)(e - buf) : n;
        if (li++ % every == 0) {
            docs_add(d, buf + i, end - i);
            taken += end - i;
        }
        i = end + 1;
    }
    /* A window at an arbitrary byte offset: it may cut a UTF-8 sequence at either end. */
    if (n > 0) {
        size_t len = n < window ? n : window, at = n > len ? (size_t)(rnd() % (n - len)) : 0;
        docs_add(d, buf + at, len);
    }
    free(buf);
}

static void walk(docs *d, const char *dir, size_t lines_budget, size_t window, int *files) {
    struct dirent **names = NULL;
    int k = scandir(dir, &names, NULL, alphasort);
    for (int i = 0; i < k; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        if (names[i]->d_name[0] != '.' && stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) walk(d, p, lines_budget, window, files);
            else if (S_ISREG(st.st_mode)) {
                add_corpus_file(d, p, lines_budget, window);
                (*files)++;
            }
        }
        free(names[i]);
    }
    free(names);
}

static void add_edge_cases(docs *d) {
    static const char *cases[] = {
        "", " ", "  ", "\xE2\x96\x81", "a\xE2\x96\x81" "b", " \xE2\x96\x81 x", "\xff", "a\xff" "b", "\xc3(",
        "x\xe2\x82", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\xa6", "\xef\xbf\xbd",
        "<s>", "</s>", "<unk>", "<0x41>", "\r\n\r\n", "\t \t", "tab\there", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        "\xea\xb3\xa0\xeb\x93\x9d\xe1\x84\x80", "\xf0\x9f\xa6\x99\xf0\x9f\x98\x81", "\xd8\xa7\xd9\x84\xd8\xb9",
        "Hello\nworld", "a  b   c    d", "   leading", "trailing   ", "\n\n\nx", "x\n", "9999999999",
        "\xe2\x80\x8b\xe2\x80\x8d", "\xf3\xa0\x80\x81", "\xf4\x8f\xbf\xbf", "\x7f\x01\x1f",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) docs_add(d, cases[i], strlen(cases[i]));
    docs_add(d, "a\0b", 3);
    docs_add(d, "\0", 1);
    char spaces[3000];
    memset(spaces, ' ', sizeof spaces);
    docs_add(d, spaces, sizeof spaces);
    char nls[500];
    memset(nls, '\n', sizeof nls);
    docs_add(d, nls, sizeof nls);
    /* Random bytes, and random soups of characters that stress the rules. */
    static const char *alpha[] = {"a", "b", "e", "th", " ", "  ", "\n", "\t", "\xc3\xa9", "\xE2\x96\x81", "\xe6\x97\xa5",
                                  "\xf0\x9f\xa6\x99", "\xff", "\xc3", "\xe2\x82", "0", "1", ".", ",", "\xef\xbf\xbd",
                                  "\xd0\xbd", "\xea\xb3\xa0", "'", "\"", "{", "\r"};
    char buf[512];
    for (int i = 0; i < 300; i++) {
        size_t n = (size_t)(rnd() % 200);
        for (size_t j = 0; j < n; j++) buf[j] = (char)rnd();
        docs_add(d, buf, n);
    }
    for (int i = 0; i < 300; i++) {
        size_t n = 0, want = (size_t)(rnd() % 100);
        for (size_t j = 0; j < want; j++) {
            const char *a = alpha[rnd() % (sizeof alpha / sizeof alpha[0])];
            memcpy(buf + n, a, strlen(a));
            n += strlen(a);
        }
        docs_add(d, buf, n);
    }
}

/* Run the reference on the documents; results[i]: ids and decoded text. */
typedef struct {
    uint32_t *ids;
    size_t n;
    const char *text;
    size_t text_n;
} ref_result;

static char *run_reference(const docs *d, ref_result *res, const char *dir) {
    const char *in = ml_test_path(dir, "docs.bin"), *out = ml_test_path(dir, "ref.bin");
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < d->count; i++) {
        put_u32(f, (uint32_t)d->n[i]);
        if (d->n[i]) assert_int_equal(fwrite(d->s[i], 1, d->n[i], f), d->n[i]);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(ml_test_run("%s %s/tests/spm_reference.py encode %s %s %s", ML_PYTHON, ML_SOURCE_DIR, MODEL, in, out), 0);
    char *buf = NULL;
    size_t n = 0, at = 0;
    assert_int_equal(ml_read_file(out, &buf, &n), ML_OK);
    for (size_t i = 0; i < d->count; i++) {
        res[i].n = get_u32(buf, n, &at);
        assert_true(at + 4 * res[i].n <= n);
        res[i].ids = (uint32_t *)(buf + at); /* 4-aligned: every record is a multiple of 4 bytes... */
        at += 4 * res[i].n;
        res[i].text_n = get_u32(buf, n, &at);
        assert_true(at + res[i].text_n <= n);
        res[i].text = buf + at;
        at += res[i].text_n;
    }
    assert_int_equal(at, n);
    return buf;
}

static void compare(const ml_tokenizer *t, const docs *d, const ref_result *res, size_t *n_ids) {
    ml_id_buf ids = {0};
    ml_byte_buf text = {0};
    for (size_t i = 0; i < d->count; i++) {
        ids.n = 0;
        text.n = 0;
        assert_int_equal(ml_tokenizer_encode(t, &ids, d->s[i], d->n[i], 0), ML_OK);
        if (ids.n != res[i].n || memcmp(ids.ids, res[i].ids, 4 * ids.n) != 0) {
            size_t j = 0;
            while (j < ids.n && j < res[i].n && ids.ids[j] == res[i].ids[j]) j++;
            printf("document %zu (%zu bytes): %zu ids vs sentencepiece's %zu, first difference at %zu\n", i, d->n[i],
                   ids.n, res[i].n, j);
            fail();
        }
        *n_ids += ids.n;
        assert_int_equal(ml_tokenizer_decode(t, &text, ids.ids, ids.n), ML_OK);
        if (text.n != res[i].text_n || memcmp(text.bytes, res[i].text, text.n) != 0) {
            printf("document %zu: decode differs from DecodeIds (%zu vs %zu bytes)\n", i, text.n, res[i].text_n);
            fail();
        }
    }
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&text);
}

static void test_corpora_vs_sentencepiece(void **state) {
    (void)state;
    if (!have_model() || !have_python()) skip();
    const char *dir = ml_test_tmpdir("test_tokenizer_spm");
    docs d = {0};
    char **lines = NULL;
    size_t k = load_llamacpp(&d, &lines);
    for (size_t i = 0; i < k; i++) free(lines[i]);
    free(lines);
    add_edge_cases(&d);
    size_t small = d.count;
    int files = 0;
    if (ml_test_have_shared(ml_test_shared("data"))) walk(&d, ml_test_shared("data"), 30000, 16000, &files);
    size_t corpus_docs = d.count - small;
    /* Large documents: these go through the chunked, multi-threaded path. */
    static const char *big[] = {"/data/code/python_cpython311_stdlib.txt", "/data/wiki/enwiki_extract.txt",
                                "/data/chat/alpaca_5000.json", "/data/books/gutenberg/classics__dracula.txt"};
    size_t first_big = d.count;
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        char p[4096], *buf = NULL;
        size_t n = 0;
        snprintf(p, sizeof p, "%s%s", ML_SHARED_DIR, big[i]);
        if (!ml_test_have_shared(p) || ml_read_file(p, &buf, &n) != ML_OK) continue;
        size_t len = n < 400000 ? n : 400000, at = (n - len) / 3 + 1; /* odd offset: may cut a character */
        if (at + len > n) at = n - len;
        docs_add(&d, buf + at, len);
        free(buf);
    }
    printf("  %zu documents, %.1f MB (%d corpus files: %zu documents)\n", d.count, (double)d.bytes / 1e6, files,
           corpus_docs);

    ref_result *res = calloc(d.count, sizeof *res);
    char *refbuf = run_reference(&d, res, dir);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, MODEL), ML_OK);
    size_t n_ids = 0;
    compare(t, &d, res, &n_ids);
    printf("  all ids and decodes identical to sentencepiece (%zu ids)\n", n_ids);
    /* The large documents again on one thread (the serial path), and on several. */
    int threads = omp_get_max_threads();
    docs bigd = {0};
    for (size_t i = first_big; i < d.count; i++) docs_add(&bigd, d.s[i], d.n[i]);
    omp_set_num_threads(1);
    n_ids = 0;
    compare(t, &bigd, res + first_big, &n_ids);
    omp_set_num_threads(threads > 1 ? threads : 4);
    compare(t, &bigd, res + first_big, &n_ids);
    omp_set_num_threads(threads);
    docs_free(&bigd);
    ml_tokenizer_free(t);
    free(refbuf);
    free(res);
    docs_free(&d);
}

static void test_decode_random_ids(void **state) {
    (void)state;
    if (!have_model() || !have_python()) skip();
    const char *dir = ml_test_tmpdir("test_tokenizer_spm");
    const char *in = ml_test_path(dir, "ids.bin"), *out = ml_test_path(dir, "dec.bin");
    enum { N = 400 };
    uint32_t *seqs[N];
    size_t lens[N];
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    for (int i = 0; i < N; i++) {
        lens[i] = (size_t)(rnd() % 40);
        seqs[i] = malloc((lens[i] + 1) * sizeof **seqs);
        for (size_t j = 0; j < lens[i]; j++) {
            unsigned r = (unsigned)(rnd() % 10);
            uint32_t id = r < 3 ? 3 + (uint32_t)(rnd() % 256)                  /* byte pieces */
                          : r < 4 ? (uint32_t)(rnd() % 3)                      /* <unk> <s> </s> */
                          : r < 5 ? (rnd() & 1 ? 29871 : 259)                 /* ▁, ▁▁ */
                          : r < 6 ? 3 + 0xE0 + (uint32_t)(rnd() % 32)          /* UTF-8 lead bytes */
                                  : (uint32_t)(rnd() % 32000);
            seqs[i][j] = id;
        }
        put_u32(f, (uint32_t)lens[i]);
        if (lens[i]) assert_int_equal(fwrite(seqs[i], 4, lens[i], f), lens[i]);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_equal(ml_test_run("%s %s/tests/spm_reference.py decode %s %s %s", ML_PYTHON, ML_SOURCE_DIR, MODEL, in, out), 0);
    char *buf = NULL;
    size_t n = 0, at = 0;
    assert_int_equal(ml_read_file(out, &buf, &n), ML_OK);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, MODEL), ML_OK);
    ml_byte_buf text = {0};
    for (int i = 0; i < N; i++) {
        size_t m = get_u32(buf, n, &at);
        text.n = 0;
        assert_int_equal(ml_tokenizer_decode(t, &text, seqs[i], lens[i]), ML_OK);
        if (text.n != m || memcmp(text.bytes, buf + at, m) != 0) {
            printf("sequence %d: decode differs from DecodeIds:", i);
            for (size_t j = 0; j < lens[i]; j++) printf(" %u", seqs[i][j]);
            printf("\n  ours '%.*s'\n  sp   '%.*s'\n", (int)text.n, text.bytes, (int)m, buf + at);
            fail();
        }
        at += m;
        free(seqs[i]);
    }
    printf("  %d random id sequences decode as DecodeIds does\n", N);
    ml_byte_buf_free(&text);
    free(buf);
    ml_tokenizer_free(t);
}

static void test_properties(void **state) {
    (void)state;
    if (!have_model()) skip();
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, MODEL), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 32000);
    assert_int_equal(ml_tokenizer_bos(t), 1);
    assert_int_equal(ml_tokenizer_eos(t), 2);
    assert_int_equal(ml_tokenizer_pad(t), -1);
    char *data = NULL, want[64];
    size_t n = 0;
    assert_int_equal(ml_read_file(MODEL, &data, &n), ML_OK);
    snprintf(want, sizeof want, "spm-%016llx", (unsigned long long)ml_fnv1a64(ML_FNV1A64_INIT, data, n));
    assert_string_equal(ml_tokenizer_fingerprint(t), want);
    ml_spm_info si;
    assert_int_equal(ml_tokenizer_spm_info(t, &si), ML_OK);
    assert_int_equal(si.n_normal, 31741);
    assert_int_equal(si.n_byte, 256);
    assert_int_equal(si.n_control, 2);
    assert_int_equal(si.n_unknown, 1);
    assert_true(si.line_parallel && si.word_parallel && si.byte_fallback && si.add_dummy_prefix);
    /* BOS/EOS on request; encode appends. */
    ml_id_buf ids = {0};
    assert_int_equal(ml_tokenizer_encode(t, &ids, "Hello world", 11, ML_TOK_ADD_BOS | ML_TOK_ADD_EOS), ML_OK);
    assert_int_equal(ids.n, 4);
    uint32_t w1[4] = {1, 15043, 3186, 2};
    assert_memory_equal(ids.ids, w1, sizeof w1);
    assert_int_equal(ml_tokenizer_encode(t, &ids, "", 0, ML_TOK_ADD_BOS), ML_OK);
    assert_int_equal(ids.n, 5);
    /* Decode: specials give nothing; an id past the vocabulary is an error naming its position. */
    ml_byte_buf out = {0};
    assert_int_equal(ml_tokenizer_decode(t, &out, ids.ids, ids.n), ML_OK);
    assert_int_equal(out.n, 11);
    assert_memory_equal(out.bytes, "Hello world", 11);
    uint32_t bad[3] = {15043, 32000, 3186};
    assert_int_equal(ml_tokenizer_decode(t, &out, bad, 3), ML_ERR_RANGE);
    assert_non_null(strstr(ml_last_error(), "32000"));
    assert_non_null(strstr(ml_last_error(), "position 1"));
    /* Not a SentencePiece tokenizer: no info. */
    ml_tokenizer *b = NULL;
    assert_int_equal(ml_tokenizer_open(&b, "bytes"), ML_OK);
    assert_int_equal(ml_tokenizer_spm_info(b, &si), ML_ERR_UNSUPPORTED);
    ml_tokenizer_free(b);
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&out);
    free(data);
    ml_tokenizer_free(t);
}

/* ---- bad files */
static void expect_open_fails(const char *path, const char *needle) {
    ml_tokenizer *t = (ml_tokenizer *)1;
    ml_status s = ml_tokenizer_open(&t, path);
    printf("  %s -> %s\n", path, ml_last_error());
    assert_int_not_equal(s, ML_OK);
    assert_null(t);
    assert_non_null(strstr(ml_last_error(), needle));
    assert_null(strchr(ml_last_error(), '\n'));
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A tiny protobuf writer for synthetic models. */
typedef struct {
    uint8_t b[4096];
    size_t n;
} pbw;
static void w_varint(pbw *w, uint64_t v) {
    do {
        w->b[w->n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void w_bytes(pbw *w, unsigned field, const void *d, size_t n) {
    w_varint(w, field << 3 | 2);
    w_varint(w, n);
    memcpy(w->b + w->n, d, n);
    w->n += n;
}
static void w_int(pbw *w, unsigned field, uint64_t v) {
    w_varint(w, field << 3);
    w_varint(w, v);
}
static void w_piece(pbw *w, const char *s, float score, int type) {
    pbw p = {.n = 0};
    w_bytes(&p, 1, s, strlen(s));
    w_varint(&p, 2 << 3 | 5);
    memcpy(p.b + p.n, &score, 4);
    p.n += 4;
    w_int(&p, 3, (uint64_t)type);
    w_bytes(w, 1, p.b, p.n);
}
static void toy_model(pbw *w, int model_type, int charsmap, int with_unk, int remove_ws) {
    w->n = 0;
    if (with_unk) w_piece(w, "<unk>", 0, 2);
    w_piece(w, "<s>", 0, 3);
    w_piece(w, "</s>", 0, 3);
    static const char *normal[] = {"\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "ab", "c", "bc"};
    for (int i = 0; i < 7; i++) w_piece(w, normal[i], (float)-i, 1);
    pbw tr = {.n = 0};
    w_int(&tr, 3, (uint64_t)model_type);
    w_int(&tr, 40, 0);
    w_int(&tr, 41, 1);
    w_int(&tr, 42, 2);
    w_int(&tr, 43, (uint64_t)-1);
    w_bytes(w, 2, tr.b, tr.n);
    pbw no = {.n = 0};
    w_bytes(&no, 1, charsmap ? "nmt_nfkc" : "identity", charsmap ? 8 : 8);
    if (charsmap) w_bytes(&no, 2, "\x01\x02\x03\x04", 4);
    w_int(&no, 4, (uint64_t)remove_ws);
    w_bytes(w, 3, no.b, no.n);
}

static void test_bad_files(void **state) {
    (void)state;
    const char *dir = ml_test_tmpdir("test_tokenizer_spm");
    const char *p = ml_test_path(dir, "bad.model");
    write_file(p, "hello, I am a text file\n", 24);
    expect_open_fails(p, "not a recognised tokenizer");
    uint8_t rnd_bytes[4096];
    for (int trial = 0; trial < 20; trial++) {
        for (size_t i = 0; i < sizeof rnd_bytes; i++) rnd_bytes[i] = (uint8_t)rnd();
        if (trial & 1) rnd_bytes[0] = 0x0A;
        write_file(p, rnd_bytes, sizeof rnd_bytes);
        ml_tokenizer *t = NULL;
        assert_int_not_equal(ml_tokenizer_open(&t, p), ML_OK);
        assert_null(t);
    }
    write_file(p, "", 0);
    expect_open_fails(p, "not a recognised tokenizer");
    expect_open_fails(ml_test_path(dir, "missing.model"), "cannot open");
    expect_open_fails(dir, dir);

    /* Synthetic models: the refusals say why. */
    pbw w;
    toy_model(&w, 1, 0, 1, 0);
    write_file(p, w.b, w.n);
    expect_open_fails(p, "only BPE");
    toy_model(&w, 2, 1, 1, 0);
    write_file(p, w.b, w.n);
    expect_open_fails(p, "charsmap");
    toy_model(&w, 2, 0, 0, 0);
    write_file(p, w.b, w.n);
    expect_open_fails(p, "UNKNOWN");
    toy_model(&w, 2, 0, 1, 1);
    write_file(p, w.b, w.n);
    expect_open_fails(p, "remove_extra_whitespaces");
    /* Every truncation of a valid toy model fails cleanly or loads; none crashes. */
    toy_model(&w, 2, 0, 1, 0);
    for (size_t n = 0; n < w.n; n++) {
        write_file(p, w.b, n);
        ml_tokenizer *t = NULL;
        ml_status s = ml_tokenizer_open(&t, p);
        if (s == ML_OK) ml_tokenizer_free(t);
        else assert_null(t);
    }
    /* The whole toy model works: no byte fallback, so 'd' is <unk>; "ab" merges before "bc". */
    write_file(p, w.b, w.n);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, p), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 10);
    ml_id_buf ids = {0};
    assert_int_equal(ml_tokenizer_encode(t, &ids, "abc d", 5, 0), ML_OK);
    uint32_t want[4] = {7, 8, 3, 0}; /* ▁ab c ▁ <unk> */
    assert_int_equal(ids.n, 4);
    assert_memory_equal(ids.ids, want, sizeof want);
    ml_byte_buf out = {0};
    assert_int_equal(ml_tokenizer_decode(t, &out, ids.ids, ids.n), ML_OK);
    assert_int_equal(out.n, 9);
    assert_memory_equal(out.bytes, "abc  \xE2\x81\x87 ", 9);
    ml_byte_buf_free(&out);
    ml_id_buf_free(&ids);
    ml_tokenizer_free(t);

    if (!have_model()) return;
    /* Truncations of the real model. */
    char *data = NULL;
    size_t n = 0;
    assert_int_equal(ml_read_file(MODEL, &data, &n), ML_OK);
    size_t cuts[] = {1, 3, 16, 100, 1000, n / 2, n - 300, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(p, data, cuts[i]);
        ml_tokenizer *tt = (ml_tokenizer *)1;
        assert_int_not_equal(ml_tokenizer_open(&tt, p), ML_OK);
        assert_null(tt);
        printf("  truncated to %zu bytes -> %s\n", cuts[i], ml_last_error());
    }
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_llamacpp_cases),
        cmocka_unit_test(test_corpora_vs_sentencepiece),
        cmocka_unit_test(test_decode_random_ids),
        cmocka_unit_test(test_bad_files),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
