/* Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c): invariants, temporary files for readers that
 * only take a path, and re-sealing the checksum block of our HDF5 files so that mutants get past it. */
#ifndef ML_FUZZ_UTIL_H
#define ML_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An invariant of accepted input; a violation aborts, which libFuzzer (and the replay driver) report. */
#define FUZZ_ASSERT(cond)     \
    do {                      \
        if (!(cond)) abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fuzzers run with a small memory budget: the library's memory checks (common/sysinfo.h) honour it. */
static inline void fuzz_limit_memory(void) { setenv("ML_MEMORY_LIMIT_MB", "1024", 0); }

static char fuzz_dir_path[256];

/* Remove the scratch folder and its files at exit. */
static void fuzz_dir_cleanup(void) {
    DIR *d = opendir(fuzz_dir_path);
    if (!d) return;
    struct dirent *e;
    char p[768];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(fuzz_dir_path);
}

/* A per-process scratch folder in /dev/shm (else $TMPDIR or /tmp), made once, removed at exit. */
static inline const char *fuzz_dir(void) {
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        const char *base = "/dev/shm";
        struct stat sb;
        if (stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(base, W_OK) != 0) {
            base = getenv("TMPDIR");
            if (!base || !base[0]) base = "/tmp";
        }
        snprintf(dir, sizeof fuzz_dir_path, "%s/mlfuzz-%ld", base, (long)getpid());
        mkdir(dir, 0700);
        atexit(fuzz_dir_cleanup);
    }
    return dir;
}

/* dir/name into a static rotating buffer. */
static inline const char *fuzz_path(const char *name) {
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", fuzz_dir(), name);
    return b;
}

/* Write data to path (truncating); 0 on success. */
static inline int fuzz_write(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return close(fd);
}

/* CRC-32C (Castagnoli, reflected), as formats/h5.c's checksum block uses. */
static inline uint32_t fuzz_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return crc;
}

/* If buf looks like one of our HDF5 files (512-byte block starting "MLH5CRC1"), rewrite the block's size and
 * checksums to match the (mutated) contents, so the file reaches HDF5 and our readers. Returns 1 if done. */
static inline int fuzz_h5_reseal(uint8_t *buf, size_t n) {
    if (n < 512 || memcmp(buf, "MLH5CRC1", 8) != 0) return 0;
    uint64_t size = n;
    memcpy(buf + 8, &size, 8);
    uint32_t data = ~fuzz_crc32c(~0u, buf + 512, n - 512);
    memcpy(buf + 16, &data, 4);
    uint32_t self = fuzz_crc32c(~0u, buf, 20);
    self = ~fuzz_crc32c(self, buf + 24, 512 - 24);
    memcpy(buf + 20, &self, 4);
    return 1;
}

#endif
