/* NumPy .npy files (format 1.0 written; 1.0/2.0/3.0 read) holding float32 or int32 arrays in C order,
 * little-endian ('<f4' / '<i4'), any rank up to ML_NPY_MAX_DIMS. Writes are atomic. */
#ifndef ML_NPY_H
#define ML_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ML_NPY_MAX_DIMS 32

typedef enum { ML_NPY_F32, ML_NPY_I32 } ml_npy_dtype;

typedef struct {
    ml_npy_dtype dtype;
    int ndim;
    int64_t shape[ML_NPY_MAX_DIMS];
    size_t count; /* elements */
    void *data;   /* malloc'd: float * or int32_t *, count elements */
} ml_npy_array;

/* Write data (prod(shape) elements, C order) to path. ndim 0 writes a scalar. */
ml_status ml_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);
ml_status ml_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape);

/* Read a float32 or int32 .npy, validating magic, version, header dict and data size. */
ml_status ml_npy_read(const char *path, ml_npy_array *out);
void ml_npy_free(ml_npy_array *a);

#endif
