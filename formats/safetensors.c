/* safetensors reader/writer. Reader checks (each failure names the file, and the tensor when there is one):
 *   - 8-byte LE header length N <= 100 MB and 8 + N <= file size;
 *   - header is valid UTF-8, starts with '{', parses as one JSON object (only whitespace after it);
 *   - "__metadata__" (optional) is an object of strings; no duplicate keys anywhere that matters;
 *   - every other entry is {"dtype": known string, "shape": [non-negative integers], "data_offsets":
 *     [BEGIN, END]} with END - BEGIN == prod(shape) * bits / 8 (overflow-checked, whole bytes);
 *   - sorted by offset, tensors tile the data buffer exactly: no holes, no overlaps, last END == size-8-N. */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "formats/half.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

typedef unsigned long long ull;

static const struct {
    const char *name;
    int bits;
} dtype_info[ML_ST_DTYPE_COUNT] = {
    [ML_ST_BOOL] = {"BOOL", 8},
    [ML_ST_F4] = {"F4", 4},
    [ML_ST_F6_E2M3] = {"F6_E2M3", 6},
    [ML_ST_F6_E3M2] = {"F6_E3M2", 6},
    [ML_ST_U8] = {"U8", 8},
    [ML_ST_I8] = {"I8", 8},
    [ML_ST_F8_E5M2] = {"F8_E5M2", 8},
    [ML_ST_F8_E4M3] = {"F8_E4M3", 8},
    [ML_ST_F8_E8M0] = {"F8_E8M0", 8},
    [ML_ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ML_ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ML_ST_I16] = {"I16", 16},
    [ML_ST_U16] = {"U16", 16},
    [ML_ST_F16] = {"F16", 16},
    [ML_ST_BF16] = {"BF16", 16},
    [ML_ST_I32] = {"I32", 32},
    [ML_ST_U32] = {"U32", 32},
    [ML_ST_F32] = {"F32", 32},
    [ML_ST_C64] = {"C64", 64},
    [ML_ST_F64] = {"F64", 64},
    [ML_ST_I64] = {"I64", 64},
    [ML_ST_U64] = {"U64", 64},
};

const char *ml_st_dtype_name(ml_st_dtype dt) {
    return (unsigned)dt < ML_ST_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

int ml_st_dtype_bits(ml_st_dtype dt) { return (unsigned)dt < ML_ST_DTYPE_COUNT ? dtype_info[dt].bits : 0; }

int ml_st_dtype_parse(const char *s) {
    for (int i = 0; i < ML_ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) return i;
    return -1;
}

/* Returns the offset of the first invalid UTF-8 byte, or (size_t)-1 if the buffer is valid
 * (rejects overlong forms, surrogates and code points above U+10FFFF, as Rust's from_utf8 does). */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        i += len;
    }
    return (size_t)-1;
}

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *e, uint64_t *v) {
    if (!cJSON_IsNumber(e)) return 0;
    double d = e->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != floor(d)) return 0;
    *v = (uint64_t)d;
    return 1;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* ============================== reader ============================== */

struct ml_safetensors {
    char *path;
    const uint8_t *base; /* the whole file image */
    size_t size;
    void *map; /* non-NULL when we mapped the file ourselves */
    const uint8_t *data; /* base + 8 + N */
    uint64_t data_len;
    ml_st_tensor *tensors; /* sorted by data offset */
    size_t n;
    size_t *by_name; /* indices into tensors, sorted by name */
    char **meta;     /* key, value, key, value, ... */
    size_t n_meta;
};

void ml_safetensors_close(ml_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->size);
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    for (size_t i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->path);
    free(st);
}

static int cmp_offsets(const void *a, const void *b) {
    const ml_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: the array being sorted by name, per thread. */
static _Thread_local const ml_st_tensor *by_name_ctx;
static int cmp_by_name(const void *a, const void *b) {
    return strcmp(by_name_ctx[*(const size_t *)a].name, by_name_ctx[*(const size_t *)b].name);
}

static ml_status parse_metadata(ml_safetensors *st, const cJSON *m) {
    if (!cJSON_IsObject(m)) return ml_fail(ML_ERR_FORMAT, "%s: __metadata__ is not a JSON object", st->path);
    size_t n = (size_t)cJSON_GetArraySize(m);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta) return ml_fail(ML_ERR_NOMEM, "%s: out of memory for metadata", st->path);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return ml_fail(ML_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", st->path, c->string);
        for (size_t i = 0; i < st->n_meta; i++)
            if (strcmp(st->meta[2 * i], c->string) == 0)
                return ml_fail(ML_ERR_FORMAT, "%s: duplicate __metadata__ key '%s'", st->path, c->string);
        st->meta[2 * st->n_meta] = strdup(c->string);
        st->meta[2 * st->n_meta + 1] = strdup(c->valuestring);
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return ml_fail(ML_ERR_NOMEM, "%s: out of memory for metadata", st->path);
    }
    return ML_OK;
}

