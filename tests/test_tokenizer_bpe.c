/* Byte-level BPE tokenizers: tiktoken rank files (Llama-3, Llama-4), HF tokenizer.json and the
 * UTF-8 handling, against llama.cpp's Llama-3 test vectors and an independent pure-Python
 * reference (tests/tokenizer_ref.py, python3-regex) on samples of every corpus in ../shared/data.
 * Ids must match exactly. Skips (with a message) when ../shared or python3-regex is missing. */
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

#include "common/atomic_file.h"
#include "data/bpe.h"
#include "data/bpe_train.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "tests/support/test_util.h"

#define LLAMA3 ml_test_shared("tokenizers/llama3-tiktoken-128000.model")
#define LLAMA4 ml_test_shared("tokenizers/llama4-tiktoken-200000.model")
#define SHARED_DATA ml_test_shared("data")
#define REF ML_SOURCE_DIR "/tests/tokenizer_ref.py"

static const char *dir;

static int have_python_regex(void) {
    static int r = -1;
    if (r < 0) r = ml_test_run("%s -c 'import regex' 2>/dev/null", ML_PYTHON) == 0;
    if (!r) ml_test_note_skip("python3-regex is not installed (apt-get install python3-regex)");
    return r;
}

static int have(const char *path) { return ml_test_have_shared(path); }

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Parse one line of space-separated ids; returns the pointer after the line. */
static const char *parse_line(const char *p, ml_id_buf *ids) {
    ids->n = 0;
    while (*p && *p != '\n') {
        if (*p == ' ') {
            p++;
            continue;
        }
        char *e;
        unsigned long v = strtoul(p, &e, 10);
        assert_true(e > p);
        assert_int_equal(ml_id_buf_reserve(ids, 1), ML_OK);
        ids->ids[ids->n++] = (uint32_t)v;
        p = e;
    }
    return *p ? p + 1 : p;
}

static void assert_ids_equal(const ml_id_buf *got, const ml_id_buf *want, const char *what) {
    if (got->n == want->n && !memcmp(got->ids, want->ids, got->n * sizeof *got->ids)) return;
    size_t i = 0;
    while (i < got->n && i < want->n && got->ids[i] == want->ids[i]) i++;
    fail_msg("%s: ids differ at %zu (got %zu ids, want %zu; got %u, want %u)", what, i, got->n, want->n,
             i < got->n ? got->ids[i] : 0, i < want->n ? want->ids[i] : 0);
}

/* ---- UTF-8 ---- */

static void test_utf8_sanitize_matches_python(void **state) {
    (void)state;
    if (!have_python_regex()) skip();
    const char *in = ml_test_path(dir, "utf8_in"), *out = ml_test_path(dir, "utf8_out");
    assert_int_equal(ml_test_run("mkdir -p %s %s", in, out), 0);
    /* random strings biased towards lead and continuation bytes, plus the classic cases */
    static const char *fixed[] = {"\xe2\x82", "\xe2\x82" "A", "\xf0\x80\x80", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
                                  "\xf0\x9f\x98", "\xff\xfe", "ok \xc3\xa9", "\xe0\x9f\x80", "\xef\xbf\xbd"};
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]), nrand = 300;
    uint64_t seed = 12345;
    char name[64];
    static uint8_t buf[400][40];
    size_t len[400];
    for (int i = 0; i < nfixed + nrand; i++) {
        if (i < nfixed) {
            len[i] = strlen(fixed[i]);
            memcpy(buf[i], fixed[i], len[i]);
        } else {
            len[i] = 1 + (size_t)(i % 37);
            for (size_t k = 0; k < len[i]; k++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                unsigned r = (unsigned)(seed >> 33);
                static const uint8_t pool[] = {0x41, 0x80, 0x9f, 0xa0, 0xbf, 0xc2, 0xc0, 0xdf, 0xe0, 0xe1, 0xed,
                                               0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff, 0x90, 0x8f, 0x20};
                buf[i][k] = r % 3 ? pool[r % sizeof pool] : (uint8_t)(r >> 8);
            }
        }
        snprintf(name, sizeof name, "%s/s%04d.txt", in, i);
        write_file(name, buf[i], len[i]);
    }
    assert_int_equal(ml_test_run("%s %s sanitize - %s %s", ML_PYTHON, REF, out, in), 0);
    for (int i = 0; i < nfixed + nrand; i++) {
        char *want, *got;
        size_t wn, gn;
        snprintf(name, sizeof name, "%s/s%04d.txt", out, i);
        assert_int_equal(ml_read_file(name, &want, &wn), ML_OK);
        assert_int_equal(ml_utf8_sanitize(buf[i], len[i], &got, &gn), ML_OK);
        if (gn != wn || memcmp(got, want, gn)) fail_msg("sanitised string %d differs from Python's", i);
        assert_int_equal(ml_utf8_valid_prefix((uint8_t *)got, gn), gn);
        free(want);
        free(got);
    }
}

