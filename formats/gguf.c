#include "formats/gguf.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "formats/half.h"

/* ------------------------------------------------------------------------------------------ */
/* types and quantization                                                                      */

const char *ml_ggml_type_name(int type) {
    switch (type) {
    case ML_GGML_F32: return "F32";
    case ML_GGML_F16: return "F16";
    case ML_GGML_Q4_0: return "Q4_0";
    case ML_GGML_Q8_0: return "Q8_0";
    default: return NULL;
    }
}

static int64_t block_elems(ml_ggml_type t) { return (t == ML_GGML_Q4_0 || t == ML_GGML_Q8_0) ? ML_QK : 1; }
static size_t block_bytes(ml_ggml_type t) {
    switch (t) {
    case ML_GGML_F32: return 4;
    case ML_GGML_F16: return 2;
    case ML_GGML_Q4_0: return 2 + ML_QK / 2;
    case ML_GGML_Q8_0: return 2 + ML_QK;
    default: return 0;
    }
}

size_t ml_ggml_row_bytes(ml_ggml_type type, int64_t n) {
    if (!ml_ggml_type_name(type) || n < 0 || n % block_elems(type)) return 0;
    return (size_t)(n / block_elems(type)) * block_bytes(type);
}

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* The products and sums below must not be fused into FMAs: ggml's reference rounds each one. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define ML_NO_CONTRACT
#elif defined(__GNUC__)
#define ML_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define ML_NO_CONTRACT
#endif

