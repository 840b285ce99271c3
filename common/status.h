/* Status codes and the last-error message.
 * Library functions return ml_status; on failure they record one line saying what and where
 * (ml_set_error), and the CLI prints it and exits non-zero. */
#ifndef ML_STATUS_H
#define ML_STATUS_H

typedef enum {
    ML_OK = 0,
    ML_ERR_ARG,         /* bad argument or option value */
    ML_ERR_IO,          /* open/read/write/rename failed */
    ML_ERR_FORMAT,      /* a file is not what it claims to be (truncated, corrupt, lying header) */
    ML_ERR_CONFIG,      /* invalid or inconsistent model configuration */
    ML_ERR_RANGE,       /* a value out of range (token id, position, size) */
    ML_ERR_NOMEM,       /* allocation failed */
    ML_ERR_UNSUPPORTED, /* valid input the tool cannot handle, with the reason in the message */
    ML_ERR_INTERRUPTED, /* stopped by a signal; state was saved */
} ml_status;

/* Record the error message (printf-style) and return `code`, so callers can write
 * `return ml_fail(ML_ERR_IO, "cannot open %s: %s", path, strerror(errno));` */
ml_status ml_fail(ml_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of the most recent failure on this thread ("" if none). */
const char *ml_last_error(void);

/* Prefix the current message with context ("while loading X: <old message>"). Returns `code`. */
ml_status ml_fail_context(ml_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *ml_status_name(ml_status s);

/* Propagate a failing status. */
#define ML_TRY(expr)                     \
    do {                                 \
        ml_status ml_try_s_ = (expr);    \
        if (ml_try_s_ != ML_OK) return ml_try_s_; \
    } while (0)

#endif