/* ---- llama.cpp's Llama-3 BPE vectors ---- */

static void test_llamacpp_llama3_vectors(void **state) {
    (void)state;
    const char *inp = ml_test_shared("tokenizers/llamacpp-ggml-vocab-llama-bpe.gguf.inp"),
               *outp = ml_test_shared("tokenizers/llamacpp-ggml-vocab-llama-bpe.gguf.out");
    if (!have(LLAMA3) || !have(inp) || !have(outp)) skip();
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, LLAMA3), ML_OK);
    char *in, *out;
    size_t nin, nout;
    assert_int_equal(ml_read_file(inp, &in, &nin), ML_OK);
    assert_int_equal(ml_read_file(outp, &out, &nout), ML_OK);
    const char *sep = "\n__ggml_vocab_test__\n";
    const char *p = in, *q = out;
    ml_id_buf got = {0}, want = {0};
    ml_byte_buf dec = {0};
    int n = 0;
    for (;;) {
        const char *e = strstr(p, sep);
        if (!e) break;
        got.n = 0;
        assert_int_equal(ml_tokenizer_encode(t, &got, p, (size_t)(e - p), 0), ML_OK);
        q = parse_line(q, &want);
        char what[64];
        snprintf(what, sizeof what, "llama.cpp vector %d", n);
        assert_ids_equal(&got, &want, what);
        dec.n = 0;
        assert_int_equal(ml_tokenizer_decode(t, &dec, got.ids, got.n), ML_OK);
        assert_int_equal(dec.n, (size_t)(e - p));
        assert_memory_equal(dec.bytes, p, dec.n);
        p = e + strlen(sep);
        n++;
    }
    assert_true(n >= 40);
    fprintf(stderr, "%d llama.cpp vectors match\n", n);
    free(in);
    free(out);
    ml_id_buf_free(&got);
    ml_id_buf_free(&want);
    ml_byte_buf_free(&dec);
    ml_tokenizer_free(t);
}

/* ---- corpora against the Python reference ---- */

static int n_samples;

static void add_sample(const char *sdir, const void *p, size_t n) {
    char name[4200];
    snprintf(name, sizeof name, "%s/s%04d.txt", sdir, n_samples++);
    write_file(name, p, n);
}

/* Two ~3 KB windows (starting at a line) of every file under path, recursively. */
static void sample_tree(const char *sdir, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        struct dirent **ents;
        int k = scandir(path, &ents, NULL, alphasort);
        for (int i = 0; i < k; i++) {
            if (ents[i]->d_name[0] != '.') {
                char sub[4200];
                snprintf(sub, sizeof sub, "%s/%s", path, ents[i]->d_name);
                sample_tree(sdir, sub);
            }
            free(ents[i]);
        }
        free(ents);
        return;
    }
    char *data;
    size_t n;
    assert_int_equal(ml_read_file(path, &data, &n), ML_OK);
    for (int w = 0; w < 2; w++) {
        size_t at = w == 0 ? 0 : n / 2 + (n % 977);
        if (at >= n) continue;
        while (at > 0 && at < n && data[at - 1] != '\n') at++;
        size_t len = n - at < 3000 ? n - at : 3000;
        if (len) add_sample(sdir, data + at, len);
    }
    free(data);
}

