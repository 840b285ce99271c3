#include "formats/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

struct ml_h5 {
    hid_t fid;
    int writable;
    int verified;      /* our checksum block was present and matched */
    int heaps_checked; /* 1: global heaps validated (heaps_ok says how) */
    int heaps_ok;
    char heaps_msg[512];
    char path[4096];
};

#define H5_MAX_ATTR_STR (64u << 20) /* bounds a corrupted fixed-length string size */

/* Before the library's first call: no clean-up at exit. HDF5 1.10 keeps a file whose H5Fclose failed
 * (a write cut off by EFBIG or ENOSPC during the final flush) in its table half-closed, and its atexit
 * termination then closes it again and crashes (SIGSEGV in H5F__close_cb) after we reported the error
 * and removed the file. Every file we open is closed explicitly, so nothing is lost at exit. */
static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static void h5_init_once(void) { H5dont_atexit(); }

/* HDF5 prints its error stack to stderr by default; we report errors ourselves. */
static void h5_quiet(void) {
    pthread_once(&h5_once, h5_init_once);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* The innermost description; a system call's failure ("file write failed: time = ..., filename = ...,
 * errno = 27, error message = 'File too large', ...") is cut to "file write failed: File too large"
 * (the text before the first ':' or ',', then the system's message). */
static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n != 0 || !e->desc) return 0;
    const char *m = strstr(e->desc, "error message = '"), *colon = e->desc + strcspn(e->desc, ":,");
    if (m && colon < m) {
        m += strlen("error message = '");
        const char *q = strchr(m, '\'');
        snprintf(data, 256, "%.*s: %.*s", (int)(colon - e->desc), e->desc, (int)(q ? q - m : (long)strlen(m)), m);
    } else {
        snprintf(data, 256, "%s", e->desc);
    }
    return 0;
}

/* HDF5's innermost (most specific) error description, into a static per-thread buffer; clears the stack. */
static const char *h5_err(void) { /* call right after the failing call: any HDF5 call clears the stack */
    static _Thread_local char buf[256];
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf[0] ? buf : "HDF5 error";
}

static const char *dtype_name(ml_h5_dtype t) {
    switch (t) {
    case ML_H5_F32: return "float32";
    case ML_H5_F64: return "float64";
    case ML_H5_U8: return "uint8";
    case ML_H5_I64: return "int64";
    case ML_H5_U64: return "uint64";
    case ML_H5_I32: return "int32";
    case ML_H5_U32: return "uint32";
    case ML_H5_F16: return "float16";
    default: return "other";
    }
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* A usable path: non-empty components, none "." or "..", no trailing '/'. "/" alone means the root. */
static ml_status check_path(const ml_h5 *f, const char *path, int allow_root) {
    if (!path || !path[0]) return ml_fail(ML_ERR_ARG, "%s: empty HDF5 object name", f->path);
    if (strlen(path) >= 4000) return ml_fail(ML_ERR_ARG, "%s: HDF5 object name too long", f->path);
    if (strcmp(path, "/") == 0) return allow_root ? ML_OK : ml_fail(ML_ERR_ARG, "%s: '/' is not a dataset", f->path);
    const char *p = path[0] == '/' ? path + 1 : path;
    for (;;) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return ml_fail(ML_ERR_ARG, "%s: bad HDF5 object name '%s'", f->path, path);
        if (!q) break;
        p = q + 1;
    }
    return ML_OK;
}

int ml_h5_exists(ml_h5 *f, const char *path) {
    if (check_path(f, path, 1) != ML_OK) return 0;
    if (strcmp(path, "/") == 0) return 1;
    /* H5Lexists needs every intermediate link to exist: test each prefix in turn. */
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + (buf[0] == '/');; p++) {
        char *q = strchr(p, '/');
        if (q) *q = 0;
        htri_t e = H5Lexists(f->fid, buf, H5P_DEFAULT);
        if (e <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return 0;
        }
        if (!q) return 1;
        *q = '/';
        p = q;
    }
}

/* ---------------- whole-file checksum in the HDF5 user block ----------------
 * HDF5 checksums its metadata, but not raw data, and not the global heap that holds variable-length
 * strings: HDF5 1.10 loops forever on some corrupted global heaps (seen in the byte-flip test). So
 * every file we write starts with a 512-byte user block (HDF5 skips it; h5py reads such files):
 *   0  8  magic "MLH5CRC1"
 *   8  8  u64 LE file size
 *   16 4  u32 LE CRC-32C of bytes [512, size)
 *   20 4  u32 LE CRC-32C of bytes [0, 20) and [24, 512)   (the block itself)
 * and ml_h5_open_read verifies it before HDF5 parses anything. Files without the magic (written by
 * other tools) are opened unverified. */
#define UB_SIZE 512
static const char ub_magic[8] = {'M', 'L', 'H', '5', 'C', 'R', 'C', '1'};

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--, p++) c32 = _mm_crc32_u8(c32, *p);
    return c32;
}
#endif

/* Running CRC-32C (pass ~0 to start, complement at the end). */
static uint32_t crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return crc32c_hw(crc, data, n);
#endif
    return crc32c_sw(crc, data, n);
}

static uint32_t ub_self_crc(const uint8_t *ub) {
    uint32_t c = crc32c(~0u, ub, 20);
    return ~crc32c(c, ub + 24, UB_SIZE - 24);
}

/* CRC-32C of bytes [from, size) of an open file. */
static ml_status crc_range(int fd, const char *path, uint64_t from, uint64_t size, uint32_t *out) {
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap);
    if (!buf) return ml_fail(ML_ERR_NOMEM, "out of memory checksumming %s", path);
    uint32_t c = ~0u;
    for (uint64_t off = from; off < size;) {
        size_t want = size - off < cap ? (size_t)(size - off) : cap;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got <= 0) {
            free(buf);
            return ml_fail(ML_ERR_IO, "cannot read %s: %s", path, got < 0 ? strerror(errno) : "unexpected end of file");
        }
        c = crc32c(c, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    *out = ~c;
    return ML_OK;
}

