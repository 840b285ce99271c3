/* libFuzzer target for the native checkpoint reader (model/checkpoint.c over formats/h5.c), checksum block
 * included. Each input is tried as is (what a damaged or hostile file does: the checksum block should stop
 * it), then, when it carries our block, again with the block re-sealed to match the mutated bytes (a file
 * whose checksum was forged: HDF5 and our readers see the damage).
 * Build (clang) and run: see docs/fuzzing.md. Seeds: tests/fuzz/corpus/checkpoint. */
#include "fuzz_util.h"

#include "model/checkpoint.h"

static void try_file(const char *path) {
    ml_model m;
    ml_train_state st;
    if (ml_checkpoint_load(path, &m, &st) == ML_OK) {
        FUZZ_ASSERT(m.n_params > 0 && m.param_arena.base != NULL);
        ml_model_free(&m);
        ml_train_state_free(&st);
    }
    char *args = NULL;
    if (ml_checkpoint_read_args(path, &args) == ML_OK) free(args);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    const char *path = fuzz_path("checkpoint.h5");
    if (fuzz_write(path, data, size) != 0) return 0;
    try_file(path);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (fuzz_h5_reseal(copy, size) && fuzz_write(path, copy, size) == 0) try_file(path);
    free(copy);
    return 0;
}