static ml_status parse_tensor(const ml_safetensors *st, ml_st_tensor *t, const cJSON *c) {
    const char *where = st->path, *name = c->string;
    if (!cJSON_IsObject(c)) return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", where, name);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *f = c->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0 ? &dt
                             : strcmp(f->string, "shape") == 0 ? &sh
                             : strcmp(f->string, "data_offsets") == 0 ? &off : NULL;
        if (!slot) continue; /* unknown fields are ignored, as by the reference reader */
        if (*slot) return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': duplicate field '%s'", where, name, f->string);
        *slot = f;
    }
    if (!cJSON_IsString(dt)) return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", where, name);
    int d = ml_st_dtype_parse(dt->valuestring);
    if (d < 0) return ml_fail(ML_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown dtype '%s'", where, name, dt->valuestring);
    t->dtype = (ml_st_dtype)d;
    if (!cJSON_IsArray(sh)) return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", where, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ML_ST_MAX_DIMS)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %d (at most %d supported)", where, name, nd,
                       ML_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *e = sh->child; e; e = e->next, k++) {
        uint64_t v;
        if (!json_uint(e, &v))
            return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer", where, name, k);
        t->shape[k] = (int64_t)v;
        if (__builtin_mul_overflow(numel, v, &numel))
            return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': element count overflows", where, name);
    }
    t->numel = numel;
    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)dtype_info[d].bits, &bits))
        return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': byte size overflows", where, name);
    if (bits % 8)
        return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': %llu elements of %s are not a whole number of bytes", where, name,
                       (ull)numel, dtype_info[d].name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &t->begin) ||
        !json_uint(off->child->next, &t->end))
        return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be [BEGIN, END] with integers", where,
                       name);
    if (t->end < t->begin)
        return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", where, name,
                       (ull)t->begin, (ull)t->end);
    if (t->end - t->begin != bits / 8) {
        char s[256];
        fmt_shape(s, sizeof s, t->ndim, t->shape);
        return ml_fail(ML_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                       where, name, (ull)t->begin, (ull)t->end, (ull)(t->end - t->begin), s, dtype_info[d].name,
                       (ull)(bits / 8));
    }
    return ML_OK;
}

static ml_status parse_header(ml_safetensors *st) {
    const char *where = st->path;
    if (st->size < 8)
        return ml_fail(ML_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, shorter than the 8-byte header length)",
                       where, st->size);
    uint64_t n;
    memcpy(&n, st->base, 8);
    if (n > ML_ST_MAX_HEADER)
        return ml_fail(ML_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit (not a safetensors file?)", where,
                       (ull)n, ML_ST_MAX_HEADER);
    if (n > st->size - 8)
        return ml_fail(ML_ERR_FORMAT, "%s: header length %llu is larger than the rest of the file (%zu bytes): truncated?",
                       where, (ull)n, st->size - 8);
    const char *h = (const char *)st->base + 8;
    if (n < 2 || h[0] != '{') return ml_fail(ML_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file)", where);
    size_t bad = utf8_invalid_at((const unsigned char *)h, n);
    if (bad != (size_t)-1) return ml_fail(ML_ERR_FORMAT, "%s: header is not valid UTF-8 (at header byte %zu)", where, bad);
    st->data = st->base + 8 + n;
    st->data_len = st->size - 8 - n;

    /* cJSON wants a NUL-terminated buffer it may read freely: parse a private copy. */
    char *copy = malloc(n + 1);
    if (!copy) return ml_fail(ML_ERR_NOMEM, "%s: out of memory for a %llu-byte header", where, (ull)n);
    memcpy(copy, h, n);
    copy[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, n, &end, 0);
    ml_status s = ML_OK;
    if (!root) {
        size_t at = end && end >= copy ? (size_t)(end - copy) : 0;
        s = ml_fail(ML_ERR_FORMAT, "%s: header is not valid JSON (near header byte %zu)", where, at);
        goto done;
    }
    for (const char *p = end; p < copy + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            s = ml_fail(ML_ERR_FORMAT, "%s: unexpected bytes after the header JSON (header byte %zu)", where,
                        (size_t)(p - copy));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        s = ml_fail(ML_ERR_FORMAT, "%s: header is not a JSON object", where);
        goto done;
    }
    size_t count = (size_t)cJSON_GetArraySize(root);
    st->tensors = calloc(count + 1, sizeof *st->tensors);
    st->by_name = calloc(count + 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) {
        s = ml_fail(ML_ERR_NOMEM, "%s: out of memory for %zu tensor entries", where, count);
        goto done;
    }
    int have_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (have_meta++) {
                s = ml_fail(ML_ERR_FORMAT, "%s: duplicate __metadata__", where);
                goto done;
            }
            if ((s = parse_metadata(st, c)) != ML_OK) goto done;
            continue;
        }
        ml_st_tensor *t = &st->tensors[st->n];
        if ((s = parse_tensor(st, t, c)) != ML_OK) goto done;
        t->name = strdup(c->string);
        if (!t->name) {
            s = ml_fail(ML_ERR_NOMEM, "%s: out of memory", where);
            goto done;
        }
        st->n++;
    }

    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_offsets);
    uint64_t expect = 0;
    for (size_t i = 0; i < st->n; i++) {
        const ml_st_tensor *t = &st->tensors[i];
        if (t->begin > expect) {
            s = ml_fail(ML_ERR_FORMAT, "%s: hole in the data: tensor '%s' begins at byte %llu but the previous one ends at %llu",
                        where, t->name, (ull)t->begin, (ull)expect);
            goto done;
        }
        if (t->begin < expect) {
            s = ml_fail(ML_ERR_FORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ends at %llu)", where,
                        t->name, (ull)t->begin, (ull)t->end, st->tensors[i - 1].name, (ull)expect);
            goto done;
        }
        if (t->end > st->data_len) {
            s = ml_fail(ML_ERR_FORMAT, "%s: tensor '%s' ends at data byte %llu, beyond the end of the file (%llu data bytes): truncated?",
                        where, t->name, (ull)t->end, (ull)st->data_len);
            goto done;
        }
        expect = t->end;
    }
    if (expect != st->data_len) {
        s = ml_fail(ML_ERR_FORMAT, "%s: tensors cover %llu data bytes but the file has %llu after the header", where,
                    (ull)expect, (ull)st->data_len);
        goto done;
    }
    for (size_t i = 0; i < st->n; i++) st->by_name[i] = i;
    by_name_ctx = st->tensors;
    qsort(st->by_name, st->n, sizeof *st->by_name, cmp_by_name);
    for (size_t i = 1; i < st->n; i++)
        if (strcmp(st->tensors[st->by_name[i]].name, st->tensors[st->by_name[i - 1]].name) == 0) {
            s = ml_fail(ML_ERR_FORMAT, "%s: duplicate tensor name '%s'", where, st->tensors[st->by_name[i]].name);
            goto done;
        }
