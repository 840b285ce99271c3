/* libFuzzer target for the token shard reader (data/shard.c): open (header, sections, doc table, frame
 * headers), a full verify, a few reads and document look-ups. Seeds: tests/fuzz/corpus/shard. */
#include "fuzz_util.h"

#include "data/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_limit_memory();
    const char *path = fuzz_path("tokens.shard");
    if (fuzz_write(path, data, size) != 0) return 0;
    ml_shard_reader *r;
    if (ml_shard_open(&r, path) != ML_OK) return 0;
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
    return 0;
}
