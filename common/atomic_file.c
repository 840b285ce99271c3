#include "common/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
    ml_status s = ml_atomic_register_cleanup(f->tmp_path);
    if (s != ML_OK) {
        if (f->fp) fclose(f->fp), f->fp = NULL;
        unlink(f->tmp_path);
    }
    return s;
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

/* Temporaries in flight, for the signal path: a list that only grows. A node is filled before it is
 * published (an atomic store of the head), never freed and reused once empty, so the signal handler
 * can walk the list at any moment without a lock; register/unregister take a mutex among threads. */
typedef struct pending_node {
    struct pending_node *next;
    _Atomic int used; /* the path is written while 0, so the handler never reads a half-written one */
    char path[4096];
} pending_node;
static pending_node *_Atomic pending_head;
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

ml_status ml_atomic_register_cleanup(const char *tmp_path) {
    pthread_mutex_lock(&pending_lock);
    pending_node *n = atomic_load(&pending_head);
    while (n && n->used) n = n->next;
    if (!n) {
        n = calloc(1, sizeof *n);
        if (!n) { /* a temporary that a signal could not remove: refuse to start the write */
            pthread_mutex_unlock(&pending_lock);
            return ml_fail(ML_ERR_NOMEM, "out of memory registering %s for cleanup", tmp_path);
        }
        snprintf(n->path, sizeof n->path, "%s", tmp_path);
        atomic_store(&n->used, 1);
        n->next = atomic_load(&pending_head);
        atomic_store(&pending_head, n);
    } else {
        snprintf(n->path, sizeof n->path, "%s", tmp_path);
        atomic_store(&n->used, 1);
    }
    pthread_mutex_unlock(&pending_lock);
    return ML_OK;
}

void ml_atomic_unregister_cleanup(const char *tmp_path) {
    pthread_mutex_lock(&pending_lock);
    for (pending_node *n = atomic_load(&pending_head); n; n = n->next)
        if (n->used && strcmp(n->path, tmp_path) == 0) {
            atomic_store(&n->used, 0);
            break;
        }
    pthread_mutex_unlock(&pending_lock);
}

/* Called from the signal path (see common/signals.c): unlink is async-signal-safe. */
void ml_atomic_cleanup_all(void) {
    for (pending_node *n = atomic_load(&pending_head); n; n = n->next)
        if (atomic_load(&n->used)) unlink(n->path);
}

/* ---------------------------------------------------------------- temporaries of dead writers */

/* "<prefix>...<.tmp.>PID" with PID all digits: the PID, else 0. */
static long tmp_owner(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    const char *t = strstr(name + pl, ".tmp.");
    if (!t) return 0;
    const char *d = t + 5;
    while (strstr(d, ".tmp.")) d = strstr(d, ".tmp.") + 5; /* the last ".tmp." */
    if (!*d) return 0;
    char *end;
    errno = 0;
    long pid = strtol(d, &end, 10);
    if (*end || errno || pid <= 0) return 0;
    return pid;
}

ml_status ml_atomic_remove_stale(const char *dir, const char *prefix, int *removed) {
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return ML_OK;
        return ml_fail(ML_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    }
    ml_status s = ML_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_owner(e->d_name, prefix);
        if (pid == 0 || pid == (long)getpid()) continue;
        /* alive (or not ours to signal: EPERM) means someone may still be writing it */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) {
            if (removed) (*removed)++;
        } else if (errno != ENOENT && s == ML_OK) {
            s = ml_fail(ML_ERR_IO, "cannot remove the stale temporary %s: %s", path, strerror(errno));
        }
    }
    closedir(d);
    return s;
}