static void make_samples(const char *sdir) {
    if (n_samples) return;
    assert_int_equal(ml_test_run("mkdir -p %s", sdir), 0);
    sample_tree(sdir, SHARED_DATA);
    /* hand-made cases: specials as text, invalid UTF-8, long runs (the heap path), odd spaces */
    static const char *const extra[] = {
        "<|begin_of_text|>Hello<|end_of_text|> <|eot_id|><|reserved_special_token_5|><|eot|>",
        "bad \xff\xfe bytes \xe2\x82 cut \xf0\x9f\x98 and \xed\xa0\x80 surrogate \xc0\xaf overlong",
        "NEL\xc2\x85x nbsp\xc2\xa0y ideo\xe3\x80\x80z \x1c\x1d\x1e\x1f\x0b\x0c \r\n\r\n  \t\n",
        "I'M HE'S they'RE we'Ve O'Neill's CamelCaseWords HTTPServer iPhone XMLHttpRequest",
        "1234567890 ١٢٣٤ ½¾ 3.14159 1,000,000 x²",
        "日本語のテキスト、中文文本。한국어 텍스트 Ελληνικά русский עברית العربية हिन्दी 🤖🎉👍🏽",
        "path/to/file.c // comment /* block */ a//b http://example.com/a/b?c=d",
        "",
        " ",
        "\n",
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) add_sample(sdir, extra[i], strlen(extra[i]));
    static char run[1500]; /* the reference's BPE is quadratic: keep these short */
    for (size_t i = 0; i < sizeof run; i++) run[i] = "abcdefghij"[(i * 7 + i / 13) % 10];
    add_sample(sdir, run, sizeof run); /* one long word */
    for (size_t i = 0; i < sizeof run; i++) run[i] = "\xe4\xb8\x80"[i % 3]; /* 一一一...: long CJK piece */
    add_sample(sdir, run, sizeof run - sizeof run % 3);
    memset(run, ' ', sizeof run);
    add_sample(sdir, run, sizeof run);
}

static void compare_with_reference(const char *spec, const char *kind, const char *model, const char *tag) {
    const char *sdir = ml_test_path(dir, "samples");
    make_samples(sdir);
    char refout[4200];
    snprintf(refout, sizeof refout, "%s/ref_%s.txt", dir, tag);
    assert_int_equal(ml_test_run("%s %s %s %s %s %s", ML_PYTHON, REF, kind, model, refout, sdir), 0);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, spec), ML_OK);
    char *ref;
    size_t nref;
    assert_int_equal(ml_read_file(refout, &ref, &nref), ML_OK);
    const char *q = ref;
    ml_id_buf got = {0}, want = {0};
    ml_byte_buf dec = {0};
    size_t tokens = 0, bytes = 0;
    for (int i = 0; i < n_samples; i++) {
        char name[4200], *text, *clean;
        size_t n, cn;
        snprintf(name, sizeof name, "%s/s%04d.txt", sdir, i);
        assert_int_equal(ml_read_file(name, &text, &n), ML_OK);
        got.n = 0;
        assert_int_equal(ml_tokenizer_encode(t, &got, text, n, 0), ML_OK);
        q = parse_line(q, &want);
        char what[4300];
        snprintf(what, sizeof what, "%s sample %s", tag, name);
        assert_ids_equal(&got, &want, what);
        /* decode gives back the text (with U+FFFD where it was not UTF-8) */
        dec.n = 0;
        assert_int_equal(ml_tokenizer_decode(t, &dec, got.ids, got.n), ML_OK);
        assert_int_equal(ml_utf8_sanitize((uint8_t *)text, n, &clean, &cn), ML_OK);
        assert_int_equal(dec.n, cn);
        assert_memory_equal(dec.bytes, clean, cn);
        tokens += got.n;
        bytes += n;
        free(text);
        free(clean);
    }
    fprintf(stderr, "%s: %d samples, %zu bytes, %zu tokens, all equal to the reference\n", tag, n_samples, bytes, tokens);
    free(ref);
    ml_id_buf_free(&got);
    ml_id_buf_free(&want);
    ml_byte_buf_free(&dec);
    ml_tokenizer_free(t);
}

