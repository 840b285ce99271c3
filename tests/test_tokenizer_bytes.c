/* The byte tokenizer behind the tokenizer interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "data/tokenizer.h"
#include "data/tokenizer_bytes.h"
#include "tests/support/test_util.h"

static void test_encode_decode(void **state) {
    (void)state;
    ml_tokenizer *t = NULL;
    assert_int_equal(ml_tokenizer_open(&t, "bytes"), ML_OK);
    assert_int_equal(ml_tokenizer_vocab_size(t), 259);
    assert_int_equal(ml_tokenizer_bos(t), 256);
    assert_int_equal(ml_tokenizer_eos(t), 257);
    assert_int_equal(ml_tokenizer_pad(t), 258);
    assert_string_equal(ml_tokenizer_fingerprint(t), "bytes-v1");

    const char text[] = "h\xc3\xa9\x00\xff!"; /* any bytes, NUL and 0xff included */
    ml_id_buf ids = {0};
    assert_int_equal(ml_tokenizer_encode(t, &ids, text, 6, 0), ML_OK);
    uint32_t want[6] = {'h', 0xc3, 0xa9, 0, 0xff, '!'};
    assert_int_equal(ids.n, 6);
    assert_memory_equal(ids.ids, want, sizeof want);
    /* Encode appends; BOS/EOS wrap the document. */
    assert_int_equal(ml_tokenizer_encode(t, &ids, "ab", 2, ML_TOK_ADD_BOS | ML_TOK_ADD_EOS), ML_OK);
    uint32_t want2[4] = {256, 'a', 'b', 257};
    assert_int_equal(ids.n, 10);
    assert_memory_equal(ids.ids + 6, want2, sizeof want2);
    assert_int_equal(ml_tokenizer_encode(t, &ids, "", 0, ML_TOK_ADD_EOS), ML_OK);
    assert_int_equal(ids.n, 11);
    assert_int_equal(ids.ids[10], 257);

    /* Decode skips the specials; ids past the vocab are an error naming the position. */
    ml_byte_buf out = {0};
    ids.ids[ids.n++] = 258;
    assert_int_equal(ml_tokenizer_decode(t, &out, ids.ids, ids.n), ML_OK);
    assert_int_equal(out.n, 8);
    assert_memory_equal(out.bytes, "h\xc3\xa9\x00\xff!ab", 8);
    uint32_t bad[3] = {'x', 259, 'y'};
    out.n = 0;
    assert_int_equal(ml_tokenizer_decode(t, &out, bad, 3), ML_ERR_RANGE);
    assert_non_null(strstr(ml_last_error(), "259"));
    assert_non_null(strstr(ml_last_error(), "position 1"));

    /* Large input through the growable buffer. */
    static char big[100000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
    ids.n = 0;
    out.n = 0;
    assert_int_equal(ml_tokenizer_encode(t, &ids, big, sizeof big, ML_TOK_ADD_BOS), ML_OK);
    assert_int_equal(ml_tokenizer_decode(t, &out, ids.ids, ids.n), ML_OK);
    assert_int_equal(out.n, sizeof big);
    assert_memory_equal(out.bytes, big, sizeof big);
    ml_id_buf_free(&ids);
    ml_byte_buf_free(&out);
    ml_tokenizer_free(t);
}

static void test_open_other_specs(void **state) {
    (void)state;
    ml_tokenizer *t = (ml_tokenizer *)1;
    assert_int_equal(ml_tokenizer_open(&t, "no-such-tokenizer.model"), ML_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(ml_last_error(), "cannot open no-such-tokenizer.model"));
    ml_tokenizer_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_open_other_specs),
    };
    return ml_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
