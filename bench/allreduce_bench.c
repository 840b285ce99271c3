/* All-reduce bandwidth of the trainer's gradient reducer (common/dist.h) between the ranks of one job:
 *   mpirun -np 2 build/allreduce_bench [MAX_MIB]
 * For each size (1 MiB .. MAX_MIB, default 512) one bucket of floats is reduced with MPI_Iallreduce (SUM)
 * and with the deterministic reduction (slices gathered and added in rank order, then allgathered);
 * the median of 5 rounds after one warm-up. algbw = bytes / time; busbw = algbw * 2 (N-1) / N, the
 * rate each rank's link carries in a ring all-reduce (comparable across N). Rank 0 prints a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dist.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (ml_dist_init() != ML_OK) {
        fprintf(stderr, "allreduce_bench: %s\n", ml_last_error());
        return 1;
    }
    const int R = ml_dist_size(), me = ml_dist_rank();
    const size_t max_mib = argc > 1 ? (size_t)atol(argv[1]) : 512;
    if (me == 0) printf("ranks %d\n| MiB | mode | ms | algbw GB/s | busbw GB/s |\n|---|---|---|---|---|\n", R);
    for (size_t mib = 1; mib <= max_mib; mib *= 4) {
        const size_t n = mib * 1048576 / sizeof(float);
        float *buf = malloc(n * sizeof(float));
        if (!buf) return 1;
        for (int det = 0; det < 2; det++) {
            ml_dist_bucket b = {0, n};
            ml_dist_reducer *r;
            if (ml_dist_reducer_create(&r, buf, n, &b, 1, det) != ML_OK) {
                fprintf(stderr, "allreduce_bench: %s\n", ml_last_error());
                return 1;
            }
            double t[6];
            for (int k = 0; k < 6; k++) {
                for (size_t i = 0; i < n; i++) buf[i] = (float)(i % 7) * 0.25f;
                if (ml_dist_barrier("bench") != ML_OK) return 1;
                double t0 = now_s();
                if (ml_dist_reducer_finish(r) != ML_OK) {
                    fprintf(stderr, "allreduce_bench: %s\n", ml_last_error());
                    ml_dist_abort(1);
                }
                t[k] = now_s() - t0;
            }
            qsort(t + 1, 5, sizeof(double), cmp_d);
            double s = t[3], alg = (double)(n * sizeof(float)) / s / 1e9;
            if (me == 0)
                printf("| %zu | %s | %.2f | %.2f | %.2f |\n", mib, det ? "deterministic" : "MPI_SUM", s * 1e3, alg,
                       alg * 2.0 * (R - 1) / R);
            ml_dist_reducer_free(r);
        }
        free(buf);
    }
    ml_dist_finalize();
    return 0;
}