done:
    cJSON_Delete(root);
    free(copy);
    return s;
}

ml_status ml_safetensors_open_memory(ml_safetensors **out, const void *buf, size_t size, const char *name) {
    *out = NULL;
    ml_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name ? name : "(memory)"))) {
        free(st);
        return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", name ? name : "(memory)");
    }
    st->base = buf;
    st->size = size;
    ml_status s = parse_header(st);
    if (s != ML_OK) {
        ml_safetensors_close(st);
        return s;
    }
    *out = st;
    return ML_OK;
}

ml_status ml_safetensors_open(ml_safetensors **out, const char *path) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ml_fail(ML_ERR_IO, "%s: not a regular file", path);
    }
    ml_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        close(fd);
        free(st);
        return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", path);
    }
    st->size = (size_t)sb.st_size;
    if (st->size >= 8) { /* mapping reads nothing now: pages come in when a tensor is read */
        void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            ml_status s = ml_fail(ML_ERR_IO, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            ml_safetensors_close(st);
            return s;
        }
        st->map = m;
        st->base = m;
    } else {
        static const uint8_t empty[8];
        st->base = empty;
    }
    close(fd);
    ml_status s = parse_header(st);
    if (s != ML_OK) {
        ml_safetensors_close(st);
        return s;
    }
    *out = st;
    return ML_OK;
}

const char *ml_safetensors_path(const ml_safetensors *st) { return st->path; }
size_t ml_safetensors_count(const ml_safetensors *st) { return st->n; }
const ml_st_tensor *ml_safetensors_tensor(const ml_safetensors *st, size_t i) {
    return i < st->n ? &st->tensors[i] : NULL;
}

