#include "common/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ml_status ml_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ml_fail(ML_ERR_IO, "cannot open %s for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return ml_fail(ML_ERR_IO, "fsync %s: %s", path, strerror(errno));
    return ML_OK;
}

static void fsync_parent_dir(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse directory fsync */
        close(fd);
    }
}

ml_status ml_atomic_begin(ml_atomic_file *f, const char *path, int open_stream) {
    memset(f, 0, sizeof *f);
    if (strlen(path) + 32 >= sizeof f->tmp_path) return ml_fail(ML_ERR_ARG, "path too long: %s", path);
    snprintf(f->final_path, sizeof f->final_path, "%s", path);
    snprintf(f->tmp_path, sizeof f->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    if (open_stream) {
        f->fp = fopen(f->tmp_path, "wb");
        if (!f->fp) return ml_fail(ML_ERR_IO, "cannot create %s: %s", f->tmp_path, strerror(errno));
    }
    ml_atomic_register_cleanup(f->tmp_path);
    return ML_OK;
}

ml_status ml_atomic_commit(ml_atomic_file *f) {
    if (f->fp) {
        int bad = fflush(f->fp) != 0 || ferror(f->fp);
        bad |= fsync(fileno(f->fp)) != 0;
        bad |= fclose(f->fp) != 0;
        f->fp = NULL;
        if (bad) {
            ml_status s = ml_fail(ML_ERR_IO, "cannot write %s: %s", f->final_path, strerror(errno));
            ml_atomic_abort(f);
            return s;
        }
    } else {
        ml_status s = ml_fsync_path(f->tmp_path);
        if (s != ML_OK) {
            ml_atomic_abort(f);
            return s;
        }
    }
    if (rename(f->tmp_path, f->final_path) != 0) {
        ml_status s = ml_fail(ML_ERR_IO, "cannot rename %s to %s: %s", f->tmp_path, f->final_path, strerror(errno));
        ml_atomic_abort(f);
        return s;
    }
    ml_atomic_unregister_cleanup(f->tmp_path);
    fsync_parent_dir(f->final_path);
    f->tmp_path[0] = 0;
    return ML_OK;
}

void ml_atomic_abort(ml_atomic_file *f) {
    if (f->fp) {
        fclose(f->fp);
        f->fp = NULL;
    }
    if (f->tmp_path[0]) {
        unlink(f->tmp_path);
        ml_atomic_unregister_cleanup(f->tmp_path);
        f->tmp_path[0] = 0;
    }
}

ml_status ml_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return ml_fail(ML_ERR_IO, "%s is not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0) {
        fclose(fp);
        return ml_fail(ML_ERR_IO, "cannot seek %s", path);
    }
    long n = ftell(fp);
    if (n < 0) {
        fclose(fp);
        return ml_fail(ML_ERR_IO, "cannot size %s (is it a directory?)", path);
    }
    rewind(fp);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(fp);
        return ml_fail(ML_ERR_NOMEM, "out of memory reading %s (%ld bytes)", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    if (got != (size_t)n) {
        free(buf);
        return ml_fail(ML_ERR_IO, "short read on %s", path);
    }
    buf[n] = 0;
    *data = buf;
    *size = (size_t)n;
    return ML_OK;
}

/* A small fixed table: at most a handful of outputs are in flight at once. */
#define ML_MAX_PENDING 16
static char pending[ML_MAX_PENDING][4096];

void ml_atomic_register_cleanup(const char *tmp_path) {
    for (int i = 0; i < ML_MAX_PENDING; i++)
        if (!pending[i][0]) {
            snprintf(pending[i], sizeof pending[i], "%s", tmp_path);
            return;
        }
}

void ml_atomic_unregister_cleanup(const char *tmp_path) {
    for (int i = 0; i < ML_MAX_PENDING; i++)
        if (pending[i][0] && strcmp(pending[i], tmp_path) == 0) pending[i][0] = 0;
}

/* Called from the signal path (see common/signals.c): unlink is async-signal-safe. */
void ml_atomic_cleanup_all(void) {
    for (int i = 0; i < ML_MAX_PENDING; i++)
        if (pending[i][0]) unlink(pending[i]);
}