/* After HDF5 closed the file: fill the user block with the size and checksums. */
static ml_status ub_seal(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return ml_fail(ML_ERR_IO, "cannot reopen %s: %s", path, strerror(errno));
    struct stat sb;
    uint8_t ub[UB_SIZE];
    ml_status s = ML_OK;
    if (fstat(fd, &sb) != 0 || sb.st_size < UB_SIZE) {
        s = ml_fail(ML_ERR_IO, "%s: unexpected size after writing", path);
        goto done;
    }
    if (pread(fd, ub, UB_SIZE, 0) != UB_SIZE) {
        s = ml_fail(ML_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint32_t data_crc;
    if ((s = crc_range(fd, path, UB_SIZE, size, &data_crc)) != ML_OK) goto done;
    memcpy(ub, ub_magic, 8);
    memcpy(ub + 8, &size, 8);
    memcpy(ub + 16, &data_crc, 4);
    uint32_t self = ub_self_crc(ub);
    memcpy(ub + 20, &self, 4);
    if (pwrite(fd, ub, UB_SIZE, 0) != UB_SIZE) s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
done:
    if (close(fd) != 0 && s == ML_OK) s = ml_fail(ML_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return s;
}

static const uint8_t hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* Before HDF5 opens the file: verify our user block if there is one (*verified = 1 when it matched). */
static ml_status ub_verify(const char *path, int *verified) {
    *verified = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    uint8_t ub[UB_SIZE];
    ml_status s = ML_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = ml_fail(ML_ERR_IO, "%s is not a regular file", path);
        goto done;
    }
    if (sb.st_size < UB_SIZE || pread(fd, ub, UB_SIZE, 0) != UB_SIZE) goto done; /* too short to be ours */
    uint64_t size;
    uint32_t want, self, got;
    memcpy(&size, ub + 8, 8);
    memcpy(&want, ub + 16, 4);
    memcpy(&self, ub + 20, 4);
    if (memcmp(ub, ub_magic, 8) != 0) {
        /* Not ours, unless only the magic was damaged: then the block's own checksum still matches. */
        uint8_t fixed[UB_SIZE];
        memcpy(fixed, ub, UB_SIZE);
        memcpy(fixed, ub_magic, 8);
        if (self == ub_self_crc(fixed))
            s = ml_fail(ML_ERR_FORMAT, "%s: corrupted (damaged file header)", path);
        else if (sb.st_size >= UB_SIZE + 8) {
            /* Laid out like ours (HDF5 starts after a 512-byte block) but the block does not verify: a file of
             * ours whose checksum block was damaged, never parsed unchecked. (Other tools' files start at 0.) */
            uint8_t sig[8];
            if (pread(fd, sig, 8, UB_SIZE) == 8 && memcmp(sig, hdf5_sig, 8) == 0)
                s = ml_fail(ML_ERR_FORMAT, "%s: corrupted (a mobilellm.c file whose checksum block is damaged)", path);
        }
        goto done; /* another tool's file: HDF5 decides */
    }
    if (self != ub_self_crc(ub)) {
        s = ml_fail(ML_ERR_FORMAT, "%s: corrupted (checksum of the file header does not match)", path);
        goto done;
    }
    if (size != (uint64_t)sb.st_size) {
        s = ml_fail(ML_ERR_FORMAT, "%s: %s: %lld bytes, written as %llu", path,
                    size > (uint64_t)sb.st_size ? "truncated" : "modified outside mobilellm.c or corrupted",
                    (long long)sb.st_size, (unsigned long long)size);
        goto done;
    }
    if ((s = crc_range(fd, path, UB_SIZE, size, &got)) != ML_OK) goto done;
    if (got != want)
        s = ml_fail(ML_ERR_FORMAT, "%s: modified outside mobilellm.c or corrupted (file checksum does not match)", path);
    else
        *verified = 1;
done:
    close(fd);
    return s;
}

/* mode: 0 read, 1 create, 2 read only a verified file of ours (nothing else reaches HDF5). */
static ml_status open_file(ml_h5 **out, const char *path, int mode) {
    *out = NULL;
    h5_quiet();
    int verified = 0, create = mode == 1;
    if (!create) ML_TRY(ub_verify(path, &verified));
    if (mode == 2 && !verified)
        return ml_fail(ML_ERR_FORMAT, "%s has no mobilellm.c checksum block (not written by mobilellm.c)", path);
    ml_h5 *f = calloc(1, sizeof *f);
    if (!f) return ml_fail(ML_ERR_NOMEM, "out of memory opening %s", path);
    f->verified = verified;
    if (strlen(path) >= sizeof f->path) {
        free(f);
        return ml_fail(ML_ERR_ARG, "path too long: %s", path);
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl_keep = -1;
    if (fapl < 0) {
        free(f);
        return ml_fail(ML_ERR_IO, "%s: HDF5: %s", path, h5_err());
    }
    /* Close everything with the file, so a closed file can be renamed safely. */
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
    /* Locks guard concurrent writers of one file; ours are written under a fresh temporary name. */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    if (create) {
        /* The 1.10 format checksums all metadata (superblock, headers, chunk indexes), so corruption is
         * detected on read rather than misparsed. */
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
        hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
        f->fid = fcpl >= 0 && H5Pset_userblock(fcpl, UB_SIZE) >= 0 ? H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl) : -1;
        f->writable = 1;
        fcpl_keep = fcpl;
    } else {
        f->fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    }
    ml_status s = ML_OK;
    if (f->fid < 0) /* before any other HDF5 call: each one clears the error stack */
        s = ml_fail(create ? ML_ERR_IO : ML_ERR_FORMAT, "cannot %s HDF5 file %s: %s", create ? "create" : "open", path,
                    h5_err());
    if (fcpl_keep >= 0) H5Pclose(fcpl_keep);
    H5Pclose(fapl);
    if (s != ML_OK) {
        free(f);
        return s;
    }
    *out = f;
    return ML_OK;
}

ml_status ml_h5_create(ml_h5 **f, const char *path) { return open_file(f, path, 1); }
ml_status ml_h5_open_read(ml_h5 **f, const char *path) { return open_file(f, path, 0); }
ml_status ml_h5_open_ours(ml_h5 **f, const char *path) { return open_file(f, path, 2); }

ml_status ml_h5_close(ml_h5 *f) {
    if (!f) return ML_OK;
    ml_status s = ML_OK;
    if (H5Fclose(f->fid) < 0) s = ml_fail(ML_ERR_IO, "cannot close HDF5 file %s: %s", f->path, h5_err());
    else if (f->writable) s = ub_seal(f->path);
    free(f);
    return s;
}

const char *ml_h5_path(const ml_h5 *f) { return f->path; }
int ml_h5_verified(const ml_h5 *f) { return f->verified; }

/* ---------------- global heaps: checked before any variable-length read ----------------
 * Variable-length strings live in global heap collections, which HDF5 neither checksums nor bounds-checks
 * on load (1.10: an object size past its collection makes H5HG_read copy megabytes out of a 4 KiB block; a
 * zero-sized free-space object loops forever). Before the first variable-length read of a file we find
 * every collection ("GCOL", version 1, 3 reserved zero bytes, 8-byte size) and walk its objects the way
 * HDF5 does (16-byte header: u16 index, u16 references, 4 reserved, u64 size; data padded to 8 bytes;
 * index 0 is the free space, its size counting its header), requiring each to fit and the walk to end
 * exactly at the collection's end. */
#define GCOL_MIN 4096u
#define GCOL_MAX (1ull << 32)

static int gcol_valid(const uint8_t *c, uint64_t size, char *why, size_t why_n) {
    uint64_t p = 16; /* after the collection header */
    while (p < size) {
        if (size - p < 16) return 1; /* a tail too small for a header: free space, as HDF5 reads it */
        uint16_t idx;
        uint64_t osz;
        memcpy(&idx, c + p, 2);
        memcpy(&osz, c + p + 8, 8);
        uint64_t room = size - p, need;
        if (idx == 0) {
            need = osz;
            if (need < 16 || need > room) {
                snprintf(why, why_n, "free space of %llu bytes at offset %llu of %llu", (unsigned long long)osz,
                         (unsigned long long)p, (unsigned long long)size);
                return 0;
            }
        } else {
            if (osz > room - 16 || ((osz + 7) & ~7ull) > room - 16) {
                snprintf(why, why_n, "object %u of %llu bytes at offset %llu of %llu", idx, (unsigned long long)osz,
                         (unsigned long long)p, (unsigned long long)size);
                return 0;
            }
            need = 16 + ((osz + 7) & ~7ull);
        }
        p += need;
    }
    return 1;
}

static ml_status scan_heaps(ml_h5 *f) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return ml_fail(ML_ERR_IO, "cannot read %s: %s", f->path, strerror(errno));
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap + 3), *col = NULL;
    ml_status s = buf ? ML_OK : ml_fail(ML_ERR_NOMEM, "out of memory checking %s", f->path);
    char why[160];
    for (uint64_t off = 0; s == ML_OK && off < fsize; off += cap) {
        size_t want = fsize - off < cap + 3 ? (size_t)(fsize - off) : cap + 3; /* 3 bytes overlap the next block */
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got != (ssize_t)want) {
            s = ml_fail(ML_ERR_IO, "cannot read %s: %s", f->path, got < 0 ? strerror(errno) : "unexpected end of file");
            break;
        }
        size_t lim = want < cap ? want : cap;
        for (size_t i = 0; i < lim && s == ML_OK; i++) {
            if (buf[i] != 'G' || i + 4 > want || memcmp(buf + i, "GCOL", 4) != 0) continue;
            uint64_t at = off + i;
            uint8_t h[16];
            if (fsize - at < 16 || pread(fd, h, 16, (off_t)at) != 16) continue;
            if (h[4] != 1 || h[5] || h[6] || h[7]) continue; /* not a collection header */
            uint64_t size;
            memcpy(&size, h + 8, 8);
            if (size < GCOL_MIN || size > GCOL_MAX || size > fsize - at) {
                s = ml_fail(ML_ERR_FORMAT, "%s: corrupted (global heap at byte %llu claims %llu bytes)", f->path,
                            (unsigned long long)at, (unsigned long long)size);
                break;
            }
            free(col);
            if (!(col = malloc((size_t)size))) {
                s = ml_fail(ML_ERR_NOMEM, "out of memory checking %s", f->path);
                break;
            }
            if (pread(fd, col, (size_t)size, (off_t)at) != (ssize_t)size) {
                s = ml_fail(ML_ERR_IO, "cannot read %s: %s", f->path, strerror(errno));
                break;
            }
            if (!gcol_valid(col, size, why, sizeof why))
                s = ml_fail(ML_ERR_FORMAT, "%s: corrupted (global heap at byte %llu: %s)", f->path,
                            (unsigned long long)at, why);
        }
    }
    free(col);
    free(buf);
    close(fd);
    return s;
}

