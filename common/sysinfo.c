#include "common/sysinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);

const char *ml_blas_corename(void) { return openblas_get_corename(); }

void ml_blas_describe(char *buf, size_t n) {
    snprintf(buf, n, "BLAS: %s; kernel %s; %d BLAS threads, %d OpenMP threads", openblas_get_config(),
             openblas_get_corename(), openblas_get_num_threads(), omp_get_max_threads());
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

const char *ml_blas_kernel_warning(void) {
    static char msg[512];
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && cpu_has_avx512() && (!strcasecmp(forced, "Haswell") || !strcasecmp(forced, "Sandybridge") ||
                                       !strcasecmp(forced, "Zen") || !strcasecmp(forced, "Prescott"))) {
        snprintf(msg, sizeof msg,
                 "note: OPENBLAS_CORETYPE=%s forces AVX2-or-older GEMM kernels on this AVX-512 CPU (about half "
                 "the sgemm rate); unset it or set OPENBLAS_CORETYPE=SkylakeX for full speed",
                 forced);
        return msg;
    }
    /* OpenBLAS 0.3.21 (Debian 12) does not know Intel's 5th-generation Xeon (family 6 model 207) and falls back
     * to its SSE3 Prescott kernel there: 30-50 GFLOP/s against 246 with SkylakeX, measured on 2 cores. */
    const char *core = openblas_get_corename();
    if (!forced && core && cpu_has_avx512() &&
        (!strcasecmp(core, "Prescott") || !strcasecmp(core, "Core2") || !strcasecmp(core, "Nehalem") ||
         !strcasecmp(core, "Penryn") || !strcasecmp(core, "Dunnington") || !strcasecmp(core, "Atom"))) {
        snprintf(msg, sizeof msg,
                 "note: OpenBLAS does not know this AVX-512 CPU and chose its %s kernel (about 1/5 of the sgemm "
                 "rate); set OPENBLAS_CORETYPE=SkylakeX for full speed",
                 core);
        return msg;
    }
    return NULL;
}

int ml_num_threads(void) { return omp_get_max_threads(); }

double ml_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t ml_peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

uint64_t ml_mem_available_bytes(void) {
    uint64_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (uint64_t)kb * 1024;
                break;
            }
        fclose(f);
    }
    if (!avail) {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        avail = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    }
    const char *lim = getenv("ML_MEMORY_LIMIT_MB");
    if (lim && *lim) {
        char *end;
        unsigned long long mb = strtoull(lim, &end, 10);
        if (*end == 0 && mb > 0 && mb < (UINT64_MAX >> 20) && (uint64_t)mb << 20 < avail) avail = (uint64_t)mb << 20;
    }
    return avail;
}

ml_status ml_check_memory(uint64_t bytes, const char *what) {
    uint64_t avail = ml_mem_available_bytes();
    if (bytes <= avail) return ML_OK;
    return ml_fail(ML_ERR_NOMEM, "%s needs %.2f GiB, only %.2f GiB of memory available", what,
                   (double)bytes / (1u << 30), (double)avail / (1u << 30));
}
