/* Token shards: the file the tokenizer writes and the trainer reads.
 *
 * Layout (version 1, every integer little-endian):
 *   header, 128 bytes:
 *     0  char[8] magic "MLSHARD1"        8  u32 version (1)       12 u32 flags (0; a reader
 *        rejects bits it does not know)  16 u32 header bytes (128) 20 u32 bytes per token id (4)
 *     24 u64 tokens        32 u64 documents    40 u32 vocab size    44 u32 tokens per frame
 *     48 u64 frames        56 u64 data offset  64 u64 data bytes    72 u64 meta offset
 *     80 u64 meta bytes    88 u64 doc table offset                  96 u64 frame index offset
 *     104 u64 tail checksum: FNV-1a 64 over the meta section, then the doc table, then the
 *         frame index (one running hash)
 *     112 u64 reserved (0) 120 u64 header checksum: FNV-1a 64 of bytes 0..119
 *   data: frames, each an independent zstd frame (content size and zstd checksum recorded) of
 *     the u32 ids of tokens [i*F, min((i+1)*F, tokens)), F = tokens per frame;
 *   meta: u32 count, then count x (u16 key length, key, u32 value length, value); keys
 *     "tokenizer" (fingerprint, e.g. "bytes-v1") and "domain"; unknown keys are ignored, so
 *     later writers can add keys without a new version;
 *   doc table: documents x u64, the first token of each document (non-decreasing, the first
 *     is 0; empty documents share their successor's start);
 *   frame index: frames x (u64 file offset, u64 compressed bytes).
 * The writer puts data right after the header and meta, doc table and index at the end, but a
 * reader only relies on the offsets (each section is checked against the file size).
 * Stable across all versions, so any reader can say "version N is not supported" reliably:
 * bytes 0..19 (magic, version, flags, header bytes) and the header checksum in the header's
 * last 8 bytes.
 *
 * Readers are not thread-safe (one frame cache per reader); open one reader per thread. */
#ifndef ML_DATA_SHARD_H
#define ML_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_SHARD_MAGIC "MLSHARD1"
#define ML_SHARD_VERSION 1u
#define ML_SHARD_HEADER_BYTES 128u
#define ML_SHARD_DEFAULT_FRAME_TOKENS (1u << 20)
#define ML_SHARD_MAX_FRAME_TOKENS (1u << 26) /* 256 MiB decoded: a bound for corrupt headers */
#define ML_SHARD_MAX_STR 256                 /* fingerprint and domain, including the NUL */

typedef struct {
    uint32_t version;
    uint32_t flags;
    uint64_t n_tokens;
    uint64_t n_docs;
    uint32_t vocab_size;
    uint32_t token_bytes;     /* 4: ids are u32 */
    uint32_t frame_tokens;    /* tokens per frame (the last frame may hold fewer) */
    uint64_t n_frames;
    uint64_t file_bytes;      /* bytes on disk */
    uint64_t data_bytes;      /* compressed frames */
    uint64_t max_frame_bytes; /* largest compressed frame */
    char tokenizer[ML_SHARD_MAX_STR]; /* fingerprint */
    char domain[ML_SHARD_MAX_STR];    /* "" when none was set */
} ml_shard_info;

/* FNV-1a 64, continuing from `h` (start with ML_FNV1A64_INIT). */
#define ML_FNV1A64_INIT 0xcbf29ce484222325ull
uint64_t ml_fnv1a64(uint64_t h, const void *data, size_t n);

/* ---- writer ----
 * ml_shard_writer_open; set the vocab (before the first token) and the tokenizer fingerprint
 * (before close), optionally the domain and frame size; then append documents, either whole
 * (append_doc) or streamed (begin_doc, then add_tokens any number of times); close commits the
 * file atomically (temp file, fsync, rename). After any failure call abort: nothing is left. */
typedef struct ml_shard_writer ml_shard_writer;