/* The cached outcome of scan_heaps (the message is repeated on every later variable-length read). */
static ml_status check_heaps(ml_h5 *f) {
    if (!f->heaps_checked) {
        ml_status s = scan_heaps(f);
        f->heaps_checked = 1;
        f->heaps_ok = s == ML_OK;
        if (s != ML_OK) snprintf(f->heaps_msg, sizeof f->heaps_msg, "%s", ml_last_error());
        if (s != ML_OK && s != ML_ERR_FORMAT) f->heaps_checked = 0; /* I/O trouble: try again next time */
        if (s != ML_OK) return s;
    }
    return f->heaps_ok ? ML_OK : ml_fail(ML_ERR_FORMAT, "%s", f->heaps_msg);
}

static hid_t make_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0) H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

ml_status ml_h5_create_group(ml_h5 *f, const char *path) {
    ML_TRY(check_path(f, path, 1));
    if (!f->writable) return ml_fail(ML_ERR_ARG, "%s: opened read-only", f->path);
    if (ml_h5_exists(f, path)) return ML_OK;
    hid_t lcpl = make_lcpl();
    hid_t g = lcpl < 0 ? -1 : H5Gcreate2(f->fid, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    ml_status s = g < 0 ? ml_fail(ML_ERR_IO, "%s: cannot create group '%s': %s", f->path, path, h5_err()) : ML_OK;
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g >= 0) H5Gclose(g);
    return s;
}

