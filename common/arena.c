#include "common/arena.h"

#include <stdint.h>

#include "common/sysinfo.h"

#include <stdlib.h>
#include <string.h>

size_t ml_arena_reserve(ml_arena *a, size_t n) {
    const size_t step = ML_ALIGN / sizeof(float);
    size_t off = a->used;
    a->used += (n + step - 1) / step * step;
    return off;
}

void *ml_aligned_calloc(size_t bytes) {
    size_t rounded = (bytes + ML_ALIGN - 1) / ML_ALIGN * ML_ALIGN;
    if (rounded == 0) rounded = ML_ALIGN;
    void *p = aligned_alloc(ML_ALIGN, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void *ml_scratch_get(ml_scratch *s, size_t bytes) {
    if (bytes > s->bytes) {
        free(s->p);
        s->p = aligned_alloc(ML_ALIGN, (bytes + ML_ALIGN - 1) / ML_ALIGN * ML_ALIGN);
        s->bytes = s->p ? bytes : 0;
    }
    return s->p;
}

ml_status ml_arena_commit(ml_arena *a, const char *what) {
    /* calloc of a huge size may succeed lazily and fail at first touch: check what is available first. */
    if (a->used > SIZE_MAX / sizeof(float)) return ml_fail(ML_ERR_NOMEM, "%s: size overflows", what);
    ML_TRY(ml_check_memory((uint64_t)a->used * sizeof(float), what));
    a->base = ml_aligned_calloc(a->used * sizeof(float));
    if (!a->base)
        return ml_fail(ML_ERR_NOMEM, "out of memory allocating %s (%.1f MiB)", what,
                       (double)a->used * 4 / 1048576.0);
    a->capacity = a->used;
    return ML_OK;
}

void ml_arena_free(ml_arena *a) {
    free(a->base);
    memset(a, 0, sizeof *a);
}
