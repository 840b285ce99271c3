#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

/* A message is one line: line breaks from a library's text (HDF5's, a file name) become spaces. */
static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

ml_status ml_fail(ml_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    one_line(last_error);
    return code;
}

ml_status ml_fail_context(ml_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    one_line(last_error);
    return code;
}

const char *ml_last_error(void) { return last_error; }

const char *ml_status_name(ml_status s) {
    switch (s) {
    case ML_OK: return "ok";
    case ML_ERR_ARG: return "bad argument";
    case ML_ERR_IO: return "i/o error";
    case ML_ERR_FORMAT: return "bad file format";
    case ML_ERR_CONFIG: return "bad config";
    case ML_ERR_RANGE: return "out of range";
    case ML_ERR_NOMEM: return "out of memory";
    case ML_ERR_UNSUPPORTED: return "unsupported";
    case ML_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}
