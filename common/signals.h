/* Ctrl-C handling. A command whose long loop polls ml_stop_requested() declares it with
 * ml_signals_set_graceful(1): the first SIGINT/SIGTERM then only sets the flag (the trainer writes a
 * checkpoint and exits) and a second one ends the process. Every other command ends on the first signal,
 * after removing the temporary files of pending atomic writes, so no command ignores a Ctrl-C.
 * SIGXFSZ is ignored, so that a write beyond the file-size limit fails with EFBIG and is reported. */
#ifndef ML_SIGNALS_H
#define ML_SIGNALS_H

void ml_signals_install(void);
/* On: the caller polls ml_stop_requested() and stops by itself at the first signal. */
void ml_signals_set_graceful(int on);
/* Non-zero once a stop was requested. */
int ml_stop_requested(void);
/* The signal of the first stop request (SIGINT, SIGTERM; 0 when none or ml_request_stop). mpirun
 * ends a job whose rank died with SIGTERM: data-parallel waits give up at once on it (common/dist.c). */
int ml_stop_signal(void);
/* For tests: request a stop as if a signal arrived. */
void ml_request_stop(void);

#endif
