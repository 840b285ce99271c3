/* Ctrl-C handling: the first SIGINT/SIGTERM sets a flag that long loops poll (the trainer then
 * writes a checkpoint and exits); a second one removes pending temporary files and exits at once.
 * SIGXFSZ is ignored, so that a write beyond the file-size limit fails with EFBIG and is reported. */
#ifndef ML_SIGNALS_H
#define ML_SIGNALS_H

void ml_signals_install(void);
/* Non-zero once a stop was requested. */
int ml_stop_requested(void);
/* The signal of the first stop request (SIGINT, SIGTERM; 0 when none or ml_request_stop). mpirun
 * ends a job whose rank died with SIGTERM: data-parallel waits give up at once on it (common/dist.c). */
int ml_stop_signal(void);
/* For tests: request a stop as if a signal arrived. */
void ml_request_stop(void);

#endif
