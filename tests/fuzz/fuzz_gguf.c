/* libFuzzer target for the GGUF reader (formats/gguf.h).
 * Build (clang only) and run, e.g. for a minute:
 *   cmake -B build-fuzz -S . -DCMAKE_C_COMPILER=clang -DML_FUZZ=ON -DML_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_gguf
 *   build-fuzz/fuzz_gguf -max_total_time=60 -max_len=4096 CORPUS_DIR [SEED_DIR]
 * Good seeds: small exports (`mobilellm export --format gguf` of configs/tiny-v1.json is 100-660 KB;
 * the files test_gguf writes under build/test_files/test_gguf with ML_KEEP_TEST_FILES=1). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An invariant of accepted input; a violation aborts, which libFuzzer reports as a finding. */
#define FUZZ_ASSERT(cond) \
    do {                  \
        if (!(cond)) abort(); \
    } while (0)

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy to an exact-size buffer so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    ml_gguf_file f;
    if (ml_gguf_parse(&f, buf, size, "fuzz") != ML_OK) {
        free(buf);
        return 0;
    }
    /* Whatever was accepted must be self-consistent and inside the buffer. */
    for (uint64_t i = 0; i < f.n_kv; i++) {
        const ml_gguf_kv *kv = &f.kv[i];
        FUZZ_ASSERT(ml_gguf_find_kv(&f, kv->key) == kv);
        FUZZ_ASSERT(!(kv->value < buf || kv->value > buf + size));
        if (kv->type == ML_GGUF_ARRAY && kv->arr_type == ML_GGUF_STRING)
            for (uint64_t k = 0; k < kv->arr_n && k < 64; k++) {
                const char *s;
                uint64_t n;
                FUZZ_ASSERT(ml_gguf_arr_str(kv, k, &s, &n) == ML_OK);
                FUZZ_ASSERT(!((const uint8_t *)s < buf || (const uint8_t *)s + n > buf + size));
            }
        uint32_t u;
        float fl;
        const char *s;
        uint64_t n;
        (void)ml_gguf_get_u32(&f, kv->key, &u);
        (void)ml_gguf_get_f32(&f, kv->key, &fl);
        FUZZ_ASSERT(!(ml_gguf_get_str(&f, kv->key, &s, &n) == ML_OK && (const uint8_t *)s + n > buf + size));
    }
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const ml_gguf_tensor *t = &f.tensors[i];
        FUZZ_ASSERT(ml_gguf_find_tensor(&f, t->name) == t);
        FUZZ_ASSERT(!(t->data < buf || t->nbytes > size || t->data + t->nbytes > buf + size));
        size_t numel = (size_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        if (numel > (size_t)1 << 22) continue;
        float *out = malloc(sizeof(float) * (numel ? numel : 1));
        if (!out) continue;
        ml_gguf_tensor_to_f32(t, out);
        free(out);
    }
    ml_gguf_file_free(&f);
    free(buf);
    return 0;
}