ML_NO_CONTRACT void ml_quantize_row_q8_0(void *out, const float *x, int64_t n) {
    uint8_t *y = out;
    for (int64_t b = 0; b < n / ML_QK; b++, x += ML_QK, y += 2 + ML_QK) {
        float amax = 0.0f;
        for (int j = 0; j < ML_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_u16(y, ml_f32_to_f16(d));
        for (int j = 0; j < ML_QK; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

ML_NO_CONTRACT void ml_quantize_row_q4_0(void *out, const float *x, int64_t n) {
    uint8_t *y = out;
    for (int64_t b = 0; b < n / ML_QK; b++, x += ML_QK, y += 2 + ML_QK / 2) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < ML_QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_u16(y, ml_f32_to_f16(d));
        for (int j = 0; j < ML_QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[ML_QK / 2 + j] * id;
            int q0 = (int8_t)(x0 + 8.5f), q1 = (int8_t)(x1 + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[2 + j] = (uint8_t)((unsigned)q0 | ((unsigned)q1 << 4));
        }
    }
}

void ml_dequantize_row_q8_0(float *yout, const void *in, int64_t n) {
    const uint8_t *p = in;
    for (int64_t b = 0; b < n / ML_QK; b++, p += 2 + ML_QK, yout += ML_QK) {
        const float d = ml_f16_to_f32(get_u16(p));
        for (int j = 0; j < ML_QK; j++) yout[j] = (float)(int8_t)p[2 + j] * d;
    }
}

void ml_dequantize_row_q4_0(float *yout, const void *in, int64_t n) {
    const uint8_t *p = in;
    for (int64_t b = 0; b < n / ML_QK; b++, p += 2 + ML_QK / 2, yout += ML_QK) {
        const float d = ml_f16_to_f32(get_u16(p));
        for (int j = 0; j < ML_QK / 2; j++) {
            yout[j] = (float)((p[2 + j] & 0x0F) - 8) * d;
            yout[j + ML_QK / 2] = (float)((p[2 + j] >> 4) - 8) * d;
        }
    }
}

/* Convert one row of n floats into `type`'s bytes. */
static void convert_row(ml_ggml_type type, void *out, const float *x, int64_t n) {
    switch (type) {
    case ML_GGML_F32: memcpy(out, x, (size_t)n * 4); break;
    case ML_GGML_F16: ml_f32_to_f16_n(out, x, (size_t)n); break;
    case ML_GGML_Q8_0: ml_quantize_row_q8_0(out, x, n); break;
    case ML_GGML_Q4_0: ml_quantize_row_q4_0(out, x, n); break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* writer                                                                                      */

typedef struct {
    char *name;
    ml_ggml_type type;
    int n_dims;
    int64_t ne[ML_GGUF_MAX_DIMS];
    const float *f32;       /* converted on write, or */
    const void *raw;        /* written as is */
    const int64_t *row_order;
    size_t nbytes;
} wtensor;

struct ml_gguf_writer {
    uint8_t *meta; /* serialized key/values */
    size_t meta_n, meta_cap;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    uint64_t n_t, cap_t;
};

ml_status ml_gguf_writer_create(ml_gguf_writer **w) {
    *w = calloc(1, sizeof(**w));
    return *w ? ML_OK : ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
}

void ml_gguf_writer_free(ml_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->meta);
    free(w);
}

static ml_status meta_put(ml_gguf_writer *w, const void *p, size_t n) {
    if (w->meta_n + n > w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap : 4096;
        while (cap < w->meta_n + n) cap *= 2;
        uint8_t *m = realloc(w->meta, cap);
        if (!m) return ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory for %zu bytes of metadata", cap);
        w->meta = m;
        w->meta_cap = cap;
    }
    memcpy(w->meta + w->meta_n, p, n);
    w->meta_n += n;
    return ML_OK;
}
static ml_status meta_u32(ml_gguf_writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return meta_put(w, b, 4);
}
static ml_status meta_u64(ml_gguf_writer *w, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    return meta_put(w, b, 8);
}
static ml_status meta_str(ml_gguf_writer *w, const char *s, uint64_t n) {
    ML_TRY(meta_u64(w, n));
    return meta_put(w, s, (size_t)n);
}

/* Start a key/value: check the key, remember it, write key and type. */
static ml_status kv_begin(ml_gguf_writer *w, const char *key, ml_gguf_vtype type) {
    size_t n = strlen(key);
    if (n == 0 || n > 65535) return ml_fail(ML_ERR_ARG, "gguf writer: key '%.40s' has length %zu", key, n);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return ml_fail(ML_ERR_ARG, "gguf writer: duplicate key '%s'", key);
    char **k = realloc(w->keys, sizeof(char *) * (size_t)(w->n_kv + 1));
    if (!k) return ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
    w->keys = k;
    if (!(k[w->n_kv] = strdup(key))) return ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
    w->n_kv++;
    ML_TRY(meta_str(w, key, n));
    return meta_u32(w, (uint32_t)type);
}

ml_status ml_gguf_add_u32(ml_gguf_writer *w, const char *key, uint32_t v) {
    ML_TRY(kv_begin(w, key, ML_GGUF_U32));
    return meta_u32(w, v);
}
ml_status ml_gguf_add_i32(ml_gguf_writer *w, const char *key, int32_t v) {
    ML_TRY(kv_begin(w, key, ML_GGUF_I32));
    return meta_u32(w, (uint32_t)v);
}
ml_status ml_gguf_add_f32(ml_gguf_writer *w, const char *key, float v) {
    ML_TRY(kv_begin(w, key, ML_GGUF_F32));
    uint32_t u;
    memcpy(&u, &v, 4);
    return meta_u32(w, u);
}
ml_status ml_gguf_add_bool(ml_gguf_writer *w, const char *key, int v) {
    ML_TRY(kv_begin(w, key, ML_GGUF_BOOL));
    uint8_t b = v ? 1 : 0;
    return meta_put(w, &b, 1);
}
ml_status ml_gguf_add_str(ml_gguf_writer *w, const char *key, const char *v) {
    ML_TRY(kv_begin(w, key, ML_GGUF_STRING));
    return meta_str(w, v, strlen(v));
}
ml_status ml_gguf_add_arr_str(ml_gguf_writer *w, const char *key, const char *const *v, const uint32_t *lens, uint64_t n) {
    ML_TRY(kv_begin(w, key, ML_GGUF_ARRAY));
    ML_TRY(meta_u32(w, ML_GGUF_STRING));
    ML_TRY(meta_u64(w, n));
    for (uint64_t i = 0; i < n; i++) ML_TRY(meta_str(w, v[i], lens ? lens[i] : strlen(v[i])));
    return ML_OK;
}
ml_status ml_gguf_add_arr_f32(ml_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    ML_TRY(kv_begin(w, key, ML_GGUF_ARRAY));
    ML_TRY(meta_u32(w, ML_GGUF_F32));
    ML_TRY(meta_u64(w, n));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        ML_TRY(meta_u32(w, u));
    }
    return ML_OK;
}
ml_status ml_gguf_add_arr_i32(ml_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    ML_TRY(kv_begin(w, key, ML_GGUF_ARRAY));
    ML_TRY(meta_u32(w, ML_GGUF_I32));
    ML_TRY(meta_u64(w, n));
    for (uint64_t i = 0; i < n; i++) ML_TRY(meta_u32(w, (uint32_t)v[i]));
    return ML_OK;
}

static ml_status add_tensor(ml_gguf_writer *w, const char *name, ml_ggml_type type, int n_dims, const int64_t *ne,
                            const float *f32, const void *raw, const int64_t *row_order) {
    size_t nl = strlen(name);
    if (nl == 0 || nl > ML_GGUF_MAX_NAME)
        return ml_fail(ML_ERR_ARG, "gguf writer: tensor name '%.70s' must have 1..%d bytes", name, ML_GGUF_MAX_NAME);
    if (!ml_ggml_type_name(type)) return ml_fail(ML_ERR_ARG, "gguf writer: tensor %s: unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > ML_GGUF_MAX_DIMS)
        return ml_fail(ML_ERR_ARG, "gguf writer: tensor %s: %d dimensions (1..4)", name, n_dims);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return ml_fail(ML_ERR_ARG, "gguf writer: duplicate tensor %s", name);
    wtensor t = {.type = type, .n_dims = n_dims, .f32 = f32, .raw = raw, .row_order = row_order};
    int64_t rows = 1;
    for (int d = 0; d < ML_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0) return ml_fail(ML_ERR_ARG, "gguf writer: tensor %s: dimension %d is %lld", name, d, (long long)t.ne[d]);
        if (d > 0) rows *= t.ne[d];
    }
    if (t.ne[0] % block_elems(type))
        return ml_fail(ML_ERR_ARG, "gguf writer: tensor %s: ne[0] = %lld is not a multiple of %s's block of %lld", name,
                       (long long)t.ne[0], ml_ggml_type_name(type), (long long)block_elems(type));
    t.nbytes = ml_ggml_row_bytes(type, t.ne[0]) * (size_t)rows;
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, sizeof(wtensor) * (size_t)cap);
        if (!nt) return ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
    w->t[w->n_t++] = t;
    return ML_OK;
}

ml_status ml_gguf_add_tensor(ml_gguf_writer *w, const char *name, ml_ggml_type type, int n_dims, const int64_t *ne,
                             const float *data, const int64_t *row_order) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, row_order);
}
ml_status ml_gguf_add_tensor_raw(ml_gguf_writer *w, const char *name, ml_ggml_type type, int n_dims, const int64_t *ne,
                                 const void *bytes) {
    return add_tensor(w, name, type, n_dims, ne, NULL, bytes, NULL);
}

static size_t pad_to(size_t n, size_t a) { return (n + a - 1) / a * a; }

static ml_status fwrite_all(FILE *fp, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, fp) != n) return ml_fail(ML_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return ML_OK;
}