/* Chunk shape of about 1 MiB: whole trailing dimensions while they fit, then a slice of the next one. */
static void chunk_dims(hsize_t *chunk, int ndim, const hsize_t *dims, size_t elem) {
    uint64_t budget = (1u << 20) / elem, inner = 1;
    int i = ndim - 1;
    for (; i >= 0; i--) {
        if (inner * dims[i] > budget) break;
        chunk[i] = dims[i];
        inner *= dims[i];
    }
    if (i >= 0) {
        uint64_t c = budget / inner;
        chunk[i] = c ? c : 1;
        for (int j = i - 1; j >= 0; j--) chunk[j] = 1;
    }
}

static ml_status write_ds(ml_h5 *f, const char *path, hid_t ftype, hid_t mtype, size_t elem, int ndim,
                          const int64_t *shape, const void *data, const ml_h5_opts *opts) {
    ML_TRY(check_path(f, path, 0));
    if (!f->writable) return ml_fail(ML_ERR_ARG, "%s: opened read-only, cannot write '%s'", f->path, path);
    if (ndim < 0 || ndim > ML_H5_MAX_DIMS || (ndim > 0 && !shape))
        return ml_fail(ML_ERR_ARG, "%s: dataset '%s': rank %d out of range 0..%d", f->path, path, ndim, ML_H5_MAX_DIMS);
    hsize_t dims[ML_H5_MAX_DIMS], chunk[ML_H5_MAX_DIMS];
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ml_fail(ML_ERR_ARG, "%s: dataset '%s': negative dimension %lld", f->path, path, (long long)shape[i]);
        dims[i] = (hsize_t)shape[i];
        numel *= (uint64_t)shape[i];
    }
    if (numel && !data) return ml_fail(ML_ERR_ARG, "%s: dataset '%s': no data", f->path, path);
    if (ml_h5_exists(f, path)) return ml_fail(ML_ERR_ARG, "%s: dataset '%s' already exists", f->path, path);
    int filtered = opts && (opts->gzip > 0 || opts->shuffle) && ndim > 0 && numel > 0;
    if (opts && (opts->gzip < 0 || opts->gzip > 9))
        return ml_fail(ML_ERR_ARG, "%s: dataset '%s': gzip level %d not in 0..9", f->path, path, opts->gzip);
    if (filtered && opts->gzip > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0)
        return ml_fail(ML_ERR_UNSUPPORTED, "%s: this HDF5 library has no gzip filter", f->path);

    ml_status s = ML_OK;
    hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = make_lcpl(), ds = -1;
    if (space < 0 || dcpl < 0 || lcpl < 0) goto h5fail;
    if (filtered) {
        chunk_dims(chunk, ndim, dims, elem);
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0) goto h5fail;
        if (opts->shuffle && H5Pset_shuffle(dcpl) < 0) goto h5fail;
        if (opts->gzip > 0 && H5Pset_deflate(dcpl, (unsigned)opts->gzip) < 0) goto h5fail;
    }
    ds = H5Dcreate2(f->fid, path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) goto h5fail;
    if (numel && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) goto h5fail;
    goto done;
h5fail:
    s = ml_fail(ML_ERR_IO, "%s: cannot write dataset '%s': %s", f->path, path, h5_err());
done:
    if (ds >= 0 && H5Dclose(ds) < 0 && s == ML_OK)
        s = ml_fail(ML_ERR_IO, "%s: cannot write dataset '%s': %s", f->path, path, h5_err());
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    return s;
}

static ml_h5_dtype classify(hid_t t) {
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    if (c == H5T_FLOAT) {
        if (size == 2) { /* binary16 only: 1 sign, 5 exponent, 10 mantissa bits */
            size_t spos, epos, esize, mpos, msize;
            if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && esize == 5 &&
                msize == 10 && H5Tget_ebias(t) == 15)
                return ML_H5_F16;
            H5Eclear2(H5E_DEFAULT);
        }
        return size == 4 ? ML_H5_F32 : size == 8 ? ML_H5_F64 : ML_H5_OTHER;
    }
    if (c == H5T_INTEGER) {
        int sign = H5Tget_sign(t) == H5T_SGN_2;
        if (size == 1 && !sign) return ML_H5_U8;
        if (size == 4) return sign ? ML_H5_I32 : ML_H5_U32;
        if (size == 8) return sign ? ML_H5_I64 : ML_H5_U64;
    }
    return ML_H5_OTHER;
}

/* Open dataset `path`, reporting a missing one (or a group) clearly. */
static ml_status open_ds(ml_h5 *f, const char *path, hid_t *ds) {
    ML_TRY(check_path(f, path, 0));
    if (!ml_h5_exists(f, path)) return ml_fail(ML_ERR_FORMAT, "%s: no dataset '%s'", f->path, path);
    *ds = H5Dopen2(f->fid, path, H5P_DEFAULT);
    if (*ds < 0) return ml_fail(ML_ERR_FORMAT, "%s: cannot open dataset '%s': %s", f->path, path, h5_err());
    return ML_OK;
}

