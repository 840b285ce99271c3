/* What the machine gives us: BLAS kernel, threads, wall time, peak memory. */
#ifndef ML_SYSINFO_H
#define ML_SYSINFO_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* e.g. "OpenBLAS 0.3.21 kernel Haswell, 2 threads" */
void ml_blas_describe(char *buf, size_t n);
/* The OpenBLAS core name in use ("Haswell", "SkylakeX", "Zen", ...). */
const char *ml_blas_corename(void);
/* A one-line warning when OpenBLAS runs a kernel slower than this CPU supports: forced by OPENBLAS_CORETYPE, or
 * chosen because OpenBLAS does not know the CPU model (NULL if there is nothing to say). */
const char *ml_blas_kernel_warning(void);
/* Threads used by OpenMP loops and by OpenBLAS (kept equal: never oversubscribe). */
int ml_num_threads(void);
double ml_now_seconds(void);
/* Peak resident set size of this process in bytes. */
size_t ml_peak_rss_bytes(void);
/* Memory this process may still allocate, in bytes: MemAvailable of /proc/meminfo (else free physical
 * pages), capped by the environment variable ML_MEMORY_LIMIT_MB when set (the fuzzers set it). */
uint64_t ml_mem_available_bytes(void);
/* ML_OK if `bytes` more fit in ml_mem_available_bytes(), else ML_ERR_NOMEM with a one-line message
 * "<what> needs X GiB, only Y GiB of memory available". */
ml_status ml_check_memory(uint64_t bytes, const char *what);

#endif
