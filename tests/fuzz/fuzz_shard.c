/* libFuzzer target for the token shard reader (data/shard.c): open (header, sections, doc table, frame
 * headers), a full verify, a few reads and document look-ups. Each input is tried as is, then with its
 * tail and header checksums recomputed (FNV-1a 64, see data/shard.h), so mutants get past them into the
 * section, document-table and frame checks. Seeds: tests/fuzz/corpus/shard. */
#include "fuzz_util.h"

#include "data/shard.h"

static uint64_t u64_at(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Recompute the checksums of a (mutated) version-1 shard in place; 0 if it has no such header. */
static int reseal(uint8_t *b, size_t n) {
    if (n < 128 || memcmp(b, "MLSHARD1", 8) != 0) return 0;
    uint64_t docs = u64_at(b + 32), frames = u64_at(b + 48), meta_off = u64_at(b + 72), meta_n = u64_at(b + 80);
    uint64_t docs_off = u64_at(b + 88), index_off = u64_at(b + 96);
    if (docs < n / 8 && frames < n / 16 && meta_off <= n && meta_n <= n - meta_off && docs_off <= n &&
        docs * 8 <= n - docs_off && index_off <= n && frames * 16 <= n - index_off) {
        uint64_t h = ml_fnv1a64(ML_FNV1A64_INIT, b + meta_off, meta_n);
        h = ml_fnv1a64(h, b + docs_off, docs * 8);
        h = ml_fnv1a64(h, b + index_off, frames * 16);
        memcpy(b + 104, &h, 8);
    }
    uint64_t hs = ml_fnv1a64(ML_FNV1A64_INIT, b, 120);
    memcpy(b + 120, &hs, 8);
    return 1;
}

static void try_file(const char *path, size_t size) {
    ml_shard_reader *r;
    if (ml_shard_open(&r, path) != ML_OK) return;
    const ml_shard_info *info = ml_shard_get_info(r);
    FUZZ_ASSERT(info->file_bytes == size);
    if (ml_shard_verify(r) == ML_OK && info->n_tokens > 0) {
        uint32_t buf[64];
        uint64_t n = info->n_tokens < 64 ? info->n_tokens : 64;
        if (ml_shard_read_u32(r, buf, 0, n) == ML_OK)
            for (uint64_t i = 0; i < n; i++) FUZZ_ASSERT(buf[i] < info->vocab_size);
        (void)ml_shard_read_u32(r, buf, info->n_tokens - n, n);
        uint64_t last = info->n_tokens - 1;
        if (info->n_docs > 0) {
            uint64_t d = ml_shard_doc_of_token(r, last);
            FUZZ_ASSERT(d < info->n_docs);
            FUZZ_ASSERT(ml_shard_doc_start(r, d) <= last && last < ml_shard_doc_end(r, d));
        }
    }
    ml_shard_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    const char *path = fuzz_path("tokens.shard");
    if (fuzz_write(path, data, size) != 0) return 0;
    try_file(path, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (reseal(copy, size) && memcmp(copy, data, size) != 0 && fuzz_write(path, copy, size) == 0) try_file(path, size);
    free(copy);
    return 0;
}