ml_status ml_shard_writer_open(ml_shard_writer **w, const char *path);
ml_status ml_shard_writer_set_vocab(ml_shard_writer *w, uint32_t vocab_size);
ml_status ml_shard_writer_set_tokenizer(ml_shard_writer *w, const char *fingerprint);
ml_status ml_shard_writer_set_domain(ml_shard_writer *w, const char *domain);
/* Tokens per zstd frame (default 1Mi); only before the first token. Small values are for tests. */
ml_status ml_shard_writer_set_frame_tokens(ml_shard_writer *w, uint32_t frame_tokens);
/* zstd level (default 3); only before the first token. */
ml_status ml_shard_writer_set_level(ml_shard_writer *w, int level);
/* Append one document. An id >= vocab rejects the whole document (the writer is unchanged)
 * with an error naming the document and position. */
ml_status ml_shard_writer_append_doc(ml_shard_writer *w, const uint32_t *ids, size_t n);
ml_status ml_shard_writer_begin_doc(ml_shard_writer *w);
/* Append to the current document (rejected as a whole if any id >= vocab). */
ml_status ml_shard_writer_add_tokens(ml_shard_writer *w, const uint32_t *ids, size_t n);
uint64_t ml_shard_writer_tokens(const ml_shard_writer *w);
uint64_t ml_shard_writer_docs(const ml_shard_writer *w);
/* Write the tail and header, fsync, rename over the path; frees w (also on failure, when the
 * temporary is removed). */
ml_status ml_shard_writer_close(ml_shard_writer *w);
/* Discard: remove the temporary and free w. NULL is fine. */
void ml_shard_writer_abort(ml_shard_writer *w);

/* ---- reader ---- */
typedef struct ml_shard_reader ml_shard_reader;
/* Decoded-frame cache; several readers may share one (each reader otherwise makes its own on
 * its first read), so that many open shards cost one frame of memory. */
typedef struct ml_shard_cache ml_shard_cache;

/* Open and validate: magic, version, flags, header and tail checksums, every section against
 * the file size, the doc table, and every frame's zstd header (content size = frame tokens*4).
 * Errors name the file (and frame). */
ml_status ml_shard_open(ml_shard_reader **r, const char *path);
void ml_shard_close(ml_shard_reader *r);
const ml_shard_info *ml_shard_get_info(const ml_shard_reader *r);
const char *ml_shard_path(const ml_shard_reader *r);

/* Tokens [start, start+n) into out. Decompresses only the frames touched (the last one stays
 * cached); checks each frame's decoded size and that every id < vocab. */
ml_status ml_shard_read_u32(ml_shard_reader *r, uint32_t *out, uint64_t start, uint64_t n);
ml_status ml_shard_read_i32(ml_shard_reader *r, int32_t *out, uint64_t start, uint64_t n);
/* Decode every frame (a full integrity check). */
ml_status ml_shard_verify(ml_shard_reader *r);

/* Document table: n_docs starts (valid while r is open). */
const uint64_t *ml_shard_doc_starts(const ml_shard_reader *r);
/* The document holding token `token` (< n_tokens): the last one starting at or before it. */
uint64_t ml_shard_doc_of_token(const ml_shard_reader *r, uint64_t token);
/* First token of document `doc`, and one past its last (doc < n_docs). */
uint64_t ml_shard_doc_start(const ml_shard_reader *r, uint64_t doc);
uint64_t ml_shard_doc_end(const ml_shard_reader *r, uint64_t doc);

/* Same tokenizer fingerprint and vocab, else an ML_ERR_ARG error naming both files. */
ml_status ml_shard_check_compatible(const ml_shard_reader *a, const ml_shard_reader *b);

ml_status ml_shard_cache_new(ml_shard_cache **c, uint32_t max_frame_tokens, uint64_t max_frame_bytes);
void ml_shard_cache_free(ml_shard_cache *c);
/* Make r use c (not owned; it must outlive r and be large enough for r's frames, else
 * ML_ERR_ARG). r frees its own cache, if it had one. */
ml_status ml_shard_use_cache(ml_shard_reader *r, ml_shard_cache *c);

#endif
