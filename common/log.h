/* The library prints nothing: its log lines and progress reports go to callbacks that the program
 * installs (the CLI prints them). Without a sink, log lines are dropped.
 *   ml_log(ML_LOG_INFO, "model %s: ...", ...)   one line, no trailing newline
 * Progress of long work (tokenizing, pass-key evaluation, teacher logits, BPE training) is reported
 * through an ml_progress struct in each task's arguments: numbers plus the line the CLI shows. */
#ifndef ML_LOG_H
#define ML_LOG_H

typedef enum {
    ML_LOG_DEBUG = 0,
    ML_LOG_INFO,  /* what a run is doing (the CLI prints these on stdout) */
    ML_LOG_WARN,  /* something the user should know (stderr) */
    ML_LOG_ERROR, /* an error that does not stop the work (stderr) */
} ml_log_level;

typedef void (*ml_log_fn)(ml_log_level level, const char *line, void *user);

/* Install the process's log sink (NULL: drop log lines) and the lowest level passed to it. */
void ml_log_set_sink(ml_log_fn fn, void *user, ml_log_level min_level);
/* Format one line and hand it to the sink (lines are cut at 4 KiB). */
void ml_log(ml_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ml_log_level_name(ml_log_level level);

/* One progress report of a long task. */
typedef struct {
    const char *task; /* "tokenize", "passkey", "teacher-logits", "bpe-train" */
    double done, total; /* units of work (bytes, prompts, batches, merges); total 0 when unknown */
    double rate;        /* units per second */
    double eta_s;       /* seconds left (0 when unknown) */
    int final;          /* the task's last report */
    const char *line;   /* the report as one line, as the CLI shows it */
} ml_progress_report;

typedef struct {
    void (*report)(const ml_progress_report *r, void *user); /* NULL: no reports */
    void *user;
} ml_progress;

/* Call p->report when set. */
void ml_progress_emit(const ml_progress *p, const ml_progress_report *r);

#endif
