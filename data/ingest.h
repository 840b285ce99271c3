/* Corpus ingestion: text / JSONL files -> token shards (what `mobilellm tokenize` runs).
 *
 * Inputs are files or directories (walked recursively, byte-wise sorted). A file holding a NUL
 * byte is binary and skipped. Text files are split into documents per ml_doc_split; with a
 * jsonl_field, files ending in ".jsonl" hold one JSON object per line whose string field
 * `jsonl_field` is one document (blank lines are ignored; any other line that is not an object
 * with that string field is an error naming file:line, or skipped and counted with
 * skip_bad_lines). Empty documents are dropped.
 *
 * Documents are encoded in batches on OpenMP threads (very large documents one at a time, so
 * that a tokenizer that parallelises internally still can) and written in input order: the
 * output does not depend on the thread count.
 *
 * Output: with shard_tokens == 0, one shard at `out` (and `val_out`). Otherwise `out` is a
 * prefix: shards OUT-00000.shard, OUT-00001.shard, ... each closed at the first document
 * boundary where it holds >= shard_tokens tokens, and the manifest OUT.manifest.json (written
 * last). Likewise for val_out. All-or-nothing: on any failure (or interrupt) no shard or
 * manifest of this run remains.
 *
 * Manifest (JSON): {"format": "mobilellm-shard-manifest", "version": 1, "tokenizer": FP,
 *   "vocab_size": V, "domain": D|null, "tokens": T, "documents": N, "shards": [{"path": P
 *   (relative to the manifest's folder), "tokens", "documents", "domain", "tokenizer",
 *   "vocab_size"}, ...]} */
#ifndef ML_DATA_INGEST_H
#define ML_DATA_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/status.h"
#include "data/tokenizer.h"

#define ML_MANIFEST_SUFFIX ".manifest.json"

typedef enum { ML_SPLIT_FILE, ML_SPLIT_BLANK_LINES, ML_SPLIT_LINES } ml_doc_split;

typedef struct {
    const ml_tokenizer *tok;
    const char *const *inputs; /* files or directories */
    int n_inputs;
    const char *out;           /* shard path, or prefix when shard_tokens > 0 */
    const char *val_out;       /* NULL: no validation split */
    double val_fraction;       /* hold out every round(1/F)-th document; (0, 0.5] */
    const char *domain;        /* NULL: none */
    ml_doc_split split;        /* text files */
    const char *jsonl_field;   /* NULL: no JSONL */
    int skip_bad_lines;
    unsigned flags;            /* ML_TOK_ADD_BOS | ML_TOK_ADD_EOS */
    uint64_t shard_tokens;     /* 0: a single shard */
    int threads;               /* 0: OpenMP default; 1: serial */
    uint32_t frame_tokens;     /* 0: the shard default (tests use small frames) */
    int progress;              /* report progress (MB/s, ETA) for inputs >= 16 MB ... */
    ml_progress on_progress;   /* ... to this callback (task "tokenize", units: bytes) */
} ml_ingest_opts;

typedef struct {
    size_t files;            /* files read */
    uint64_t binary_skipped; /* files skipped as binary */
    uint64_t bad_lines;      /* JSONL lines skipped (skip_bad_lines) */
    uint64_t docs, tokens;   /* training output */
    uint64_t val_docs, val_tokens;
    size_t shards, val_shards; /* shard files written */
    int every;               /* 0, or the hold-out period */
} ml_ingest_result;

ml_status ml_ingest(const ml_ingest_opts *o, ml_ingest_result *r);

/* The manifest path of prefix `out` (OUT.manifest.json) into buf. */
void ml_manifest_path(char *buf, size_t n, const char *out);
/* Whether path ends in ".manifest.json". */
int ml_is_manifest(const char *path);
/* The shard paths a manifest lists, resolved against its folder: *paths is a malloc'd array of
 * malloc'd strings (free with ml_manifest_paths_free). Errors name the manifest. */
ml_status ml_manifest_read(const char *path, char ***paths, size_t *n);
void ml_manifest_paths_free(char **paths, size_t n);

#endif
