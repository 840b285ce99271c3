#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

static ml_log_fn sink_;
static void *sink_user_;
static ml_log_level min_level_ = ML_LOG_INFO;

void ml_log_set_sink(ml_log_fn fn, void *user, ml_log_level min_level) {
    sink_ = fn;
    sink_user_ = user;
    min_level_ = min_level;
}

void ml_log(ml_log_level level, const char *fmt, ...) {
    if (!sink_ || level < min_level_) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sink_(level, line, sink_user_);
}

const char *ml_log_level_name(ml_log_level level) {
    static const char *const names[] = {"debug", "info", "warning", "error"};
    return level >= ML_LOG_DEBUG && level <= ML_LOG_ERROR ? names[level] : "?";
}

void ml_progress_emit(const ml_progress *p, const ml_progress_report *r) {
    if (p && p->report) p->report(r, p->user);
}
