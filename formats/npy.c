#include "formats/npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error ".npy I/O assumes a little-endian host"
#endif

#define NPY_MAX_HEADER (1u << 20) /* far above any real header; bounds a lying length field */

static ml_status npy_write(const char *path, const void *data, const char *descr, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > ML_NPY_MAX_DIMS || (ndim > 0 && !shape))
        return ml_fail(ML_ERR_ARG, "%s: rank %d out of range 0..%d", path, ndim, ML_NPY_MAX_DIMS);
    uint64_t count = 1;
    char dict[2048];
    size_t k = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return ml_fail(ML_ERR_ARG, "%s: negative dimension %lld", path, (long long)shape[i]);
        if (__builtin_mul_overflow(count, (uint64_t)shape[i], &count) || count > (UINT64_MAX >> 3))
            return ml_fail(ML_ERR_ARG, "%s: array too large", path);
        k += (size_t)snprintf(dict + k, sizeof dict - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    }
    /* A 1-tuple needs its trailing comma: (5,) */
    k += (size_t)snprintf(dict + k, sizeof dict - k, "%s), }", ndim == 1 ? "," : "");
    if (count && !data) return ml_fail(ML_ERR_ARG, "%s: no data", path);
    /* Pad with spaces and a final newline so the data starts on a 64-byte boundary (as numpy does). */
    size_t total = 10 + k + 1;
    size_t padded = (total + 63) / 64 * 64;
    unsigned char head[2200];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    uint16_t hlen = (uint16_t)(padded - 10);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, k);
    memset(head + 10 + k, ' ', padded - total);
    head[padded - 1] = '\n';

    ml_atomic_file f;
    ML_TRY(ml_atomic_begin(&f, path, 1));
    size_t bytes = (size_t)count * 4;
    if (fwrite(head, 1, padded, f.fp) != padded || (bytes && fwrite(data, 1, bytes, f.fp) != bytes)) {
        ml_status s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        ml_atomic_abort(&f);
        return s;
    }
    return ml_atomic_commit(&f);
}

ml_status ml_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    return npy_write(path, data, "<f4", ndim, shape);
}

ml_status ml_npy_write_i32(const char *path, const int32_t *data, int ndim, const int64_t *shape) {
    return npy_write(path, data, "<i4", ndim, shape);
}

void ml_npy_free(ml_npy_array *a) {
    if (!a) return;
    free(a->data);
    a->data = NULL;
    a->count = 0;
}

/* ---- header dict parser: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } ---- */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int quoted(cursor *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (n + 1 >= cap) return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = 0;
    return 1;
}

static ml_status parse_dict(const char *path, const char *h, size_t n, ml_npy_array *a) {
    cursor c = {h, h + n};
    char key[64], descr[64] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (!eat(&c, '{')) return ml_fail(ML_ERR_FORMAT, "%s: .npy header is not a dict", path);
    for (;;) {
        if (eat(&c, '}')) break;
        if (!quoted(&c, key, sizeof key) || !eat(&c, ':'))
            return ml_fail(ML_ERR_FORMAT, "%s: malformed .npy header dict", path);
        skip_ws(&c);
        if (strcmp(key, "descr") == 0) {
            if (have_descr++ || !quoted(&c, descr, sizeof descr))
                return ml_fail(ML_ERR_FORMAT, "%s: bad 'descr' in .npy header", path);
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order++) return ml_fail(ML_ERR_FORMAT, "%s: duplicate 'fortran_order'", path);
            if ((size_t)(c.end - c.p) >= 4 && memcmp(c.p, "True", 4) == 0) fortran = 1, c.p += 4;
            else if ((size_t)(c.end - c.p) >= 5 && memcmp(c.p, "False", 5) == 0) c.p += 5;
            else return ml_fail(ML_ERR_FORMAT, "%s: bad 'fortran_order' in .npy header", path);
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++ || !eat(&c, '(')) return ml_fail(ML_ERR_FORMAT, "%s: bad 'shape' in .npy header", path);
            a->ndim = 0;
            for (;;) {
                if (eat(&c, ')')) break;
                skip_ws(&c);
                if (c.p >= c.end || !isdigit((unsigned char)*c.p))
                    return ml_fail(ML_ERR_FORMAT, "%s: bad 'shape' in .npy header", path);
                if (a->ndim == ML_NPY_MAX_DIMS)
                    return ml_fail(ML_ERR_UNSUPPORTED, "%s: rank above %d", path, ML_NPY_MAX_DIMS);
                uint64_t v = 0;
                while (c.p < c.end && isdigit((unsigned char)*c.p)) {
                    if (v > (UINT64_MAX >> 8) / 10) return ml_fail(ML_ERR_FORMAT, "%s: dimension too large", path);
                    v = v * 10 + (uint64_t)(*c.p++ - '0');
                }
                a->shape[a->ndim++] = (int64_t)v;
                if (!eat(&c, ',')) {
                    if (!eat(&c, ')')) return ml_fail(ML_ERR_FORMAT, "%s: bad 'shape' in .npy header", path);
                    break;
                }
            }
        } else
            return ml_fail(ML_ERR_FORMAT, "%s: unexpected key '%s' in .npy header", path, key);
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return ml_fail(ML_ERR_FORMAT, "%s: malformed .npy header dict", path);
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) return ml_fail(ML_ERR_FORMAT, "%s: trailing bytes after the .npy header dict", path);
    if (!have_descr || !have_order || !have_shape)
        return ml_fail(ML_ERR_FORMAT, "%s: .npy header lacks descr, fortran_order or shape", path);
    if (strcmp(descr, "<f4") == 0) a->dtype = ML_NPY_F32;
    else if (strcmp(descr, "<i4") == 0) a->dtype = ML_NPY_I32;
    else return ml_fail(ML_ERR_UNSUPPORTED, "%s: dtype '%s' (only '<f4' float32 and '<i4' int32 are read)", path, descr);
    if (fortran) return ml_fail(ML_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not read", path);
    return ML_OK;
}