static void test_llama3_corpora(void **state) {
    (void)state;
    if (!have(LLAMA3) || !have(SHARED_DATA) || !have_python_regex()) skip();
    compare_with_reference(LLAMA3, "tiktoken", LLAMA3, "llama3");
}

static void test_llama4_corpora(void **state) {
    (void)state;
    if (!have(LLAMA4) || !have(SHARED_DATA) || !have_python_regex()) skip();
    compare_with_reference(LLAMA4, "tiktoken", LLAMA4, "llama4");
}

/* A tokenizer.json made from the Llama-3 ranks (merges as [a, b] pairs, ordered as
 * transformers' converter does) must encode exactly like the rank file. */
static void test_hf_json_from_llama3(void **state) {
    (void)state;
    if (!have(LLAMA3) || !have(SHARED_DATA) || !have_python_regex()) skip();
    const char *json = ml_test_path(dir, "llama3.tokenizer.json");
    assert_int_equal(ml_test_run("%s %s hfconvert %s %s", ML_PYTHON, REF, LLAMA3, json), 0);
    compare_with_reference(json, "hf", json, "hf-llama3");
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, json), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 128002);
    assert_int_equal(ml_tokenizer_bos(t), 128000);
    assert_int_equal(ml_tokenizer_eos(t), 128001);
    assert_non_null(strstr(ml_tokenizer_fingerprint(t), "hf-bpe-"));
    ml_tokenizer_free(t);
}

/* ---- specials, layout, decode errors ---- */

static void test_specials_and_layout(void **state) {
    (void)state;
    if (!have(LLAMA3) || !have(LLAMA4)) skip();
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, LLAMA3), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 128256);
    assert_int_equal(ml_tokenizer_bos(t), 128000);
    assert_int_equal(ml_tokenizer_eos(t), 128001);
    assert_int_equal(ml_tokenizer_pad(t), 128004);
    assert_int_equal(ml_tokenizer_special_id(t, "<|eom_id|>"), 128008);
    assert_int_equal(ml_tokenizer_special_id(t, "<|eot_id|>"), 128009);
    /* names as in meta-llama/llama-models (3.2+: <|step_id|>, <|image|>); HF's 3.1 tokenizer.json
     * calls 128005 <|reserved_special_token_2|> instead: the ids are the same */
    assert_int_equal(ml_tokenizer_special_id(t, "<|step_id|>"), 128005);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reserved_special_token_2|>"), 128012);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reserved_special_token_245|>"), 128255);
    assert_int_equal(strncmp(ml_tokenizer_fingerprint(t), "tiktoken-", 9), 0);
    ml_id_buf ids = {0};
    const char *s = "<|begin_of_text|>hi";
    assert_int_equal(ml_tokenizer_encode(t, &ids, s, strlen(s), ML_TOK_ADD_BOS | ML_TOK_ADD_EOS), ML_OK);
    assert_true(ids.n > 4);
    assert_int_equal(ids.ids[0], 128000);
    assert_int_equal(ids.ids[ids.n - 1], 128001);
    for (size_t i = 1; i + 1 < ids.n; i++) assert_true(ids.ids[i] < 128000); /* specials in text are text */
    ml_byte_buf out = {0};
    assert_int_equal(ml_tokenizer_decode(t, &out, ids.ids, ids.n), ML_OK);
    assert_int_equal(out.n, strlen(s));
    assert_memory_equal(out.bytes, s, out.n);
    uint32_t bad[2] = {1, 128256};
    assert_int_equal(ml_tokenizer_decode(t, &out, bad, 2), ML_ERR_RANGE);
    assert_non_null(strstr(ml_last_error(), "position 1"));
    ml_tokenizer_free(t);

    assert_int_equal(ml_tokenizer_open(&t, LLAMA4), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 202048);
    assert_int_equal(ml_tokenizer_bos(t), 200000);
    assert_int_equal(ml_tokenizer_eos(t), 200001);
    assert_int_equal(ml_tokenizer_special_id(t, "<|header_start|>"), 200005);
    assert_int_equal(ml_tokenizer_special_id(t, "<|eot|>"), 200008);
    assert_int_equal(ml_tokenizer_special_id(t, "<|finetune_right_pad|>"), 200018);
    assert_int_equal(ml_tokenizer_pad(t), 200018);
    assert_int_equal(ml_tokenizer_special_id(t, "<|image_start|>"), 200080);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reasoning_reserved_special_token_0|>"), 201134);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reasoning_thinking_end|>"), 201143);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reserved_special_token_0|>"), 201144);
    assert_int_equal(ml_tokenizer_special_id(t, "<|reserved_special_token_903|>"), 202047);
    ml_tokenizer_free(t);
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&out);
}