const ml_st_tensor *ml_safetensors_find(const ml_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ml_st_tensor *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t ml_safetensors_metadata_count(const ml_safetensors *st) { return st->n_meta; }

void ml_safetensors_metadata_at(const ml_safetensors *st, size_t i, const char **key, const char **value) {
    *key = i < st->n_meta ? st->meta[2 * i] : NULL;
    *value = i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}

const char *ml_safetensors_metadata(const ml_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

ml_status ml_safetensors_raw(const ml_safetensors *st, const char *name, const void **data, size_t *bytes) {
    const ml_st_tensor *t = ml_safetensors_find(st, name);
    if (!t) return ml_fail(ML_ERR_ARG, "%s: no tensor named '%s'", st->path, name);
    *data = st->data + t->begin;
    *bytes = (size_t)(t->end - t->begin);
    return ML_OK;
}

ml_status ml_safetensors_read_f32(const ml_safetensors *st, const char *name, float *out, size_t n) {
    const ml_st_tensor *t = ml_safetensors_find(st, name);
    if (!t) return ml_fail(ML_ERR_ARG, "%s: no tensor named '%s'", st->path, name);
    if (t->numel != n) {
        char s[256];
        fmt_shape(s, sizeof s, t->ndim, t->shape);
        return ml_fail(ML_ERR_ARG, "%s: tensor '%s' has shape %s (%llu elements) but %zu were expected", st->path, name, s,
                       (ull)t->numel, n);
    }
    const uint8_t *src = st->data + t->begin;
    switch (t->dtype) {
    case ML_ST_F32:
        if (n) memcpy(out, src, n * 4);
        return ML_OK;
    case ML_ST_F16:
    case ML_ST_BF16: {
        int f16 = t->dtype == ML_ST_F16;
        uint16_t buf[4096]; /* the data may be unaligned: copy a block, then convert */
        for (size_t i = 0; i < n; i += 4096) {
            size_t m = n - i < 4096 ? n - i : 4096;
            memcpy(buf, src + 2 * i, 2 * m);
            if (f16) ml_f16_to_f32_n(out + i, buf, m);
            else ml_bf16_to_f32_n(out + i, buf, m);
        }
        return ML_OK;
    }
    default:
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 convert to float32",
                       st->path, name, ml_st_dtype_name(t->dtype));
    }
}

/* ============================== directory ============================== */

typedef struct {
    const ml_st_tensor *t;
    size_t shard;
} dir_entry;

struct ml_st_dir {
    char *dir;
    ml_safetensors **shards;
    char **shard_names;
    size_t n_shards;
    dir_entry *e; /* sorted by tensor name */
    size_t n;
};

void ml_safetensors_dir_close(ml_st_dir *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_shards; i++) {
        ml_safetensors_close(d->shards[i]);
        free(d->shard_names[i]);
    }
    free(d->shards);
    free(d->shard_names);
    free(d->e);
    free(d->dir);
    free(d);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const dir_entry *)a)->t->name, ((const dir_entry *)b)->t->name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int bad_relative_path(const char *f) {
    if (!f[0] || f[0] == '/') return 1;
    for (const char *p = f; *p;) { /* reject any ".." component */
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return 1;
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

static ml_status join_path(char *out, size_t cap, const char *dir, const char *name) {
    int k = snprintf(out, cap, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= cap) return ml_fail(ML_ERR_ARG, "path too long: %s/%s", dir, name);
    return ML_OK;
}

static ml_status dir_open_index(ml_st_dir *d, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    ML_TRY(ml_read_file(index_path, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    ml_status s = ML_OK;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root || !cJSON_IsObject(root)) {
        s = ml_fail(ML_ERR_FORMAT, "%s: %s", index_path, root ? "not a JSON object" : "not valid JSON");
        goto done;
    }
    if (!cJSON_IsObject(wm) || !wm->child) {
        s = ml_fail(ML_ERR_FORMAT, "%s: missing, empty or non-object \"weight_map\"", index_path);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(wm);
    d->shard_names = calloc(n, sizeof *d->shard_names);
    d->shards = calloc(n, sizeof *d->shards);
    d->e = calloc(n, sizeof *d->e);
    if (!d->shard_names || !d->shards || !d->e) {
        s = ml_fail(ML_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    /* Distinct shard file names, sorted. */
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name string", index_path, c->string);
            goto done;
        }
        if (bad_relative_path(c->valuestring)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: weight_map entry '%s' names '%s', not a file inside the directory",
                        index_path, c->string, c->valuestring);
            goto done;
        }
        size_t i;
        for (i = 0; i < d->n_shards; i++)
            if (strcmp(d->shard_names[i], c->valuestring) == 0) break;
        if (i == d->n_shards) {
            if (!(d->shard_names[d->n_shards] = strdup(c->valuestring))) {
                s = ml_fail(ML_ERR_NOMEM, "%s: out of memory", index_path);
                goto done;
            }
            d->n_shards++;
        }
    }
    qsort(d->shard_names, d->n_shards, sizeof *d->shard_names, cmp_str);
    for (size_t i = 0; i < d->n_shards; i++) {
        char p[4096];
        if ((s = join_path(p, sizeof p, d->dir, d->shard_names[i])) != ML_OK) goto done;
        if ((s = ml_safetensors_open(&d->shards[i], p)) != ML_OK) {
            s = ml_fail_context(s, "shard listed in %s", index_path);
            goto done;
        }
    }
    for (const cJSON *c = wm->child; c; c = c->next) {
        char **hit = bsearch(&c->valuestring, d->shard_names, d->n_shards, sizeof *d->shard_names, cmp_str);
        size_t si = (size_t)(hit - d->shard_names);
        const ml_st_tensor *t = ml_safetensors_find(d->shards[si], c->string);
        if (!t) {
            s = ml_fail(ML_ERR_FORMAT, "%s maps tensor '%s' to %s, which does not hold it", index_path, c->string,
                        d->shard_names[si]);
            goto done;
        }
        d->e[d->n].t = t;
        d->e[d->n].shard = si;
        d->n++;
    }
    qsort(d->e, d->n, sizeof *d->e, cmp_entry);
    for (size_t i = 1; i < d->n; i++)
        if (strcmp(d->e[i].t->name, d->e[i - 1].t->name) == 0) {
            s = ml_fail(ML_ERR_FORMAT, "%s: tensor '%s' appears twice in weight_map", index_path, d->e[i].t->name);
            goto done;
        }
done:
    cJSON_Delete(root);
    return s;
}

ml_status ml_safetensors_dir_open(ml_st_dir **out, const char *dir) {
    *out = NULL;
    ml_st_dir *d = calloc(1, sizeof *d);
    if (!d || !(d->dir = strdup(dir))) {
        free(d);
        return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", dir);
    }
    char single[4096], index[4096];
    ml_status s = join_path(single, sizeof single, dir, "model.safetensors");
    if (s == ML_OK) s = join_path(index, sizeof index, dir, "model.safetensors.index.json");
    if (s != ML_OK) goto fail;
    struct stat sb;
    if (stat(single, &sb) == 0) { /* transformers prefers the single file too */
        d->shards = calloc(1, sizeof *d->shards);
        d->shard_names = calloc(1, sizeof *d->shard_names);
        if (!d->shards || !d->shard_names || !(d->shard_names[0] = strdup("model.safetensors"))) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory opening %s", dir);
            goto fail;
        }
        if ((s = ml_safetensors_open(&d->shards[0], single)) != ML_OK) goto fail;
        d->n_shards = 1;
        size_t n = ml_safetensors_count(d->shards[0]);
        d->e = calloc(n + 1, sizeof *d->e);
        if (!d->e) {
            s = ml_fail(ML_ERR_NOMEM, "out of memory opening %s", dir);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) d->e[i].t = ml_safetensors_tensor(d->shards[0], i);
        d->n = n;
        qsort(d->e, d->n, sizeof *d->e, cmp_entry);
    } else if (stat(index, &sb) == 0) {
        if ((s = dir_open_index(d, index)) != ML_OK) goto fail;
    } else {
        s = ml_fail(ML_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
        goto fail;
    }
    *out = d;
    return ML_OK;
fail:
    ml_safetensors_dir_close(d);
    return s;
}

size_t ml_safetensors_dir_count(const ml_st_dir *d) { return d->n; }
const ml_st_tensor *ml_safetensors_dir_tensor(const ml_st_dir *d, size_t i) { return i < d->n ? d->e[i].t : NULL; }
size_t ml_safetensors_dir_shard_count(const ml_st_dir *d) { return d->n_shards; }
const ml_safetensors *ml_safetensors_dir_shard(const ml_st_dir *d, size_t i) {
    return i < d->n_shards ? d->shards[i] : NULL;
}

const ml_st_tensor *ml_safetensors_dir_find(const ml_st_dir *d, const char *name, const ml_safetensors **shard) {
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->e[mid].t->name, name);
        if (c == 0) {
            if (shard) *shard = d->shards[d->e[mid].shard];
            return d->e[mid].t;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

ml_status ml_safetensors_dir_read_f32(const ml_st_dir *d, const char *name, float *out, size_t n) {
    const ml_safetensors *sh;
    if (!ml_safetensors_dir_find(d, name, &sh)) return ml_fail(ML_ERR_ARG, "%s: checkpoint has no tensor '%s'", d->dir, name);
    return ml_safetensors_read_f32(sh, name, out, n);
}

ml_status ml_safetensors_dir_raw(const ml_st_dir *d, const char *name, const void **data, size_t *bytes) {
    const ml_safetensors *sh;
    if (!ml_safetensors_dir_find(d, name, &sh)) return ml_fail(ML_ERR_ARG, "%s: checkpoint has no tensor '%s'", d->dir, name);
    return ml_safetensors_raw(sh, name, data, bytes);
}

/* ============================== writer ============================== */

typedef struct {
    char *name;
    ml_st_dtype dtype;
    int ndim;
    int64_t shape[ML_ST_MAX_DIMS];
    uint64_t bytes, numel;
    const void *data;
    int from_f32; /* data is float32 to convert to dtype while writing */
} wtensor;

struct ml_safetensors_writer {
    wtensor *t;
    size_t n, cap;
    char **meta; /* key, value, ... in insertion order */
    size_t n_meta, cap_meta;
};

void ml_safetensors_writer_free(ml_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->t);
    free(w->meta);
    free(w);
}

ml_status ml_safetensors_writer_new(ml_safetensors_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return ml_fail(ML_ERR_NOMEM, "out of memory for a safetensors writer");
    ml_status s = ml_safetensors_writer_set_metadata(*out, "format", "pt");
    if (s != ML_OK) {
        ml_safetensors_writer_free(*out);
        *out = NULL;
    }
    return s;
}

static int valid_utf8(const char *s) { return utf8_invalid_at((const unsigned char *)s, strlen(s)) == (size_t)-1; }

ml_status ml_safetensors_writer_set_metadata(ml_safetensors_writer *w, const char *key, const char *value) {
    if (!key || !value || !valid_utf8(key) || !valid_utf8(value))
        return ml_fail(ML_ERR_ARG, "safetensors metadata key/value must be UTF-8 strings");
    char *v = strdup(value);
    if (!v) return ml_fail(ML_ERR_NOMEM, "out of memory for metadata");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return ML_OK;
        }
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 4;
        char **m = realloc(w->meta, 2 * cap * sizeof *m);
        if (!m) {
            free(v);
            return ml_fail(ML_ERR_NOMEM, "out of memory for metadata");
        }
        w->meta = m;
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return ml_fail(ML_ERR_NOMEM, "out of memory for metadata");
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return ML_OK;
}

static ml_status writer_add(ml_safetensors_writer *w, const char *name, ml_st_dtype dtype, int ndim,
                            const int64_t *shape, const void *data, int from_f32, wtensor **added) {
    if (!name || !valid_utf8(name)) return ml_fail(ML_ERR_ARG, "safetensors tensor name must be a UTF-8 string");
    if (strcmp(name, "__metadata__") == 0) return ml_fail(ML_ERR_ARG, "'__metadata__' cannot name a tensor");
    if ((unsigned)dtype >= ML_ST_DTYPE_COUNT) return ml_fail(ML_ERR_ARG, "tensor '%s': invalid dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ML_ST_MAX_DIMS || (ndim > 0 && !shape))
        return ml_fail(ML_ERR_ARG, "tensor '%s': rank %d out of range 0..%d", name, ndim, ML_ST_MAX_DIMS);
    uint64_t numel = 1, bits;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return ml_fail(ML_ERR_ARG, "tensor '%s': negative dimension %lld", name, (long long)shape[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel))
            return ml_fail(ML_ERR_ARG, "tensor '%s': element count overflows", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)dtype_info[dtype].bits, &bits) || bits / 8 > (uint64_t)1 << 53)
        return ml_fail(ML_ERR_ARG, "tensor '%s': too large", name);
    if (bits % 8) return ml_fail(ML_ERR_ARG, "tensor '%s': %llu elements of %s are not whole bytes", name, (ull)numel,
                                 dtype_info[dtype].name);
    if (!data && numel) return ml_fail(ML_ERR_ARG, "tensor '%s': no data", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return ml_fail(ML_ERR_ARG, "tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return ml_fail(ML_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        w->t = t;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return ml_fail(ML_ERR_NOMEM, "out of memory adding tensor '%s'", name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->bytes = bits / 8;
    t->data = data;
    t->from_f32 = from_f32;
    w->n++;
    if (added) *added = t;
    return ML_OK;
}

ml_status ml_safetensors_writer_add_f32(ml_safetensors_writer *w, const char *name, ml_st_dtype dtype, int ndim,
                                        const int64_t *shape, const float *data) {
    if (dtype != ML_ST_F32 && dtype != ML_ST_F16 && dtype != ML_ST_BF16)
        return ml_fail(ML_ERR_ARG, "tensor '%s': float32 data can be stored as F32, F16 or BF16, not %s",
                       name ? name : "?", ml_st_dtype_name(dtype));
    return writer_add(w, name, dtype, ndim, shape, data, 1, NULL);
}

ml_status ml_safetensors_writer_add_raw(ml_safetensors_writer *w, const char *name, ml_st_dtype dtype, int ndim,
                                        const int64_t *shape, const void *data, size_t bytes) {
    wtensor *t = NULL;
    ML_TRY(writer_add(w, name, dtype, ndim, shape, data, 0, &t));
    if (t->bytes != bytes) {
        ml_status s = ml_fail(ML_ERR_ARG, "tensor '%s': %zu bytes given, shape and %s need %llu", name, bytes,
                              ml_st_dtype_name(dtype), (ull)t->bytes);
        free(t->name);
        w->n--;
        return s;
    }
    return ML_OK;
}

/* A growable string for building JSON. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A JSON string escaped as serde_json does (so headers match the reference writer byte for byte):
 * quote, backslash and control characters; everything else, UTF-8 included, verbatim. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
            else sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static _Thread_local const wtensor *wsort_ctx;
static int cmp_write_order(const void *a, const void *b) {
    const wtensor *x = &wsort_ctx[*(const size_t *)a], *y = &wsort_ctx[*(const size_t *)b];
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1; /* descending dtype (= alignment) */
    return strcmp(x->name, y->name);
}

static ml_status write_data(FILE *fp, const wtensor *t) {
    if (!t->from_f32 || t->dtype == ML_ST_F32)
        return t->bytes == 0 || fwrite(t->data, 1, t->bytes, fp) == t->bytes ? ML_OK : ML_ERR_IO;
    uint16_t buf[8192];
    const float *x = t->data;
    for (uint64_t i = 0; i < t->numel; i += 8192) {
        size_t m = t->numel - i < 8192 ? (size_t)(t->numel - i) : 8192;
        if (t->dtype == ML_ST_F16) ml_f32_to_f16_n(buf, x + i, m);
        else ml_f32_to_bf16_n(buf, x + i, m);
        if (fwrite(buf, 2, m, fp) != m) return ML_ERR_IO;
    }
    return ML_OK;
}

/* Write tensors idx[0..cnt) of w to path (atomically). */
static ml_status write_file(const ml_safetensors_writer *w, const size_t *idx_in, size_t cnt, const char *path) {
    size_t *idx = malloc((cnt + 1) * sizeof *idx);
    if (!idx) return ml_fail(ML_ERR_NOMEM, "out of memory writing %s", path);
    if (cnt) memcpy(idx, idx_in, cnt * sizeof *idx);
    wsort_ctx = w->t;
    qsort(idx, cnt, sizeof *idx, cmp_write_order);

    sbuf h = {0};
    sb_put(&h, "{", 1);
    int first = 1;
    if (w->n_meta) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_str(&h, w->meta[2 * i]);
            sb_put(&h, ":", 1);
            sb_json_str(&h, w->meta[2 * i + 1]);
        }
        sb_put(&h, "}", 1);
        first = 0;
    }
    uint64_t off = 0;
    for (size_t k = 0; k < cnt; k++) {
        const wtensor *t = &w->t[idx[k]];
        if (!first) sb_put(&h, ",", 1);
        first = 0;
        sb_json_str(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_info[t->dtype].name);
        for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (ull)off, (ull)(off + t->bytes));
        off += t->bytes;
    }
    sb_put(&h, "}", 1);
    while (!h.oom && h.n % 8) sb_put(&h, " ", 1); /* 8-byte alignment of the data buffer */
    if (h.oom || h.n > ML_ST_MAX_HEADER) {
        free(h.p);
        free(idx);
        return h.oom ? ml_fail(ML_ERR_NOMEM, "out of memory building the header of %s", path)
                     : ml_fail(ML_ERR_ARG, "%s: header of %zu bytes exceeds the format's limit", path, h.n);
    }

    ml_atomic_file f;
    ml_status s = ml_atomic_begin(&f, path, 1);
    if (s != ML_OK) {
        free(h.p);
        free(idx);
        return s;
    }
    uint64_t n = h.n;
    int bad = fwrite(&n, 8, 1, f.fp) != 1 || fwrite(h.p, 1, h.n, f.fp) != h.n;
    for (size_t k = 0; k < cnt && !bad; k++) bad = write_data(f.fp, &w->t[idx[k]]) != ML_OK;
    free(h.p);
    free(idx);
    if (bad) {
        s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        ml_atomic_abort(&f);
        return s;
    }
    return ml_atomic_commit(&f);
}

