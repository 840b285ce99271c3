/* libFuzzer target for tokenizer.json (data/tokenizer_hf.c over data/bpe.c): load, then encode and decode
 * a fixed text. Seeds: tests/fuzz/corpus/tokenizer_hf. */
#include "fuzz_util.h"

#include "data/tokenizer.h"
#include "data/tokenizer_hf.h"

static const char sample[] = "Hello, world! It's 2024 -- naïve café\n\t  spaces  <|endoftext|> done";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    ml_tokenizer *t;
    if (ml_tokenizer_hf_new(&t, "fuzz", (const char *)data, size) != ML_OK) return 0;
    ml_id_buf ids = {0};
    if (ml_tokenizer_encode(t, &ids, sample, sizeof sample - 1, 0) == ML_OK) {
        for (size_t i = 0; i < ids.n; i++) FUZZ_ASSERT(ids.ids[i] < ml_tokenizer_vocab_size(t));
        ml_byte_buf out = {0};
        (void)ml_tokenizer_decode(t, &out, ids.ids, ids.n);
        ml_byte_buf_free(&out);
    }
    ml_id_buf_free(&ids);
    ml_tokenizer_free(t);
    return 0;
}
