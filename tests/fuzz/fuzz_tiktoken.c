/* libFuzzer target for tiktoken rank files (data/tokenizer_tiktoken.c over data/bpe.c). The reader only
 * takes files of exactly 128000 (Llama-3) or 200000 (Llama-4) ranks, too big for a seed corpus, so each
 * input is tried as is and then as the first lines of a 128000-rank file whose remaining ranks are filled
 * with 5-byte tokens (0xfe 0xfd + the rank's 3 bytes) that cannot collide with short ones.
 * Seeds: tests/fuzz/corpus/tiktoken (the 256 byte tokens and a few merges). */
#include "fuzz_util.h"

#include "data/tokenizer.h"
#include "data/tokenizer_tiktoken.h"

#define RANKS 128000

static char *filler;          /* lines for ranks 0..RANKS-1 */
static size_t filler_off[RANKS + 1];

static void b64(const uint8_t *in, size_t n, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

static int make_filler(void) {
    filler = malloc((size_t)RANKS * 24);
    if (!filler) return -1;
    size_t off = 0;
    for (uint32_t r = 0; r < RANKS; r++) {
        uint8_t tok[5] = {0xfe, 0xfd, (uint8_t)(r >> 16), (uint8_t)(r >> 8), (uint8_t)r};
        char enc[16];
        b64(tok, 5, enc);
        filler_off[r] = off;
        off += (size_t)sprintf(filler + off, "%s %u\n", enc, r);
    }
    filler_off[RANKS] = off;
    return 0;
}

static const char sample[] = "Hello, world! It's 2024 -- naïve café\n\t  spaces <|begin_of_text|> done";

static void try_text(const char *text, size_t n) {
    ml_tokenizer *t;
    if (ml_tokenizer_tiktoken_new(&t, "fuzz", text, n) != ML_OK) return;
    ml_id_buf ids = {0};
    if (ml_tokenizer_encode(t, &ids, sample, sizeof sample - 1, 0) == ML_OK) {
        for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.ids[i] < ml_tokenizer_vocab_size(t));
        ml_byte_buf out = {0};
        (void)ml_tokenizer_decode(t, &out, ids.ids, ids.n);
        ml_byte_buf_free(&out);
    }
    ml_id_buf_free(&ids);
    ml_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    if (!filler && make_filler() != 0) return 0;
    try_text((const char *)data, size);
    /* Count non-empty lines as the reader does; pad to RANKS lines. */
    size_t lines = 0;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (e > i) lines++;
        i = e + 1;
    }
    if (lines >= RANKS) return 0;
    size_t tail = filler_off[RANKS] - filler_off[lines];
    char *text = malloc(size + 1 + tail);
    if (!text) return 0;
    memcpy(text, data, size);
    size_t n = size;
    if (n && text[n - 1] != '\n') text[n++] = '\n';
    memcpy(text + n, filler + filler_off[lines], tail);
    try_text(text, n + tail);
    free(text);
    return 0;
}