ml_status ml_safetensors_writer_write(const ml_safetensors_writer *w, const char *path) {
    size_t *idx = malloc((w->n + 1) * sizeof *idx);
    if (!idx) return ml_fail(ML_ERR_NOMEM, "out of memory writing %s", path);
    for (size_t i = 0; i < w->n; i++) idx[i] = i;
    ml_status s = write_file(w, idx, w->n, path);
    free(idx);
    return s;
}

static int is_shard_name(const char *s) {
    /* model-DDDDD-of-DDDDD.safetensors */
    if (strlen(s) != 32 || strncmp(s, "model-", 6) != 0 || strncmp(s + 11, "-of-", 4) != 0 ||
        strcmp(s + 20, ".safetensors") != 0)
        return 0;
    for (int i = 0; i < 5; i++)
        if (s[6 + i] < '0' || s[6 + i] > '9' || s[15 + i] < '0' || s[15 + i] > '9') return 0;
    return 1;
}

/* Remove files of an earlier save that the new one does not use, so that dir_open cannot pick them up. */
static ml_status remove_stale(const char *dir, int n_shards) {
    DIR *dp = opendir(dir);
    if (!dp) return ml_fail(ML_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    ml_status s = ML_OK;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *nm = de->d_name;
        int stale;
        if (n_shards == 1) stale = is_shard_name(nm) || strcmp(nm, "model.safetensors.index.json") == 0;
        else {
            stale = strcmp(nm, "model.safetensors") == 0;
            if (is_shard_name(nm)) { /* ours are model-k-of-n for k in 1..n, zero-padded */
                int k = atoi(nm + 6);
                char own[64];
                snprintf(own, sizeof own, "model-%05d-of-%05d.safetensors", k, n_shards);
                stale = k < 1 || k > n_shards || strcmp(own, nm) != 0;
            }
        }
        if (!stale) continue;
        char p[4096];
        if (join_path(p, sizeof p, dir, nm) != ML_OK || unlink(p) != 0) {
            s = ml_fail(ML_ERR_IO, "cannot remove stale %s/%s: %s", dir, nm, strerror(errno));
            break;
        }
    }
    closedir(dp);
    return s;
}

