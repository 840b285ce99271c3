/* GGUF v3 files (the llama.cpp / ggml format): a writer and a validating reader.
 *
 * Layout (little-endian): "GGUF" · u32 version 3 · u64 tensor_count · u64 kv_count · key/values ·
 * tensor infos (name, n_dims, ne[0..n_dims) with ne[0] the contiguous dimension, ggml type, offset)
 * · zero padding to the alignment (32) · tensor data, each tensor padded to the alignment, offsets
 * contiguous in tensor-info order (ggml's reader insists on exactly that).
 *
 * Types: F32, F16 (IEEE half via formats/half.h), Q8_0 and Q4_0 (blocks of 32 along ne[0]) quantized
 * exactly as ggml's reference quantize_row_q8_0_ref / quantize_row_q4_0_ref do.
 *
 * The reader checks everything a lying or truncated file could get wrong (magic, version, counts
 * against the bytes left, string lengths, value and tensor types, duplicate keys and names,
 * dimensions, block multiples, size overflow, offsets contiguous and inside the file) and fails
 * with one message naming the offset. */
#ifndef ML_GGUF_H
#define ML_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_GGUF_ALIGNMENT 32
#define ML_GGUF_MAX_DIMS 4
#define ML_GGUF_MAX_NAME 63 /* tensor name bytes (ggml: GGML_MAX_NAME 64 with the NUL) */

typedef enum {
    ML_GGUF_U8 = 0, ML_GGUF_I8 = 1, ML_GGUF_U16 = 2, ML_GGUF_I16 = 3, ML_GGUF_U32 = 4, ML_GGUF_I32 = 5,
    ML_GGUF_F32 = 6, ML_GGUF_BOOL = 7, ML_GGUF_STRING = 8, ML_GGUF_ARRAY = 9, ML_GGUF_U64 = 10,
    ML_GGUF_I64 = 11, ML_GGUF_F64 = 12,
} ml_gguf_vtype;

/* ggml tensor types this code reads and writes (ids as in ggml.h). */
typedef enum {
    ML_GGML_F32 = 0,
    ML_GGML_F16 = 1,
    ML_GGML_Q4_0 = 2,
    ML_GGML_Q8_0 = 8,
} ml_ggml_type;

#define ML_QK 32 /* elements per Q8_0 / Q4_0 block */

/* Name ("F32", "Q8_0", ...) or NULL for a type id this code does not handle. */
const char *ml_ggml_type_name(int type);
/* Bytes of one row of n elements (n a multiple of the block size); 0 for an unknown type. */
size_t ml_ggml_row_bytes(ml_ggml_type type, int64_t n);

/* ggml's reference quantizers and dequantizers, bit for bit. n is a multiple of 32. */
void ml_quantize_row_q8_0(void *out, const float *x, int64_t n);
void ml_quantize_row_q4_0(void *out, const float *x, int64_t n);
void ml_dequantize_row_q8_0(float *y, const void *in, int64_t n);
void ml_dequantize_row_q4_0(float *y, const void *in, int64_t n);

/* ---------------------------------------------------------------------------------------------
 * Writer: collect key/values and tensors, then ml_gguf_writer_write(path) writes the file
 * atomically. Keys and names are copied; tensor data is borrowed until the write. */
typedef struct ml_gguf_writer ml_gguf_writer;

ml_status ml_gguf_writer_create(ml_gguf_writer **w);
void ml_gguf_writer_free(ml_gguf_writer *w); /* NULL is fine */

ml_status ml_gguf_add_u32(ml_gguf_writer *w, const char *key, uint32_t v);
ml_status ml_gguf_add_i32(ml_gguf_writer *w, const char *key, int32_t v);
ml_status ml_gguf_add_f32(ml_gguf_writer *w, const char *key, float v);
ml_status ml_gguf_add_bool(ml_gguf_writer *w, const char *key, int v);
ml_status ml_gguf_add_str(ml_gguf_writer *w, const char *key, const char *v);
/* Arrays. Strings: n pointers with their byte lengths (lens NULL: NUL-terminated). */
ml_status ml_gguf_add_arr_str(ml_gguf_writer *w, const char *key, const char *const *v, const uint32_t *lens, uint64_t n);
ml_status ml_gguf_add_arr_f32(ml_gguf_writer *w, const char *key, const float *v, uint64_t n);
ml_status ml_gguf_add_arr_i32(ml_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);

/* A tensor from float32 data (row-major, ne[0] contiguous), converted to `type` when written.
 * row_order (optional, ne[1]*ne[2]*ne[3] entries) permutes rows: output row r is input row
 * row_order[r]. data and row_order are borrowed until ml_gguf_writer_write. */
ml_status ml_gguf_add_tensor(ml_gguf_writer *w, const char *name, ml_ggml_type type, int n_dims, const int64_t *ne,
                             const float *data, const int64_t *row_order);
/* A tensor whose bytes are already in `type`'s layout (borrowed). */
ml_status ml_gguf_add_tensor_raw(ml_gguf_writer *w, const char *name, ml_ggml_type type, int n_dims, const int64_t *ne,
                                 const void *bytes);

/* Write everything to path atomically (temporary, fsync, rename). */
ml_status ml_gguf_writer_write(ml_gguf_writer *w, const char *path);

/* ---------------------------------------------------------------------------------------------
 * Reader: parse and validate a whole file held in memory. */
typedef struct {
    char *key;          /* NUL-terminated copy */
    ml_gguf_vtype type;
    ml_gguf_vtype arr_type; /* for arrays */
    uint64_t arr_n;         /* for arrays */
    const uint8_t *value;   /* points into the buffer at the value (for arrays: first element) */
} ml_gguf_kv;

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[ML_GGUF_MAX_DIMS]; /* unused dims are 1 */
    ml_ggml_type type;
    uint64_t offset;              /* relative to the data section */
    size_t nbytes;
    const uint8_t *data;          /* into the buffer */
} ml_gguf_tensor;

typedef struct {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    ml_gguf_kv *kv;
    ml_gguf_tensor *tensors;
    uint64_t data_offset; /* file offset of the data section */
    uint8_t *owned;       /* the file contents when loaded from a path */
    size_t size;
} ml_gguf_file;

/* Parse buf[0..size) (borrowed; must outlive f unless loaded by ml_gguf_load). `where` names the
 * source in messages. */
ml_status ml_gguf_parse(ml_gguf_file *f, const uint8_t *buf, size_t size, const char *where);
ml_status ml_gguf_load(ml_gguf_file *f, const char *path);
void ml_gguf_file_free(ml_gguf_file *f);

const ml_gguf_kv *ml_gguf_find_kv(const ml_gguf_file *f, const char *key);
const ml_gguf_tensor *ml_gguf_find_tensor(const ml_gguf_file *f, const char *name);
/* Typed getters: ML_ERR_FORMAT when the key is missing or has another type. */
ml_status ml_gguf_get_u32(const ml_gguf_file *f, const char *key, uint32_t *v);
ml_status ml_gguf_get_f32(const ml_gguf_file *f, const char *key, float *v);
/* String value (not NUL-terminated): pointer into the buffer and length. */
ml_status ml_gguf_get_str(const ml_gguf_file *f, const char *key, const char **s, uint64_t *len);
/* i-th string of a string array (walks the array; O(i)). */
ml_status ml_gguf_arr_str(const ml_gguf_kv *kv, uint64_t i, const char **s, uint64_t *len);
/* Convert a tensor to float32 (out has ne[0]*ne[1]*ne[2]*ne[3] floats). */
ml_status ml_gguf_tensor_to_f32(const ml_gguf_tensor *t, float *out);

#endif