static ml_status write_file(ml_gguf_writer *w, FILE *fp, const char *path) {
    /* header + key/values */
    ml_gguf_writer hdr = {0};
    ml_status s = meta_put(&hdr, "GGUF", 4);
    if (s == ML_OK) s = meta_u32(&hdr, 3);
    if (s == ML_OK) s = meta_u64(&hdr, w->n_t);
    if (s == ML_OK) s = meta_u64(&hdr, w->n_kv);
    /* tensor infos */
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t && s == ML_OK; i++) {
        const wtensor *t = &w->t[i];
        s = meta_str(&hdr, t->name, strlen(t->name));
        if (s == ML_OK) s = meta_u32(&hdr, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims && s == ML_OK; d++) s = meta_u64(&hdr, (uint64_t)t->ne[d]);
        if (s == ML_OK) s = meta_u32(&hdr, (uint32_t)t->type);
        if (s == ML_OK) s = meta_u64(&hdr, off);
        off += pad_to(t->nbytes, ML_GGUF_ALIGNMENT);
    }
    static const uint8_t zeros[ML_GGUF_ALIGNMENT];
    if (s == ML_OK) s = fwrite_all(fp, hdr.meta, 24, path);
    if (s == ML_OK) s = fwrite_all(fp, w->meta, w->meta_n, path);
    if (s == ML_OK) s = fwrite_all(fp, hdr.meta + 24, hdr.meta_n - 24, path);
    size_t pos = hdr.meta_n + w->meta_n;
    free(hdr.meta);
    if (s == ML_OK) s = fwrite_all(fp, zeros, pad_to(pos, ML_GGUF_ALIGNMENT) - pos, path);
    /* data, converted row by row */
    uint8_t *row = NULL;
    for (uint64_t i = 0; i < w->n_t && s == ML_OK; i++) {
        const wtensor *t = &w->t[i];
        if (t->raw) {
            s = fwrite_all(fp, t->raw, t->nbytes, path);
        } else {
            size_t rb = ml_ggml_row_bytes(t->type, t->ne[0]);
            int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
            uint8_t *r = realloc(row, rb);
            if (!r) {
                s = ml_fail(ML_ERR_NOMEM, "gguf writer: out of memory");
                break;
            }
            row = r;
            for (int64_t k = 0; k < rows && s == ML_OK; k++) {
                int64_t src = t->row_order ? t->row_order[k] : k;
                if (src < 0 || src >= rows) {
                    s = ml_fail(ML_ERR_ARG, "gguf writer: tensor %s: row order %lld out of range", t->name, (long long)src);
                    break;
                }
                convert_row(t->type, row, t->f32 + src * t->ne[0], t->ne[0]);
                s = fwrite_all(fp, row, rb, path);
            }
        }
        if (s == ML_OK) s = fwrite_all(fp, zeros, pad_to(t->nbytes, ML_GGUF_ALIGNMENT) - t->nbytes, path);
    }
    free(row);
    return s;
}

