/* libFuzzer target for the teacher-logit cache reader (distill/logit_cache.c over formats/h5.c). Inputs are
 * tried as is and, when they carry our checksum block, re-sealed (see fuzz_checkpoint.c). Files written by
 * scripts/teacher_logits_hf.py (h5py, no checksum block) take the unverified path.
 * Seeds: tests/fuzz/corpus/logit_cache. */
#include "fuzz_util.h"

#include "distill/logit_cache.h"

static void try_file(const char *path) {
    ml_logit_cache *c;
    if (ml_logit_cache_open(&c, path) != ML_OK) return;
    const ml_logit_cache_info *info = ml_logit_cache_get_info(c);
    FUZZ_ASSERT(info->B > 0 && info->T > 0 && info->K > 0 && info->n_batches >= 0);
    for (int64_t i = 0; i < info->n_batches && i < 3; i++) {
        ml_logit_batch b;
        if (ml_logit_cache_read(c, i, &b) != ML_OK) continue;
        size_t n = (size_t)info->B * (size_t)info->T;
        volatile float acc = 0;
        for (size_t k = 0; k < n; k++) acc += b.tail[k];
        for (size_t k = 0; k < n * (size_t)info->K; k++) {
            FUZZ_ASSERT(b.ids[k] >= 0 && b.ids[k] < info->vocab_size);
            acc += b.logprobs[k];
        }
    }
    ml_logit_cache_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    const char *path = fuzz_path("cache.h5");
    if (fuzz_write(path, data, size) != 0) return 0;
    try_file(path);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (fuzz_h5_reseal(copy, size) && fuzz_write(path, copy, size) == 0) try_file(path);
    free(copy);
    return 0;
}
