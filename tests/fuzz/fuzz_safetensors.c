/* libFuzzer target for the safetensors header parser and tensor accessors.
 * Build (clang only) and run, e.g. for a minute with a few seeds:
 *   cmake -B build-fuzz -S . -DCMAKE_C_COMPILER=clang -DML_FUZZ=ON -DML_TESTS=OFF
 *   cmake --build build-fuzz --target fuzz_safetensors
 *   build-fuzz/fuzz_safetensors -max_total_time=60 -max_len=4096 CORPUS_DIR [SEED_DIR]
 * Any small valid safetensors file (e.g. written by tests/test_safetensors) is a good seed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An invariant of accepted input; a violation aborts, which libFuzzer reports as a finding. */
#define FUZZ_ASSERT(cond) \
    do {                  \
        if (!(cond)) abort(); \
    } while (0)

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_safetensors *st;
    if (ml_safetensors_open_memory(&st, data, size, "fuzz") != ML_OK) return 0;
    /* Whatever was accepted must be self-consistent and inside the buffer. */
    uint64_t covered = 0;
    for (size_t i = 0; i < ml_safetensors_count(st); i++) {
        const ml_st_tensor *t = ml_safetensors_tensor(st, i);
        FUZZ_ASSERT(ml_safetensors_find(st, t->name) == t);
        const void *raw;
        size_t bytes;
        FUZZ_ASSERT(ml_safetensors_raw(st, t->name, &raw, &bytes) == ML_OK);
        FUZZ_ASSERT(!((const uint8_t *)raw < data || (const uint8_t *)raw + bytes > data + size));
        volatile uint8_t acc = 0; /* touch every byte: ASan checks the bounds */
        for (size_t k = 0; k < bytes; k++) acc ^= ((const uint8_t *)raw)[k];
        covered += bytes;
        if ((t->dtype == ML_ST_F32 || t->dtype == ML_ST_F16 || t->dtype == ML_ST_BF16) && t->numel <= (1u << 16)) {
            float *out = malloc((size_t)t->numel * sizeof(float) + 1);
            FUZZ_ASSERT(!out || ml_safetensors_read_f32(st, t->name, out, (size_t)t->numel) == ML_OK);
            free(out);
        }
    }
    for (size_t i = 0; i < ml_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        ml_safetensors_metadata_at(st, i, &k, &v);
        FUZZ_ASSERT(k && v && ml_safetensors_metadata(st, k) != NULL);
    }
    uint64_t n;
    memcpy(&n, data, 8);
    FUZZ_ASSERT(8 + n + covered == size); /* tensors tile the data buffer exactly */
    ml_safetensors_close(st);
    return 0;
}