ml_status ml_safetensors_writer_write_sharded(const ml_safetensors_writer *w, const char *dir,
                                              uint64_t max_shard_bytes, int *n_shards_out) {
    if (max_shard_bytes == 0) return ml_fail(ML_ERR_ARG, "max shard size must be positive");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return ml_fail(ML_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return ml_fail(ML_ERR_IO, "%s is not a directory", dir);

    /* Shard assignment as transformers/huggingface_hub do it: in insertion order, a new shard when the
     * next tensor would overflow the current one; a tensor bigger than the limit gets a shard of its own. */
    size_t *order = malloc((w->n + 1) * sizeof *order);
    size_t *start = malloc((w->n + 2) * sizeof *start); /* shard k = order[start[k] .. start[k+1]) */
    size_t *cur = malloc((w->n + 1) * sizeof *cur);
    int *shard_of = malloc((w->n + 1) * sizeof *shard_of);
    ml_status s = ML_OK;
    if (!order || !start || !cur || !shard_of) {
        s = ml_fail(ML_ERR_NOMEM, "out of memory writing %s", dir);
        goto done;
    }
    size_t n_order = 0, n_cur = 0, ns = 0;
    uint64_t cur_bytes = 0, total = 0;
    for (size_t i = 0; i < w->n; i++) {
        uint64_t b = w->t[i].bytes;
        total += b;
        if (b > max_shard_bytes) {
            start[ns++] = n_order;
            order[n_order++] = i;
            continue;
        }
        if (cur_bytes + b > max_shard_bytes) {
            start[ns++] = n_order;
            for (size_t k = 0; k < n_cur; k++) order[n_order++] = cur[k];
            n_cur = 0;
            cur_bytes = 0;
        }
        cur[n_cur++] = i;
        cur_bytes += b;
    }
    if (n_cur || ns == 0) {
        start[ns++] = n_order;
        for (size_t k = 0; k < n_cur; k++) order[n_order++] = cur[k];
    }
    start[ns] = n_order;
    if (ns > 99999) {
        s = ml_fail(ML_ERR_ARG, "%s: %zu shards; raise the maximum shard size", dir, ns);
        goto done;
    }

    char path[4096];
    if (ns == 1) {
        if ((s = join_path(path, sizeof path, dir, "model.safetensors")) != ML_OK) goto done;
        if ((s = write_file(w, order, n_order, path)) != ML_OK) goto done;
    } else {
        for (size_t k = 0; k < ns; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "model-%05zu-of-%05zu.safetensors", k + 1, ns);
            if ((s = join_path(path, sizeof path, dir, nm)) != ML_OK) goto done;
            if ((s = write_file(w, order + start[k], start[k + 1] - start[k], path)) != ML_OK) goto done;
            for (size_t j = start[k]; j < start[k + 1]; j++) shard_of[order[j]] = (int)k;
        }
        /* The index, formatted as transformers writes it (json.dumps(indent=2, sort_keys=True) + "\n"). */
        size_t *byname = order; /* reuse: indices sorted by name */
        for (size_t i = 0; i < w->n; i++) byname[i] = i;
        for (size_t i = 1; i < w->n; i++) { /* insertion sort by name (n is a few hundred) */
            size_t v = byname[i], j = i;
            while (j > 0 && strcmp(w->t[byname[j - 1]].name, w->t[v].name) > 0) {
                byname[j] = byname[j - 1];
                j--;
            }
            byname[j] = v;
        }
        sbuf ix = {0};
        sb_printf(&ix, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {", (ull)total);
        for (size_t i = 0; i < w->n; i++) {
            const wtensor *t = &w->t[byname[i]];
            sb_str(&ix, i ? ",\n    " : "\n    ");
            sb_json_str(&ix, t->name);
            sb_printf(&ix, ": \"model-%05d-of-%05zu.safetensors\"", shard_of[byname[i]] + 1, ns);
        }
        sb_str(&ix, "\n  }\n}\n");
        if (ix.oom) {
            free(ix.p);
            s = ml_fail(ML_ERR_NOMEM, "out of memory writing the index in %s", dir);
            goto done;
        }
        ml_atomic_file f;
        if ((s = join_path(path, sizeof path, dir, "model.safetensors.index.json")) == ML_OK &&
            (s = ml_atomic_begin(&f, path, 1)) == ML_OK) {
            if (fwrite(ix.p, 1, ix.n, f.fp) != ix.n) {
                s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
                ml_atomic_abort(&f);
            } else
                s = ml_atomic_commit(&f);
        }
        free(ix.p);
        if (s != ML_OK) goto done;
    }
    s = remove_stale(dir, (int)ns);
    if (s == ML_OK && n_shards_out) *n_shards_out = (int)ns;
done:
    free(order);
    free(start);
    free(cur);
    free(shard_of);
    return s;
}