ml_status ml_npy_read(const char *path, ml_npy_array *a) {
    memset(a, 0, sizeof *a);
    FILE *fp = fopen(path, "rb");
    if (!fp) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    ml_status s = ML_OK;
    char *h = NULL;
    struct stat sb;
    unsigned char pre[12];
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = ml_fail(ML_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        s = ml_fail(ML_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    uint64_t hlen, pre_len;
    if (pre[6] == 1 && pre[7] == 0) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        pre_len = 10;
    } else if ((pre[6] == 2 || pre[6] == 3) && pre[7] == 0) {
        if (fread(pre + 10, 1, 2, fp) != 2) {
            s = ml_fail(ML_ERR_FORMAT, "%s: truncated .npy header", path);
            goto done;
        }
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        pre_len = 12;
    } else {
        s = ml_fail(ML_ERR_UNSUPPORTED, "%s: .npy format version %d.%d", path, pre[6], pre[7]);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER || pre_len + hlen > (uint64_t)sb.st_size) {
        s = ml_fail(ML_ERR_FORMAT, "%s: .npy header length %llu does not fit the file (%lld bytes)", path,
                    (unsigned long long)hlen, (long long)sb.st_size);
        goto done;
    }
    h = malloc(hlen + 1);
    if (!h) {
        s = ml_fail(ML_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(h, 1, hlen, fp) != hlen) {
        s = ml_fail(ML_ERR_IO, "%s: short read", path);
        goto done;
    }
    h[hlen] = 0;
    if ((s = parse_dict(path, h, hlen, a)) != ML_OK) goto done;
    uint64_t count = 1;
    for (int i = 0; i < a->ndim; i++)
        if (__builtin_mul_overflow(count, (uint64_t)a->shape[i], &count) || count > (UINT64_MAX >> 3)) {
            s = ml_fail(ML_ERR_FORMAT, "%s: shape overflows", path);
            goto done;
        }
    uint64_t bytes = count * 4, have = (uint64_t)sb.st_size - pre_len - hlen;
    if (have != bytes) {
        s = ml_fail(ML_ERR_FORMAT, "%s: shape needs %llu data bytes but the file has %llu", path,
                    (unsigned long long)bytes, (unsigned long long)have);
        goto done;
    }
    a->count = (size_t)count;
    a->data = malloc(bytes ? bytes : 1);
    if (!a->data) {
        s = ml_fail(ML_ERR_NOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)bytes);
        goto done;
    }
    if (fread(a->data, 1, bytes, fp) != bytes) {
        s = ml_fail(ML_ERR_IO, "%s: short read", path);
        goto done;
    }
done:
    free(h);
    fclose(fp);
    if (s != ML_OK) ml_npy_free(a);
    return s;
}
