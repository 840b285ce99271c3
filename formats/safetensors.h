/* Hugging Face safetensors: reader (single file and sharded directory) and writer.
 * Format (reference/formats.md §2): u64 LE header length N, N bytes of JSON (starts with '{', may be
 * space-padded), then the tensor bytes, little-endian, row-major, contiguous with no holes.
 * The reader maps the file (nothing is read until asked for); the writer streams tensors from the
 * caller's memory and writes each file atomically (temp file, fsync, rename). */
#ifndef ML_SAFETENSORS_H
#define ML_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_ST_MAX_DIMS 8
#define ML_ST_MAX_HEADER 100000000u /* the reference reader's limit on N */

/* Every dtype the format names (the reader accepts them all for listing and raw access), in the
 * reference implementation's enum order: its writer sorts tensors by this order, descending. */
typedef enum {
    ML_ST_BOOL,
    ML_ST_F4,
    ML_ST_F6_E2M3,
    ML_ST_F6_E3M2,
    ML_ST_U8,
    ML_ST_I8,
    ML_ST_F8_E5M2,
    ML_ST_F8_E4M3,
    ML_ST_F8_E8M0,
    ML_ST_F8_E4M3FNUZ,
    ML_ST_F8_E5M2FNUZ,
    ML_ST_I16,
    ML_ST_U16,
    ML_ST_F16,
    ML_ST_BF16,
    ML_ST_I32,
    ML_ST_U32,
    ML_ST_F32,
    ML_ST_C64,
    ML_ST_F64,
    ML_ST_I64,
    ML_ST_U64,
    ML_ST_DTYPE_COUNT
} ml_st_dtype;

const char *ml_st_dtype_name(ml_st_dtype dt);  /* "F32", ... */
int ml_st_dtype_bits(ml_st_dtype dt);           /* bits per element (4 for F4, 6 for F6_*) */
/* Parse a dtype string; returns -1 when unknown. */
int ml_st_dtype_parse(const char *s);

typedef struct {
    const char *name;
    ml_st_dtype dtype;
    int ndim;
    int64_t shape[ML_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end; /* byte offsets relative to the start of the data buffer */
} ml_st_tensor;

/* ---------------- single-file reader ---------------- */

typedef struct ml_safetensors ml_safetensors;

/* Open and validate `path` (header, offsets, sizes; see the .c for the full list of checks). */
ml_status ml_safetensors_open(ml_safetensors **st, const char *path);
/* Same checks on an in-memory file image. `buf` is not copied and must outlive *st.
 * `name` is used in error messages. */
ml_status ml_safetensors_open_memory(ml_safetensors **st, const void *buf, size_t size, const char *name);
void ml_safetensors_close(ml_safetensors *st); /* NULL-safe */

const char *ml_safetensors_path(const ml_safetensors *st);
/* Tensors in file order (ascending data offset). */
size_t ml_safetensors_count(const ml_safetensors *st);
const ml_st_tensor *ml_safetensors_tensor(const ml_safetensors *st, size_t i);
/* NULL if absent. */
const ml_st_tensor *ml_safetensors_find(const ml_safetensors *st, const char *name);

/* `__metadata__` entries (all strings), in header order. */
size_t ml_safetensors_metadata_count(const ml_safetensors *st);
void ml_safetensors_metadata_at(const ml_safetensors *st, size_t i, const char **key, const char **value);
/* NULL if absent. */
const char *ml_safetensors_metadata(const ml_safetensors *st, const char *key);

/* Convert tensor `name` (F32, F16 or BF16) to float32 into out[0..n); n must equal its element count. */
ml_status ml_safetensors_read_f32(const ml_safetensors *st, const char *name, float *out, size_t n);
/* Pointer to the tensor's stored bytes (valid until close) and their count. */
ml_status ml_safetensors_raw(const ml_safetensors *st, const char *name, const void **data, size_t *bytes);

/* ---------------- checkpoint directory (single file or sharded) ---------------- */

typedef struct ml_st_dir ml_st_dir;

/* Open dir/model.safetensors if present, else dir/model.safetensors.index.json and every shard in
 * its weight_map (each mapped file must exist and hold its tensor). */
ml_status ml_safetensors_dir_open(ml_st_dir **d, const char *dir);
void ml_safetensors_dir_close(ml_st_dir *d); /* NULL-safe */
/* Tensors of the checkpoint (the weight_map's, or the single file's), sorted by name. */
size_t ml_safetensors_dir_count(const ml_st_dir *d);
const ml_st_tensor *ml_safetensors_dir_tensor(const ml_st_dir *d, size_t i);
/* NULL if absent; *shard (optional) receives the file holding it. */
const ml_st_tensor *ml_safetensors_dir_find(const ml_st_dir *d, const char *name, const ml_safetensors **shard);
ml_status ml_safetensors_dir_read_f32(const ml_st_dir *d, const char *name, float *out, size_t n);
ml_status ml_safetensors_dir_raw(const ml_st_dir *d, const char *name, const void **data, size_t *bytes);
size_t ml_safetensors_dir_shard_count(const ml_st_dir *d);
const ml_safetensors *ml_safetensors_dir_shard(const ml_st_dir *d, size_t i);

/* ---------------- writer ---------------- */

typedef struct ml_safetensors_writer ml_safetensors_writer;

/* A writer whose metadata already holds "format":"pt" (what transformers requires). */
ml_status ml_safetensors_writer_new(ml_safetensors_writer **w);
void ml_safetensors_writer_free(ml_safetensors_writer *w); /* NULL-safe */
/* Add or replace a `__metadata__` entry. */
ml_status ml_safetensors_writer_set_metadata(ml_safetensors_writer *w, const char *key, const char *value);
/* Add a tensor from float32 data, stored as `dtype` (F32, F16 or BF16; rounded to nearest even).
 * The data is NOT copied: it must stay valid until the write calls are done. */
ml_status ml_safetensors_writer_add_f32(ml_safetensors_writer *w, const char *name, ml_st_dtype dtype, int ndim,
                                        const int64_t *shape, const float *data);
/* Add a tensor from bytes already in `dtype` (any dtype); `bytes` must match the shape. Not copied. */
ml_status ml_safetensors_writer_add_raw(ml_safetensors_writer *w, const char *name, ml_st_dtype dtype, int ndim,
                                        const int64_t *shape, const void *data, size_t bytes);
/* Write every tensor to one file, atomically. Tensors are ordered as the reference writer does
 * (descending dtype in the enum order above, i.e. by alignment, then name) and the header JSON is
 * compact and space-padded to a multiple of 8, so every tensor is naturally aligned and a file written
 * by the reference writer with the same tensors and metadata is reproduced byte for byte. */
ml_status ml_safetensors_writer_write(const ml_safetensors_writer *w, const char *path);
/* Write the checkpoint into directory `dir` (created if missing) the way transformers does: tensors in
 * the order added are packed into shards of at most `max_shard_bytes` (a bigger tensor gets its own),
 * giving model-0000k-of-0000n.safetensors + model.safetensors.index.json; a single shard is written as
 * model.safetensors with no index. Each file is written atomically, the index last; stale model files of
 * an earlier save in `dir` are then removed. *n_shards (optional) receives the number of files. */
ml_status ml_safetensors_writer_write_sharded(const ml_safetensors_writer *w, const char *dir,
                                              uint64_t max_shard_bytes, int *n_shards);

#endif