static ml_status ds_info(ml_h5 *f, const char *path, hid_t ds, int *ndim, int64_t *shape, ml_h5_dtype *dtype) {
    hid_t t = H5Dget_type(ds), space = H5Dget_space(ds);
    ml_status s = ML_OK;
    if (t < 0 || space < 0) {
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s': %s", f->path, path, h5_err());
        goto done;
    }
    *dtype = classify(t);
    H5S_class_t sc = H5Sget_simple_extent_type(space);
    int nd = sc == H5S_SCALAR ? 0 : H5Sget_simple_extent_ndims(space);
    if (sc != H5S_SCALAR && sc != H5S_SIMPLE) {
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' has no simple shape", f->path, path);
        goto done;
    }
    if (nd < 0 || nd > ML_H5_MAX_DIMS) {
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' has rank %d (at most %d supported)", f->path, path, nd,
                    ML_H5_MAX_DIMS);
        H5Eclear2(H5E_DEFAULT);
        goto done;
    }
    hsize_t dims[ML_H5_MAX_DIMS];
    if (nd > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s': %s", f->path, path, h5_err());
        goto done;
    }
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
done:
    if (t >= 0) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
    return s;
}

ml_status ml_h5_dataset_info(ml_h5 *f, const char *path, int *ndim, int64_t *shape, ml_h5_dtype *dtype) {
    hid_t ds = -1;
    ML_TRY(open_ds(f, path, &ds));
    ml_status s = ds_info(f, path, ds, ndim, shape, dtype);
    H5Dclose(ds);
    return s;
}

static ml_status read_ds(ml_h5 *f, const char *path, ml_h5_dtype want, hid_t mtype, int ndim, const int64_t *shape,
                         void *out) {
    if (ndim < 0 || ndim > ML_H5_MAX_DIMS || (ndim > 0 && !shape))
        return ml_fail(ML_ERR_ARG, "%s: dataset '%s': rank %d out of range 0..%d", f->path, path, ndim, ML_H5_MAX_DIMS);
    hid_t ds = -1;
    ML_TRY(open_ds(f, path, &ds));
    int nd;
    int64_t sh[ML_H5_MAX_DIMS];
    ml_h5_dtype dt;
    ml_status s = ds_info(f, path, ds, &nd, sh, &dt);
    if (s == ML_OK && dt != want)
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' holds %s, expected %s", f->path, path, dtype_name(dt),
                    dtype_name(want));
    int same = s == ML_OK && nd == ndim;
    uint64_t numel = 1;
    for (int i = 0; same && i < nd; i++) {
        same = sh[i] == shape[i];
        numel *= (uint64_t)sh[i];
    }
    if (s == ML_OK && !same) {
        char a[256], b[256];
        fmt_shape(a, sizeof a, nd, sh);
        fmt_shape(b, sizeof b, ndim, shape);
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' has shape %s, expected %s", f->path, path, a, b);
    }
    if (s == ML_OK && numel && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        s = ml_fail(ML_ERR_FORMAT, "%s: cannot read dataset '%s': %s", f->path, path, h5_err());
    H5Dclose(ds);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

ml_status ml_h5_write_f32(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const float *data,
                          const ml_h5_opts *opts) {
    return write_ds(f, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, ndim, shape, data, opts);
}
ml_status ml_h5_read_f32(ml_h5 *f, const char *path, int ndim, const int64_t *shape, float *out) {
    return read_ds(f, path, ML_H5_F32, H5T_NATIVE_FLOAT, ndim, shape, out);
}
ml_status ml_h5_write_u8(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const uint8_t *data) {
    return write_ds(f, path, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, ndim, shape, data, NULL);
}
ml_status ml_h5_read_u8(ml_h5 *f, const char *path, int ndim, const int64_t *shape, uint8_t *out) {
    return read_ds(f, path, ML_H5_U8, H5T_NATIVE_UINT8, ndim, shape, out);
}
ml_status ml_h5_write_i64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const int64_t *data) {
    return write_ds(f, path, H5T_STD_I64LE, H5T_NATIVE_INT64, 8, ndim, shape, data, NULL);
}
ml_status ml_h5_read_i64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, int64_t *out) {
    return read_ds(f, path, ML_H5_I64, H5T_NATIVE_INT64, ndim, shape, out);
}
ml_status ml_h5_write_u64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, const uint64_t *data) {
    return write_ds(f, path, H5T_STD_U64LE, H5T_NATIVE_UINT64, 8, ndim, shape, data, NULL);
}
ml_status ml_h5_read_u64(ml_h5 *f, const char *path, int ndim, const int64_t *shape, uint64_t *out) {
    return read_ds(f, path, ML_H5_U64, H5T_NATIVE_UINT64, ndim, shape, out);
}

/* ---------------- listing ---------------- */

typedef struct {
    char **names;
    size_t n, cap;
    int oom;
} name_list;

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    name_list *l = data;
    if (info->type != H5L_TYPE_HARD) return 0; /* never follow soft/external links */
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return -1;
    int is_ds = H5Iget_type(o) == H5I_DATASET;
    H5Oclose(o);
    if (!is_ds) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->names, cap * sizeof *p);
        if (!p) {
            l->oom = 1;
            return -1;
        }
        l->names = p;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) {
        l->oom = 1;
        return -1;
    }
    l->n++;
    return 0;
}

void ml_h5_free_names(char **names, size_t count) {
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

ml_status ml_h5_list_datasets(ml_h5 *f, const char *group, char ***names, size_t *count) {
    *names = NULL;
    *count = 0;
    ML_TRY(check_path(f, group, 1));
    if (!ml_h5_exists(f, group)) return ml_fail(ML_ERR_FORMAT, "%s: no group '%s'", f->path, group);
    hid_t g = H5Gopen2(f->fid, group, H5P_DEFAULT);
    if (g < 0) return ml_fail(ML_ERR_FORMAT, "%s: cannot open group '%s': %s", f->path, group, h5_err());
    name_list l = {0};
    hsize_t idx = 0;
    herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &l);
    H5Gclose(g);
    if (r < 0 || l.oom) {
        ml_status s = l.oom ? ml_fail(ML_ERR_NOMEM, "%s: out of memory listing '%s'", f->path, group)
                            : ml_fail(ML_ERR_FORMAT, "%s: cannot list group '%s': %s", f->path, group, h5_err());
        ml_h5_free_names(l.names, l.n);
        return s;
    }
    *names = l.names;
    *count = l.n;
    return ML_OK;
}

