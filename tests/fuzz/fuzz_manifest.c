/* libFuzzer target for shard manifests (data/ingest.c: ml_manifest_read). The manifest is written next to
 * two small valid shards made once per process, s0.shard and s1.shard (tokenizer "bytes-v1", vocab 259,
 * 2 documents of 3 and 2 tokens, then 1 document of 4), so mutants can name real shards.
 * Seeds: tests/fuzz/corpus/manifest. */
#include "fuzz_util.h"

#include "data/ingest.h"
#include "data/shard.h"

static int make_shard(const char *path, const uint32_t *docs, const size_t *lens, int n_docs) {
    ml_shard_writer *w;
    if (ml_shard_writer_open(&w, path) != ML_OK) return -1;
    ml_status s = ml_shard_writer_set_vocab(w, 259);
    if (s == ML_OK) s = ml_shard_writer_set_tokenizer(w, "bytes-v1");
    for (int d = 0; d < n_docs && s == ML_OK; d++) {
        s = ml_shard_writer_append_doc(w, docs, lens[d]);
        docs += lens[d];
    }
    if (s != ML_OK) {
        ml_shard_writer_abort(w);
        return -1;
    }
    return ml_shard_writer_close(w) == ML_OK ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    fuzz_limit_memory();
    if (!ready) {
        static const uint32_t a[] = {72, 105, 33, 10, 11}, b[] = {1, 2, 3, 258};
        static const size_t la[] = {3, 2}, lb[] = {4};
        if (make_shard(fuzz_path("s0.shard"), a, la, 2) != 0 || make_shard(fuzz_path("s1.shard"), b, lb, 1) != 0)
            return 0;
        ready = 1;
    }
    const char *path = fuzz_path("m.manifest.json");
    if (fuzz_write(path, data, size) != 0) return 0;
    char **paths = NULL;
    size_t n = 0;
    if (ml_manifest_read(path, &paths, &n) != ML_OK) return 0;
    FUZZ_ASSERT(n > 0);
    for (size_t i = 0; i < n; i++) FUZZ_ASSERT(paths[i] && paths[i][0]);
    ml_manifest_paths_free(paths, n);
    return 0;
}