ml_status ml_gguf_writer_write(ml_gguf_writer *w, const char *path) {
    ml_atomic_file af;
    ML_TRY(ml_atomic_begin(&af, path, 1));
    ml_status s = write_file(w, af.fp, path);
    if (s != ML_OK) {
        ml_atomic_abort(&af);
        return s;
    }
    return ml_atomic_commit(&af);
}

/* ------------------------------------------------------------------------------------------ */
/* reader                                                                                      */

typedef struct {
    const uint8_t *buf;
    size_t size, pos;
    const char *where;
} rd;

static ml_status rd_need(rd *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos)
        return ml_fail(ML_ERR_FORMAT, "%s: truncated at offset %zu: %s needs %llu bytes, %zu left", r->where, r->pos,
                       what, (unsigned long long)n, r->size - r->pos);
    return ML_OK;
}
static ml_status rd_u32(rd *r, uint32_t *v, const char *what) {
    ML_TRY(rd_need(r, 4, what));
    const uint8_t *p = r->buf + r->pos;
    *v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    r->pos += 4;
    return ML_OK;
}
static ml_status rd_u64(rd *r, uint64_t *v, const char *what) {
    ML_TRY(rd_need(r, 8, what));
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)r->buf[r->pos + (size_t)i] << (8 * i);
    *v = x;
    r->pos += 8;
    return ML_OK;
}
/* A string: returns pointer and length; advances. */
static ml_status rd_str(rd *r, const char **s, uint64_t *n, const char *what) {
    ML_TRY(rd_u64(r, n, what));
    ML_TRY(rd_need(r, *n, what));
    *s = (const char *)r->buf + r->pos;
    r->pos += (size_t)*n;
    return ML_OK;
}

static size_t vtype_size(uint32_t t) {
    switch (t) {
    case ML_GGUF_U8: case ML_GGUF_I8: case ML_GGUF_BOOL: return 1;
    case ML_GGUF_U16: case ML_GGUF_I16: return 2;
    case ML_GGUF_U32: case ML_GGUF_I32: case ML_GGUF_F32: return 4;
    case ML_GGUF_U64: case ML_GGUF_I64: case ML_GGUF_F64: return 8;
    default: return 0; /* string, array, unknown */
    }
}

/* Skip one value of scalar or string type t (arrays are handled by the caller). */
static ml_status rd_skip_value(rd *r, uint32_t t, const char *key) {
    if (t == ML_GGUF_STRING) {
        const char *s;
        uint64_t n;
        return rd_str(r, &s, &n, key);
    }
    size_t sz = vtype_size(t);
    if (!sz) return ml_fail(ML_ERR_FORMAT, "%s: key '%s' at offset %zu has unknown value type %u", r->where, key, r->pos, t);
    ML_TRY(rd_need(r, sz, key));
    if (t == ML_GGUF_BOOL && r->buf[r->pos] > 1)
        return ml_fail(ML_ERR_FORMAT, "%s: key '%s': bool value %u at offset %zu is not 0 or 1", r->where, key,
                       r->buf[r->pos], r->pos);
    r->pos += sz;
    return ML_OK;
}

