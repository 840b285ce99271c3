/* Write-then-rename output files: a reader never sees a half-written file, and a failed or
 * interrupted writer leaves nothing behind. Usage:
 *     ml_atomic_file f; ML_TRY(ml_atomic_begin(&f, "out.h5"));
 *     ... write to f.tmp_path (or f.fp) ...
 *     ML_TRY(ml_atomic_commit(&f));      // fsync + rename + fsync(dir); on failure removes tmp
 * or ml_atomic_abort(&f) to discard. */
#ifndef ML_ATOMIC_FILE_H
#define ML_ATOMIC_FILE_H

#include <stdio.h>

#include "common/status.h"

typedef struct {
    char final_path[4096];
    char tmp_path[4096];
    FILE *fp; /* opened "wb" on tmp_path when begin is asked for a stream, else NULL */
} ml_atomic_file;

/* Prepare a temporary sibling of `path`; with `open_stream` also open it for writing. */
ml_status ml_atomic_begin(ml_atomic_file *f, const char *path, int open_stream);
/* Close the stream (if any), fsync the temporary, rename over the final path, fsync the directory. */
ml_status ml_atomic_commit(ml_atomic_file *f);
/* Close and delete the temporary. Safe to call twice. */
void ml_atomic_abort(ml_atomic_file *f);

/* fsync a file by path (used after a library such as HDF5 wrote and closed it). */
ml_status ml_fsync_path(const char *path);

/* Read a whole file into a malloc'd buffer (NUL-terminated for convenience). */
ml_status ml_read_file(const char *path, char **data, size_t *size);

/* Remove the temporaries of dead writers in `dir`: files named "<prefix>*.tmp.PID" whose PID is no
 * running process (a writer killed with SIGKILL, or a crash, leaves its temporary behind). A live
 * PID's file is left alone. Counts the removed files in *removed (may be NULL). A missing directory
 * is not an error. PIDs are of this machine: do not share one directory between machines' writers. */
ml_status ml_atomic_remove_stale(const char *dir, const char *prefix, int *removed);

/* Register `tmp_path` to be removed if the process dies from SIGINT/SIGTERM before commit. Any
 * number may be registered at once (ML_ERR_NOMEM if memory runs out). ml_atomic_begin registers its
 * temporary itself. */
ml_status ml_atomic_register_cleanup(const char *tmp_path);
void ml_atomic_unregister_cleanup(const char *tmp_path);

#endif