/* ---- training ---- */

static ml_bpe_trainer *train_on(const char *const *files, int n, uint32_t vocab) {
    ml_bpe_trainer *tr = NULL;
    assert_int_equal(ml_bpe_trainer_new(&tr), ML_OK);
    for (int i = 0; i < n; i++) {
        char *data;
        size_t len;
        assert_int_equal(ml_read_file(files[i], &data, &len), ML_OK);
        assert_int_equal(ml_bpe_trainer_add_text(tr, data, len), ML_OK);
        free(data);
    }
    ml_bpe_train_opts o = {.vocab_size = vocab};
    assert_int_equal(ml_bpe_trainer_train(tr, &o), ML_OK);
    return tr;
}

/* Train, write tokenizer.json, load it back: every training piece is segmented exactly as
 * training left it; whole texts encode as the Python reference reads the file; a second
 * run writes the same bytes. */
static void test_train_roundtrip(void **state) {
    (void)state;
    const char *files[] = {ml_test_shared("data/books/tinyshakespeare.txt"),
                           ml_test_shared("data/stories/tinystories_valid_prefix.txt"),
                           ml_test_shared("data/math/gsm8k_test.jsonl")};
    for (int i = 0; i < 3; i++)
        if (!have(files[i])) skip();
    ml_bpe_trainer *tr = train_on(files, 3, 3000);
    assert_int_equal(ml_bpe_trainer_vocab_size(tr), 3000);
    assert_int_equal(ml_bpe_trainer_n_merges(tr), 3000 - 256 - 2);
    const char *json = ml_test_path(dir, "trained.json"), *json2 = ml_test_path(dir, "trained2.json");
    assert_int_equal(ml_bpe_trainer_write_json(tr, json), ML_OK);
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, json), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 3000);
    assert_int_equal(ml_tokenizer_bos(t), 2998);
    assert_int_equal(ml_tokenizer_eos(t), 2999);
    const ml_bpe *b = ml_tokenizer_bpe(t);
    assert_non_null(b);
    ml_id_buf got = {0};
    uint64_t tokens = 0, pieces = 0;
    for (size_t i = 0; i < ml_bpe_trainer_n_words(tr); i++) {
        size_t len, n;
        uint64_t count;
        const uint32_t *ids;
        const uint8_t *w = ml_bpe_trainer_word(tr, i, &len, &count, &ids, &n);
        got.n = 0;
        assert_int_equal(ml_bpe_encode_piece(b, w, len, &got), ML_OK);
        if (got.n != n || memcmp(got.ids, ids, n * sizeof *ids)) fail_msg("training piece %zu segments differently", i);
        tokens += count * n;
        pieces += count;
    }
    fprintf(stderr, "trained: %zu distinct pieces (%llu in all) -> %llu tokens, all segmented as in training\n",
            ml_bpe_trainer_n_words(tr), (unsigned long long)pieces, (unsigned long long)tokens);
    ml_id_buf_free(&got);
    ml_tokenizer_free(t);
    ml_bpe_trainer_free(tr);
    tr = train_on(files, 3, 3000);
    assert_int_equal(ml_bpe_trainer_write_json(tr, json2), ML_OK);
    ml_bpe_trainer_free(tr);
    assert_int_equal(ml_test_run("cmp %s %s", json, json2), 0);
    if (have_python_regex() && have(SHARED_DATA)) compare_with_reference(json, "hf", json, "trained");
}