static char *dup_n(const char *s, uint64_t n) {
    char *d = malloc((size_t)n + 1);
    if (d) {
        memcpy(d, s, (size_t)n);
        d[n] = 0;
    }
    return d;
}

void ml_gguf_file_free(ml_gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->owned);
    memset(f, 0, sizeof(*f));
}

static ml_status parse(ml_gguf_file *f, rd *r) {
    uint32_t magic;
    ML_TRY(rd_u32(r, &magic, "magic"));
    if (magic != 0x46554747u) return ml_fail(ML_ERR_FORMAT, "%s: not a GGUF file (bad magic)", r->where);
    ML_TRY(rd_u32(r, &f->version, "version"));
    if (f->version != 2 && f->version != 3)
        return ml_fail(ML_ERR_FORMAT, "%s: GGUF version %u is not supported (2 or 3)", r->where, f->version);
    uint64_t nt, nkv;
    ML_TRY(rd_u64(r, &nt, "tensor count"));
    ML_TRY(rd_u64(r, &nkv, "key/value count"));
    /* every key/value takes at least 8+1+4+1 bytes, every tensor info 8+1+4+8+4+8 */
    if (nkv > (r->size - r->pos) / 14)
        return ml_fail(ML_ERR_FORMAT, "%s: key/value count %llu cannot fit in the %zu bytes left", r->where,
                       (unsigned long long)nkv, r->size - r->pos);
    if (nt > (r->size - r->pos) / 33)
        return ml_fail(ML_ERR_FORMAT, "%s: tensor count %llu cannot fit in the %zu bytes left", r->where,
                       (unsigned long long)nt, r->size - r->pos);
    f->kv = calloc((size_t)nkv + 1, sizeof(ml_gguf_kv));
    f->tensors = calloc((size_t)nt + 1, sizeof(ml_gguf_tensor));
    if (!f->kv || !f->tensors) return ml_fail(ML_ERR_NOMEM, "%s: out of memory", r->where);
    f->alignment = ML_GGUF_ALIGNMENT;

    for (uint64_t i = 0; i < nkv; i++) {
        size_t at = r->pos;
        const char *ks;
        uint64_t kn;
        ML_TRY(rd_str(r, &ks, &kn, "key"));
        if (kn == 0 || memchr(ks, 0, (size_t)kn))
            return ml_fail(ML_ERR_FORMAT, "%s: key %llu at offset %zu is empty or holds a NUL", r->where,
                           (unsigned long long)i, at);
        ml_gguf_kv *kv = &f->kv[i];
        if (!(kv->key = dup_n(ks, kn))) return ml_fail(ML_ERR_NOMEM, "%s: out of memory", r->where);
        f->n_kv = i + 1;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->kv[j].key, kv->key))
                return ml_fail(ML_ERR_FORMAT, "%s: duplicate key '%s' at offset %zu", r->where, kv->key, at);
        uint32_t t;
        ML_TRY(rd_u32(r, &t, kv->key));
        kv->type = (ml_gguf_vtype)t;
        if (t == ML_GGUF_ARRAY) {
            uint32_t et;
            uint64_t n;
            ML_TRY(rd_u32(r, &et, kv->key));
            ML_TRY(rd_u64(r, &n, kv->key));
            if (et == ML_GGUF_ARRAY || (et != ML_GGUF_STRING && !vtype_size(et)))
                return ml_fail(ML_ERR_FORMAT, "%s: key '%s': unknown array element type %u", r->where, kv->key, et);
            kv->arr_type = (ml_gguf_vtype)et;
            kv->arr_n = n;
            kv->value = r->buf + r->pos;
            if (et == ML_GGUF_STRING) {
                if (n > (r->size - r->pos) / 8)
                    return ml_fail(ML_ERR_FORMAT, "%s: key '%s': %llu strings cannot fit in the %zu bytes left", r->where,
                                   kv->key, (unsigned long long)n, r->size - r->pos);
                for (uint64_t k = 0; k < n; k++) ML_TRY(rd_skip_value(r, et, kv->key));
            } else {
                size_t es = vtype_size(et);
                if (n > (r->size - r->pos) / es)
                    return ml_fail(ML_ERR_FORMAT, "%s: key '%s': array of %llu elements runs past the end", r->where,
                                   kv->key, (unsigned long long)n);
                if (et == ML_GGUF_BOOL) {
                    for (uint64_t k = 0; k < n; k++) ML_TRY(rd_skip_value(r, et, kv->key));
                } else {
                    r->pos += (size_t)(n * es);
                }
            }
        } else {
            kv->value = r->buf + r->pos;
            ML_TRY(rd_skip_value(r, t, kv->key));
        }
        if (!strcmp(kv->key, "general.alignment")) {
            if (t != ML_GGUF_U32)
                return ml_fail(ML_ERR_FORMAT, "%s: general.alignment must be UINT32 (type %u)", r->where, t);
            uint32_t a = (uint32_t)kv->value[0] | ((uint32_t)kv->value[1] << 8) | ((uint32_t)kv->value[2] << 16) |
                         ((uint32_t)kv->value[3] << 24);
            if (a == 0 || (a & (a - 1)) || a > (1u << 24))
                return ml_fail(ML_ERR_FORMAT, "%s: general.alignment %u is not a power of two", r->where, a);
            f->alignment = a;
        }
    }

    uint64_t expect = 0;
    for (uint64_t i = 0; i < nt; i++) {
        size_t at = r->pos;
        ml_gguf_tensor *t = &f->tensors[i];
        const char *ns;
        uint64_t nn;
        ML_TRY(rd_str(r, &ns, &nn, "tensor name"));
        if (nn == 0 || nn > ML_GGUF_MAX_NAME || memchr(ns, 0, (size_t)nn))
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %llu at offset %zu: name length %llu (1..%d, no NUL)", r->where,
                           (unsigned long long)i, at, (unsigned long long)nn, ML_GGUF_MAX_NAME);
        if (!(t->name = dup_n(ns, nn))) return ml_fail(ML_ERR_NOMEM, "%s: out of memory", r->where);
        f->n_tensors = i + 1;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->tensors[j].name, t->name))
                return ml_fail(ML_ERR_FORMAT, "%s: duplicate tensor %s at offset %zu", r->where, t->name, at);
        uint32_t nd, ty;
        ML_TRY(rd_u32(r, &nd, t->name));
        if (nd < 1 || nd > ML_GGUF_MAX_DIMS)
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s has %u dimensions (1..4)", r->where, t->name, nd);
        t->n_dims = (int)nd;
        uint64_t numel = 1;
        for (int d = 0; d < ML_GGUF_MAX_DIMS; d++) {
            uint64_t v = 1;
            if (d < (int)nd) ML_TRY(rd_u64(r, &v, t->name));
            if (v == 0 || v > (uint64_t)INT64_MAX || numel > (uint64_t)INT64_MAX / v)
                return ml_fail(ML_ERR_FORMAT, "%s: tensor %s: dimension %d = %llu is zero or overflows", r->where,
                               t->name, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
            numel *= v;
        }
        ML_TRY(rd_u32(r, &ty, t->name));
        if (!ml_ggml_type_name((int)ty))
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s has ggml type %u, which this reader does not handle", r->where,
                           t->name, ty);
        t->type = (ml_ggml_type)ty;
        if (t->ne[0] % block_elems(t->type))
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s: ne[0] = %lld is not a multiple of the %s block", r->where,
                           t->name, (long long)t->ne[0], ml_ggml_type_name(t->type));
        uint64_t rows = numel / (uint64_t)t->ne[0];
        uint64_t rb = ml_ggml_row_bytes(t->type, t->ne[0]);
        if (rows > (uint64_t)SIZE_MAX / 2 / rb)
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s: size overflows", r->where, t->name);
        t->nbytes = (size_t)(rows * rb);
        ML_TRY(rd_u64(r, &t->offset, t->name));
        if (t->offset != expect)
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s has offset %llu, expected %llu (offsets must be contiguous)",
                           r->where, t->name, (unsigned long long)t->offset, (unsigned long long)expect);
        if (t->nbytes > r->size) /* cannot fit anyway; also keeps the sum below from overflowing */
            return ml_fail(ML_ERR_FORMAT, "%s: tensor %s needs %zu bytes, more than the file's %zu", r->where, t->name,
                           t->nbytes, r->size);
        expect += pad_to(t->nbytes, f->alignment);
    }
    f->data_offset = pad_to(r->pos, f->alignment);
    if (f->data_offset > r->size || expect > r->size - f->data_offset) {
        /* the last tensor needs only its bytes, not its padding */
        uint64_t need = nt ? f->tensors[nt - 1].offset + f->tensors[nt - 1].nbytes : 0;
        if (f->data_offset > r->size || need > r->size - f->data_offset)
            return ml_fail(ML_ERR_FORMAT, "%s: tensor data needs %llu bytes from offset %llu, the file has %zu",
                           r->where, (unsigned long long)need, (unsigned long long)f->data_offset, r->size);
    }
    for (uint64_t i = 0; i < nt; i++) f->tensors[i].data = r->buf + f->data_offset + f->tensors[i].offset;
    return ML_OK;
}