/* ---------------- attributes ---------------- */

int ml_h5_has_attr(ml_h5 *f, const char *obj, const char *name) {
    if (!ml_h5_exists(f, obj)) return 0;
    htri_t e = H5Aexists_by_name(f->fid, obj, name, H5P_DEFAULT);
    if (e < 0) H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

static ml_status set_attr(ml_h5 *f, const char *obj, const char *name, hid_t ftype, hid_t mtype, const void *value) {
    ML_TRY(check_path(f, obj, 1));
    if (!f->writable) return ml_fail(ML_ERR_ARG, "%s: opened read-only, cannot set attribute '%s'", f->path, name);
    if (!ml_h5_exists(f, obj)) return ml_fail(ML_ERR_ARG, "%s: no object '%s' for attribute '%s'", f->path, obj, name);
    if (ml_h5_has_attr(f, obj, name) && H5Adelete_by_name(f->fid, obj, name, H5P_DEFAULT) < 0)
        return ml_fail(ML_ERR_IO, "%s: cannot replace attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
    ml_status s = ML_OK;
    hid_t space = H5Screate(H5S_SCALAR), a = -1;
    if (space >= 0) a = H5Acreate_by_name(f->fid, obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mtype, value) < 0)
        s = ml_fail(ML_ERR_IO, "%s: cannot write attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
    if (a >= 0 && H5Aclose(a) < 0 && s == ML_OK)
        s = ml_fail(ML_ERR_IO, "%s: cannot write attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
    if (space >= 0) H5Sclose(space);
    return s;
}

/* Open attribute `name` of `obj`, checking it holds exactly one value. */
static ml_status open_attr(ml_h5 *f, const char *obj, const char *name, hid_t *a, hid_t *ftype) {
    ML_TRY(check_path(f, obj, 1));
    if (!ml_h5_has_attr(f, obj, name)) return ml_fail(ML_ERR_FORMAT, "%s: '%s' has no attribute '%s'", f->path, obj, name);
    *a = H5Aopen_by_name(f->fid, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (*a < 0) return ml_fail(ML_ERR_FORMAT, "%s: cannot open attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
    hid_t space = H5Aget_space(*a);
    hssize_t npts = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    *ftype = npts == 1 ? H5Aget_type(*a) : -1;
    if (*ftype < 0) {
        H5Aclose(*a);
        H5Eclear2(H5E_DEFAULT);
        return ml_fail(ML_ERR_FORMAT, "%s: attribute '%s' of '%s' is not a single value", f->path, name, obj);
    }
    return ML_OK;
}

ml_status ml_h5_set_attr_str(ml_h5 *f, const char *obj, const char *name, const char *value) {
    if (!value) return ml_fail(ML_ERR_ARG, "%s: NULL string for attribute '%s'", f->path, name);
    size_t len = strlen(value);
    if (len > H5_MAX_ATTR_STR)
        return ml_fail(ML_ERR_ARG, "%s: attribute '%s': string of %zu bytes is too long", f->path, name, len);
    /* Fixed-length (the bytes live in the checksummed object header, not in a global heap), NUL-padded
     * UTF-8: h5py reads it as bytes. */
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, len ? len : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return ml_fail(ML_ERR_IO, "%s: HDF5 string type: %s", f->path, h5_err());
    }
    ml_status s = set_attr(f, obj, name, t, t, len ? value : "");
    H5Tclose(t);
    return s;
}

ml_status ml_h5_get_attr_str(ml_h5 *f, const char *obj, const char *name, char **value) {
    *value = NULL;
    hid_t a = -1, ft = -1;
    ML_TRY(open_attr(f, obj, name, &a, &ft));
    ml_status s = ML_OK;
    hid_t mt = -1;
    if (H5Tget_class(ft) != H5T_STRING) {
        s = ml_fail(ML_ERR_FORMAT, "%s: attribute '%s' of '%s' is not a string", f->path, name, obj);
    } else if (H5Tis_variable_str(ft) > 0) {
        mt = H5Tcopy(H5T_C_S1);
        char *p = NULL;
        if ((s = check_heaps(f)) != ML_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ml_last_error());
            s = ml_fail(s, "%s (reading attribute '%s' of '%s')", msg, name, obj);
        }
        else if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(ft)) < 0 ||
            H5Aread(a, mt, &p) < 0)
            s = ml_fail(ML_ERR_FORMAT, "%s: cannot read attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
        else {
            *value = strdup(p ? p : "");
            if (p) H5free_memory(p);
            if (!*value) s = ml_fail(ML_ERR_NOMEM, "out of memory");
        }
    } else {
        size_t size = H5Tget_size(ft);
        char *buf = size && size <= H5_MAX_ATTR_STR ? calloc(size + 1, 1) : NULL;
        mt = H5Tcopy(ft);
        if (!buf) s = ml_fail(ML_ERR_FORMAT, "%s: attribute '%s' of '%s': bad string size %zu", f->path, name, obj, size);
        else if (mt < 0 || H5Aread(a, mt, buf) < 0)
            s = ml_fail(ML_ERR_FORMAT, "%s: cannot read attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
        if (s == ML_OK) {
            if (H5Tget_strpad(ft) == H5T_STR_SPACEPAD) { /* Fortran-style padding */
                size_t n = strlen(buf);
                while (n > 0 && buf[n - 1] == ' ') buf[--n] = 0;
            }
            *value = buf;
        } else
            free(buf);
    }
    if (mt >= 0) H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return s;
}

static ml_status get_attr_num(ml_h5 *f, const char *obj, const char *name, H5T_class_t want, hid_t mtype, void *out) {
    hid_t a = -1, ft = -1;
    ML_TRY(open_attr(f, obj, name, &a, &ft));
    ml_status s = ML_OK;
    if (H5Tget_class(ft) != want)
        s = ml_fail(ML_ERR_FORMAT, "%s: attribute '%s' of '%s' is not %s", f->path, name, obj,
                    want == H5T_INTEGER ? "an integer" : "a floating-point number");
    else if (H5Aread(a, mtype, out) < 0)
        s = ml_fail(ML_ERR_FORMAT, "%s: cannot read attribute '%s' of '%s': %s", f->path, name, obj, h5_err());
    H5Tclose(ft);
    H5Aclose(a);
    return s;
}

ml_status ml_h5_set_attr_i64(ml_h5 *f, const char *obj, const char *name, int64_t value) {
    return set_attr(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}
ml_status ml_h5_get_attr_i64(ml_h5 *f, const char *obj, const char *name, int64_t *value) {
    return get_attr_num(f, obj, name, H5T_INTEGER, H5T_NATIVE_INT64, value);
}
ml_status ml_h5_set_attr_f64(ml_h5 *f, const char *obj, const char *name, double value) {
    return set_attr(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}
ml_status ml_h5_get_attr_f64(ml_h5 *f, const char *obj, const char *name, double *value) {
    return get_attr_num(f, obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, value);
}

/* ---------------- zstd filter and datasets that grow by rows ---------------- */

/* One chunk = one zstd frame with its content size (the registered filter 32015's stream format). */
static size_t zstd_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                          size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long n = ZSTD_getFrameContentSize(*buf, nbytes);
        if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > ((size_t)1 << 40)) return 0;
        void *out = H5allocate_memory(n ? (size_t)n : 1, 0);
        if (!out) return 0;
        size_t got = ZSTD_decompress(out, (size_t)n, *buf, nbytes);
        if (ZSTD_isError(got) || got != n) {
            H5free_memory(out);
            return 0;
        }
        H5free_memory(*buf);
        *buf = out;
        *buf_size = (size_t)n;
        return got;
    }
    int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
    if (level < 1 || level > ZSTD_maxCLevel()) level = 3;
    size_t cap = ZSTD_compressBound(nbytes);
    void *out = H5allocate_memory(cap, 0);
    if (!out) return 0;
    size_t got = ZSTD_compress(out, cap, *buf, nbytes, level);
    if (ZSTD_isError(got)) {
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return got;
}

static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static herr_t zstd_registered = -1;
static void zstd_register_once(void) {
    static const H5Z_class2_t cls = {H5Z_CLASS_T_VERS, (H5Z_filter_t)ML_H5_FILTER_ZSTD, 1, 1,
                                     "Zstandard compression: http://www.zstd.net", NULL, NULL, zstd_filter};
    h5_quiet();
    zstd_registered = H5Zregister(&cls);
}

ml_status ml_h5_register_zstd(void) {
    pthread_once(&zstd_once, zstd_register_once);
    if (zstd_registered < 0) return ml_fail(ML_ERR_IO, "cannot register the zstd HDF5 filter: %s", h5_err());
    return ML_OK;
}

/* File and memory types of a dtype (the caller closes them when *owned). F16 is a binary16 type built
 * from float32 as h5py does; memory holds the same bit patterns (no conversion). */
static ml_status row_types(const ml_h5 *f, ml_h5_dtype dt, hid_t *ftype, hid_t *mtype, size_t *elem, int *owned) {
    *owned = 0;
    switch (dt) {
    case ML_H5_F32: *ftype = H5T_IEEE_F32LE, *mtype = H5T_NATIVE_FLOAT, *elem = 4; return ML_OK;
    case ML_H5_F64: *ftype = H5T_IEEE_F64LE, *mtype = H5T_NATIVE_DOUBLE, *elem = 8; return ML_OK;
    case ML_H5_U8: *ftype = H5T_STD_U8LE, *mtype = H5T_NATIVE_UINT8, *elem = 1; return ML_OK;
    case ML_H5_I64: *ftype = H5T_STD_I64LE, *mtype = H5T_NATIVE_INT64, *elem = 8; return ML_OK;
    case ML_H5_U64: *ftype = H5T_STD_U64LE, *mtype = H5T_NATIVE_UINT64, *elem = 8; return ML_OK;
    case ML_H5_I32: *ftype = H5T_STD_I32LE, *mtype = H5T_NATIVE_INT32, *elem = 4; return ML_OK;
    case ML_H5_U32: *ftype = H5T_STD_U32LE, *mtype = H5T_NATIVE_UINT32, *elem = 4; return ML_OK;
    case ML_H5_F16: {
        hid_t t = H5Tcopy(H5T_IEEE_F32LE);
        if (t < 0 || H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
            if (t >= 0) H5Tclose(t);
            return ml_fail(ML_ERR_IO, "%s: cannot build the float16 type: %s", f->path, h5_err());
        }
        *ftype = *mtype = t;
        *elem = 2;
        *owned = 1;
        return ML_OK;
    }
    default: return ml_fail(ML_ERR_ARG, "%s: unsupported dtype for a row dataset", f->path);
    }
}

ml_status ml_h5_create_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int ndim_row, const int64_t *row_shape,
                            int64_t chunk_rows, int zstd_level) {
    ML_TRY(check_path(f, path, 0));
    if (!f->writable) return ml_fail(ML_ERR_ARG, "%s: opened read-only, cannot write '%s'", f->path, path);
    if (ndim_row < 0 || ndim_row >= ML_H5_MAX_DIMS || chunk_rows < 1 || zstd_level < 0 || zstd_level > 22)
        return ml_fail(ML_ERR_ARG, "%s: dataset '%s': bad rank %d, chunk %lld or zstd level %d", f->path, path,
                       ndim_row, (long long)chunk_rows, zstd_level);
    if (ml_h5_exists(f, path)) return ml_fail(ML_ERR_ARG, "%s: dataset '%s' already exists", f->path, path);
    if (zstd_level > 0) ML_TRY(ml_h5_register_zstd());
    hsize_t dims[ML_H5_MAX_DIMS], maxd[ML_H5_MAX_DIMS], chunk[ML_H5_MAX_DIMS];
    dims[0] = 0, maxd[0] = H5S_UNLIMITED, chunk[0] = (hsize_t)chunk_rows;
    for (int i = 0; i < ndim_row; i++) {
        if (row_shape[i] < 1)
            return ml_fail(ML_ERR_ARG, "%s: dataset '%s': dimension %lld", f->path, path, (long long)row_shape[i]);
        dims[i + 1] = maxd[i + 1] = chunk[i + 1] = (hsize_t)row_shape[i];
    }
    hid_t ftype, mtype;
    size_t elem;
    int owned;
    ML_TRY(row_types(f, dtype, &ftype, &mtype, &elem, &owned));
    ml_status s = ML_OK;
    hid_t space = H5Screate_simple(ndim_row + 1, dims, maxd), dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = make_lcpl(),
          ds = -1;
    unsigned cd[1] = {(unsigned)zstd_level};
    if (space < 0 || dcpl < 0 || lcpl < 0 || H5Pset_chunk(dcpl, ndim_row + 1, chunk) < 0 ||
        (zstd_level > 0 && H5Pset_filter(dcpl, ML_H5_FILTER_ZSTD, H5Z_FLAG_MANDATORY, 1, cd) < 0) ||
        (ds = H5Dcreate2(f->fid, path, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0)
        s = ml_fail(ML_ERR_IO, "%s: cannot create dataset '%s': %s", f->path, path, h5_err());
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (owned) H5Tclose(ftype);
    return s;
}

/* Select rows [row0, row0+n) of an open dataset: fills the file and memory spaces. */
static ml_status select_rows(ml_h5 *f, const char *path, hid_t ds, int64_t row0, int64_t n, int grow, hid_t *fspace,
                             hid_t *mspace) {
    *fspace = *mspace = -1;
    hid_t sp = H5Dget_space(ds);
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[ML_H5_MAX_DIMS], start[ML_H5_MAX_DIMS] = {0};
    if (nd < 1 || nd > ML_H5_MAX_DIMS || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        if (sp >= 0) H5Sclose(sp);
        H5Eclear2(H5E_DEFAULT);
        return ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' is not an array of rows", f->path, path);
    }
    if (grow) {
        H5Sclose(sp);
        row0 = (int64_t)dims[0];
        dims[0] += (hsize_t)n;
        if (H5Dset_extent(ds, dims) < 0 || (sp = H5Dget_space(ds)) < 0)
            return ml_fail(ML_ERR_IO, "%s: cannot extend dataset '%s': %s", f->path, path, h5_err());
    } else if (row0 < 0 || n < 0 || (uint64_t)row0 + (uint64_t)n > dims[0]) {
        H5Sclose(sp);
        return ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' has %llu rows, rows [%lld, %lld) asked for", f->path, path,
                       (unsigned long long)dims[0], (long long)row0, (long long)(row0 + n));
    }
    start[0] = (hsize_t)row0;
    dims[0] = (hsize_t)n;
    if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, dims, NULL) < 0 ||
        (*mspace = H5Screate_simple(nd, dims, NULL)) < 0) {
        H5Sclose(sp);
        return ml_fail(ML_ERR_IO, "%s: dataset '%s': %s", f->path, path, h5_err());
    }
    *fspace = sp;
    return ML_OK;
}

static ml_status rows_io(ml_h5 *f, const char *path, ml_h5_dtype dtype, int64_t row0, int64_t n, void *buf, int write) {
    if (write && !f->writable) return ml_fail(ML_ERR_ARG, "%s: opened read-only, cannot write '%s'", f->path, path);
    hid_t ds = -1;
    ML_TRY(open_ds(f, path, &ds));
    int nd;
    int64_t sh[ML_H5_MAX_DIMS];
    ml_h5_dtype dt;
    ml_status s = ds_info(f, path, ds, &nd, sh, &dt);
    if (s == ML_OK && dt != dtype)
        s = ml_fail(ML_ERR_FORMAT, "%s: dataset '%s' holds %s, expected %s", f->path, path, dtype_name(dt),
                    dtype_name(dtype));
    hid_t ftype = -1, mtype = -1, fsp = -1, msp = -1;
    size_t elem;
    int owned = 0;
    if (s == ML_OK) s = row_types(f, dtype, &ftype, &mtype, &elem, &owned);
    if (s == ML_OK && n > 0) s = select_rows(f, path, ds, row0, n, write, &fsp, &msp);
    if (s == ML_OK && n > 0) {
        herr_t r = write ? H5Dwrite(ds, mtype, msp, fsp, H5P_DEFAULT, buf) : H5Dread(ds, mtype, msp, fsp, H5P_DEFAULT, buf);
        if (r < 0)
            s = ml_fail(write ? ML_ERR_IO : ML_ERR_FORMAT, "%s: cannot %s rows of dataset '%s': %s", f->path,
                        write ? "write" : "read", path, h5_err());
    }
    if (fsp >= 0) H5Sclose(fsp);
    if (msp >= 0) H5Sclose(msp);
    if (owned) H5Tclose(ftype);
    if (H5Dclose(ds) < 0 && s == ML_OK) s = ml_fail(ML_ERR_IO, "%s: dataset '%s': %s", f->path, path, h5_err());
    H5Eclear2(H5E_DEFAULT);
    return s;
}

ml_status ml_h5_append_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int64_t n_rows, const void *data) {
    if (n_rows < 0) return ml_fail(ML_ERR_ARG, "%s: dataset '%s': negative row count", f->path, path);
    return rows_io(f, path, dtype, 0, n_rows, (void *)data, 1);
}

ml_status ml_h5_read_rows(ml_h5 *f, const char *path, ml_h5_dtype dtype, int64_t row0, int64_t n_rows, void *out) {
    /* reading a filtered chunk needs the filter registered in this process */
    ML_TRY(ml_h5_register_zstd());
    return rows_io(f, path, dtype, row0, n_rows, out, 0);
}