/* ---- bad files ---- */

static void expect_open_fails(const char *name, const void *content, size_t n, ml_status code, const char *msg) {
    const char *p = ml_test_path(dir, name);
    write_file(p, content, n);
    ml_tokenizer *t = (ml_tokenizer *)1;
    ml_status s = ml_tokenizer_open(&t, p);
    if (s != code || !strstr(ml_last_error(), msg))
        fail_msg("%s: got status %d, message '%s'; want %d with '%s'", name, s, ml_last_error(), code, msg);
    assert_null(t);
    assert_null(strchr(ml_last_error(), '\n'));
}

static void test_bad_files(void **state) {
    (void)state;
    ml_tokenizer *t = (ml_tokenizer *)1;
    assert_int_equal(ml_tokenizer_open(&t, ml_test_path(dir, "missing.model")), ML_ERR_IO);
    assert_null(t);
    expect_open_fails("few.model", "IQ== 0\nIg== 1\n", 14, ML_ERR_UNSUPPORTED, "2 ranks");
    expect_open_fails("junk.bin", "\x01\x02garbage", 9, ML_ERR_UNSUPPORTED, "not a recognised tokenizer file");
    expect_open_fails("bad.json", "{\"model\": [1,", 13, ML_ERR_FORMAT, "not valid JSON");
    const char *spm = "{\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\"},"
                      "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0},\"merges\":[]}}";
    expect_open_fails("spm.json", spm, strlen(spm), ML_ERR_UNSUPPORTED, "unsupported tokenizer.json");
    const char *wp = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}";
    expect_open_fails("wp.json", wp, strlen(wp), ML_ERR_UNSUPPORTED, "model type WordPiece");
    if (!have(LLAMA3)) return;
    /* a corrupted and a truncated rank file */
    char *data;
    size_t n;
    assert_int_equal(ml_read_file(LLAMA3, &data, &n), ML_OK);
    char *nl = data;
    for (int i = 0; i < 1000; i++) nl = strchr(nl, '\n') + 1;
    nl[0] = '#'; /* line 1001 */
    expect_open_fails("corrupt.model", data, n, ML_ERR_FORMAT, "line 1001");
    nl[0] = 'I';
    memcpy(strchr(nl, ' ') + 1, "9", 1); /* a rank out of order: duplicates or goes out of range */
    expect_open_fails("dup.model", data, n, ML_ERR_FORMAT, "given twice");
    free(data);
}

int main(void) {
    dir = ml_test_tmpdir("test_tokenizer_bpe");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_sanitize_matches_python),
        cmocka_unit_test(test_llamacpp_llama3_vectors),
        cmocka_unit_test(test_specials_and_layout),
        cmocka_unit_test(test_llama3_corpora),
        cmocka_unit_test(test_llama4_corpora),
        cmocka_unit_test(test_hf_json_from_llama3),
        cmocka_unit_test(test_train_roundtrip),
        cmocka_unit_test(test_bad_files),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
