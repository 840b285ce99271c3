/* libFuzzer target for the .npy reader (formats/npy.c). Seeds: tests/fuzz/corpus/npy. */
#include "fuzz_util.h"

#include "formats/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    const char *path = fuzz_path("array.npy");
    if (fuzz_write(path, data, size) != 0) return 0;
    ml_npy_array a;
    if (ml_npy_read(path, &a) != ML_OK) return 0;
    FUZZ_ASSERT(a.ndim >= 0 && a.ndim <= ML_NPY_MAX_DIMS);
    size_t count = 1;
    for (int i = 0; i < a.ndim; i++) count *= (size_t)a.shape[i];
    FUZZ_ASSERT(count == a.count && a.count * 4 <= size);
    volatile uint8_t acc = 0;
    for (size_t k = 0; k < a.count * 4; k++) acc ^= ((const uint8_t *)a.data)[k];
    ml_npy_free(&a);
    return 0;
}
