/* What the machine gives us: BLAS kernel, threads, wall time, peak memory. */
#ifndef ML_SYSINFO_H
#define ML_SYSINFO_H

#include <stddef.h>

/* e.g. "OpenBLAS 0.3.21 kernel Haswell, 2 threads" */
void ml_blas_describe(char *buf, size_t n);
/* The OpenBLAS core name in use ("Haswell", "SkylakeX", "Zen", ...). */
const char *ml_blas_corename(void);
/* A one-line warning when OPENBLAS_CORETYPE forces a kernel slower than this CPU supports
 * (NULL if there is nothing to say). */
const char *ml_blas_kernel_warning(void);
/* Threads used by OpenMP loops and by OpenBLAS (kept equal: never oversubscribe). */
int ml_num_threads(void);
double ml_now_seconds(void);
/* Peak resident set size of this process in bytes. */
size_t ml_peak_rss_bytes(void);

#endif
