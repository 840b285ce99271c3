/* A thin wrapper over the HDF5 C API (1.10) for checkpoints: no other file touches raw HDF5.
 * - Paths name datasets/groups with '/' separators; the last component may hold dots, so an HF
 *   tensor lives at e.g. "params/model.layers.0.self_attn.q_proj.weight". Missing groups are created.
 * - HDF5's own error printing is silenced; every failure becomes one ml_fail message naming the file
 *   and the dataset, with HDF5's innermost error description.
 * - Files are written in the HDF5 1.10 format (all metadata checksummed) with a 512-byte user block
 *   holding the file size and a CRC-32C of the whole file, written by ml_h5_close. ml_h5_open_read
 *   verifies it first (one sequential read of the file; hardware CRC), so any truncation or corruption,
 *   raw data included, is an error before HDF5 parses anything. Files from other tools (no user block)
 *   are opened unverified (ml_h5_verified says which); a file of ours changed by another tool, or one laid
 *   out like ours (HDF5 after a 512-byte block) whose block does not verify, is refused. The CRC catches
 *   damage, not forgery: variable-length strings (global heaps, which HDF5 1.10 reads unchecked) are
 *   bounds-checked before any read, and we write none.
 *   Readable by h5py / HDF5 >= 1.10.
 * - ml_h5_create writes `path` directly: callers wrap it in ml_atomic_begin / ml_h5_close /
 *   ml_atomic_commit (create the file at the atomic file's tmp_path). */
#ifndef ML_H5_H
#define ML_H5_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_H5_MAX_DIMS 8

typedef struct ml_h5 ml_h5;

/* ML_H5_F16 is IEEE binary16 (h5py/NumPy float16), passed in memory as uint16_t bit patterns
 * (formats/half.h converts). */
typedef enum { ML_H5_F32, ML_H5_F64, ML_H5_U8, ML_H5_I64, ML_H5_U64, ML_H5_I32, ML_H5_U32, ML_H5_F16, ML_H5_OTHER } ml_h5_dtype;

typedef struct {
    int gzip;    /* deflate level 1..9; 0 = no compression (the default: much faster) */
    int shuffle; /* byte-shuffle filter before compression */
} ml_h5_opts;

/* Create (truncate) a file for writing. */
ml_status ml_h5_create(ml_h5 **f, const char *path);
/* Open an existing file read-only (verifying our checksum block when present). */
ml_status ml_h5_open_read(ml_h5 **f, const char *path);
/* The same for files only mobilellm.c writes (checkpoints): a file without a verified checksum block is an
 * error before HDF5 parses any of it. */
ml_status ml_h5_open_ours(ml_h5 **f, const char *path);
/* Close (flushing a written file, then sealing its checksum block); the status tells whether everything
 * reached the file. NULL-safe. */
ml_status ml_h5_close(ml_h5 *f);
const char *ml_h5_path(const ml_h5 *f);
/* 1 when the file carried our checksum block and it matched (a file of ours, unchanged since written);
 * 0 for another tool's file. */
int ml_h5_verified(const ml_h5 *f);

/* Create group `path` and any missing parents (no error if it exists). */
ml_status ml_h5_create_group(ml_h5 *f, const char *path);
/* 1 if a link `path` (dataset or group) exists, else 0. */
int ml_h5_exists(ml_h5 *f, const char *path);

/* Datasets of rank 0..ML_H5_MAX_DIMS (0 = scalar), C order. Writing an existing name fails.
 * Reading checks that the stored dtype and shape equal the ones given. */
ml_status ml_h5_write_f32(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const float *data,
                          const ml_h5_opts *opts /* NULL = contiguous, uncompressed */);
ml_status ml_h5_read_f32(ml_h5 *f, const char *path, int ndim, const int64_t *shape, float *out);
ml_status ml_h5_write_u8(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const uint8_t *data);
ml_status ml_h5_read_u8(ml_h5 *f, const char *path, int ndim, const int64_t *shape, uint8_t *out);
ml_status ml_h5_write_i64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const int64_t *data);
ml_status ml_h5_read_i64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, int64_t *out);
ml_status ml_h5_write_u64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const uint64_t *data);
ml_status ml_h5_read_u64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, uint64_t *out);

/* Shape and dtype of a stored dataset (shape needs room for ML_H5_MAX_DIMS). */
ml_status ml_h5_dataset_info(ml_h5 *f, const char *path, int *ndim, int64_t *shape, ml_h5_dtype *dtype);
/* Names of the datasets directly in `group` ("/" for the root), sorted; free with ml_h5_free_names. */
ml_status ml_h5_list_datasets(ml_h5 *f, const char *group, char ***names, size_t *count);
void ml_h5_free_names(char **names, size_t count);

/* Attributes on object `obj` (a group or dataset path; "/" = root). Setting replaces an existing one.
 * Strings are written as fixed-length NUL-padded UTF-8 (h5py reads them as bytes); both fixed- and
 * variable-length strings are read, the latter (older files of ours, h5py's str attributes) only after
 * every global heap of the file was checked to be well-formed (HDF5 1.10 does not bounds-check them).
 * *value is malloc'd. */
ml_status ml_h5_set_attr_str(ml_h5 *f, const char *obj, const char *name, const char *value);
ml_status ml_h5_get_attr_str(ml_h5 *f, const char *obj, const char *name, char **value);
ml_status ml_h5_set_attr_i64(ml_h5 *f, const char *obj, const char *name, int64_t value);
ml_status ml_h5_get_attr_i64(ml_h5 *f, const char *obj, const char *name, int64_t *value);
ml_status ml_h5_set_attr_f64(ml_h5 *f, const char *obj, const char *name, double value);
ml_status ml_h5_get_attr_f64(ml_h5 *f, const char *obj, const char *name, double *value);
int ml_h5_has_attr(ml_h5 *f, const char *obj, const char *name);

/* ---- zstd-compressed datasets that grow by rows ----
 * The zstd filter has the HDF Group's registered id 32015 (as in hdf5plugin / HDF5Plugin-Zstandard):
 * each chunk is one zstd frame (content size recorded); cd_values[0] = compression level. We register
 * it with this process's HDF5 ourselves (libzstd), so h5py reads such files after `import hdf5plugin`. */
#define ML_H5_FILTER_ZSTD 32015
/* Register the zstd filter (idempotent, thread-safe). Called by the functions below. */
ml_status ml_h5_register_zstd(void);
/* Create dataset `path` of shape [0, row_shape...] (ndim_row = 0..ML_H5_MAX_DIMS-1 dimensions per row),
 * extendable along the first dimension, chunked by chunk_rows rows, zstd level `zstd_level` (1..22;
 * 0 = uncompressed). */
ml_status ml_h5_create_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int ndim_row, const int64_t *row_shape,
                            int64_t chunk_rows, int zstd_level);
/* Append n_rows rows (C order, dtype as created) at the end of the first dimension. */
ml_status ml_h5_append_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int64_t n_rows, const void *data);
/* Read rows [row0, row0 + n_rows) of a dataset whose stored dtype is `dtype` (error otherwise, or when
 * the rows are out of range). The dataset may be of any rank >= 1. */
ml_status ml_h5_read_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int64_t row0, int64_t n_rows, void *out);

#endif