ml_status ml_gguf_parse(ml_gguf_file *f, const uint8_t *buf, size_t size, const char *where) {
    memset(f, 0, sizeof(*f));
    rd r = {.buf = buf, .size = size, .where = where ? where : "gguf"};
    ml_status s = parse(f, &r);
    if (s != ML_OK) {
        ml_gguf_file_free(f);
        return s;
    }
    f->size = size;
    return ML_OK;
}

ml_status ml_gguf_load(ml_gguf_file *f, const char *path) {
    char *data;
    size_t size;
    memset(f, 0, sizeof(*f));
    ML_TRY(ml_read_file(path, &data, &size));
    ml_status s = ml_gguf_parse(f, (const uint8_t *)data, size, path);
    if (s != ML_OK) {
        free(data);
        return s;
    }
    f->owned = (uint8_t *)data;
    return ML_OK;
}

const ml_gguf_kv *ml_gguf_find_kv(const ml_gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const ml_gguf_tensor *ml_gguf_find_tensor(const ml_gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static ml_status typed_kv(const ml_gguf_file *f, const char *key, ml_gguf_vtype t, const ml_gguf_kv **kv) {
    *kv = ml_gguf_find_kv(f, key);
    if (!*kv) return ml_fail(ML_ERR_FORMAT, "gguf: key %s is missing", key);
    if ((*kv)->type != t) return ml_fail(ML_ERR_FORMAT, "gguf: key %s has type %d, expected %d", key, (*kv)->type, t);
    return ML_OK;
}

ml_status ml_gguf_get_u32(const ml_gguf_file *f, const char *key, uint32_t *v) {
    const ml_gguf_kv *kv;
    ML_TRY(typed_kv(f, key, ML_GGUF_U32, &kv));
    memcpy(v, kv->value, 4);
    return ML_OK;
}
ml_status ml_gguf_get_f32(const ml_gguf_file *f, const char *key, float *v) {
    const ml_gguf_kv *kv;
    ML_TRY(typed_kv(f, key, ML_GGUF_F32, &kv));
    memcpy(v, kv->value, 4);
    return ML_OK;
}
ml_status ml_gguf_get_str(const ml_gguf_file *f, const char *key, const char **s, uint64_t *len) {
    const ml_gguf_kv *kv;
    ML_TRY(typed_kv(f, key, ML_GGUF_STRING, &kv));
    memcpy(len, kv->value, 8);
    *s = (const char *)kv->value + 8;
    return ML_OK;
}
ml_status ml_gguf_arr_str(const ml_gguf_kv *kv, uint64_t i, const char **s, uint64_t *len) {
    if (kv->type != ML_GGUF_ARRAY || kv->arr_type != ML_GGUF_STRING || i >= kv->arr_n)
        return ml_fail(ML_ERR_RANGE, "gguf: %s has no string element %llu", kv->key, (unsigned long long)i);
    const uint8_t *p = kv->value; /* validated by the parser */
    for (uint64_t k = 0;; k++) {
        uint64_t n;
        memcpy(&n, p, 8);
        if (k == i) {
            *s = (const char *)p + 8;
            *len = n;
            return ML_OK;
        }
        p += 8 + n;
    }
}

ml_status ml_gguf_tensor_to_f32(const ml_gguf_tensor *t, float *out) {
    int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t rb = ml_ggml_row_bytes(t->type, t->ne[0]);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = t->data + (size_t)r * rb;
        float *y = out + r * t->ne[0];
        switch (t->type) {
        case ML_GGML_F32: memcpy(y, p, rb); break; /* little-endian host */
        case ML_GGML_F16:
            for (int64_t j = 0; j < t->ne[0]; j++) y[j] = ml_f16_to_f32(get_u16(p + 2 * j));
            break;
        case ML_GGML_Q8_0: ml_dequantize_row_q8_0(y, p, t->ne[0]); break;
        case ML_GGML_Q4_0: ml_dequantize_row_q4_0(y, p, t->ne[0]); break;
        }
    }
    return ML_OK;
}
