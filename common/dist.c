/* Data-parallel communication (see dist.h): MPI when built with it and launched by mpirun, one rank
 * otherwise. Every wait is a polling loop with a timeout, so a dead or stuck rank ends the run with
 * one line instead of a hang. */
#include "common/dist.h"

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/signals.h"

#ifdef ML_HAVE_MPI
#include <mpi.h>
#endif

static int g_inited, g_rank, g_size = 1;
#ifdef ML_HAVE_MPI
static int g_mpi; /* MPI_Init was called here (and MPI_Finalize is owed) */
#endif
static double g_timeout = 300.0;
static int g_agreed_failure;

int ml_dist_failure_agreed(void) { return g_agreed_failure; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ml_dist_built_with_mpi(void) {
#ifdef ML_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

ml_status ml_dist_init(void) {
    if (g_inited) return ML_OK;
    g_inited = 1;
    const char *t = getenv("ML_DIST_TIMEOUT");
    if (t && atof(t) > 0) g_timeout = atof(t);
    if (!launched_by_mpirun()) return ML_OK;
#ifdef ML_HAVE_MPI
    int provided = 0, already = 0;
    MPI_Initialized(&already);
    if (!already && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ml_fail(ML_ERR_IO, "MPI_Init failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_mpi = 1;
    return ML_OK;
#else
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1)
        return ml_fail(ML_ERR_UNSUPPORTED, "started by mpirun with %s ranks, but this build has no MPI "
                                           "(install libopenmpi-dev and rebuild)", n);
    return ML_OK;
#endif
}

void ml_dist_finalize(void) {
#ifdef ML_HAVE_MPI
    if (g_mpi) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
        g_mpi = 0;
    }
#endif
}

void ml_dist_abort(int code) {
#ifdef ML_HAVE_MPI
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

int ml_dist_rank(void) { return g_rank; }
int ml_dist_size(void) { return g_size; }
void ml_dist_set_timeout(double seconds) {
    if (seconds > 0) g_timeout = seconds;
}
double ml_dist_timeout(void) { return g_timeout; }

/* ---------------------------------------------------------------- waiting with a timeout */

#ifdef ML_HAVE_MPI
static ml_status mpi_error(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ml_fail(ML_ERR_IO, "rank %d: MPI error in %s: %s", g_rank, what, msg);
}

/* Poll the requests until all are done, the timeout passes or a stop (SIGINT/SIGTERM: mpirun ending
 * the job because a rank died) has lasted 3 s. */
static ml_status wait_reqs(int n, MPI_Request *reqs, const char *what, double started) {
    for (long spin = 0;; spin++) {
        int done = 0, rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        if (done) return ML_OK;
        if ((spin & 63) == 0) {
            double t = now_s();
            if (t - started > g_timeout)
                return ml_fail(ML_ERR_IO, "rank %d: no answer from the other ranks within %g s in %s (a rank died, hangs or "
                                          "was started with other arguments)", g_rank, g_timeout, what);
            if (ml_stop_requested() && ml_stop_signal() == SIGTERM) /* mpirun ends the job: a rank died */
                return ml_fail(ML_ERR_IO, "rank %d: the job is being ended (SIGTERM) while waiting for the other ranks in %s: "
                                          "a rank died or was killed", g_rank, what);
        }
        if (spin > 1000) sched_yield();
    }
}

static int to_int(size_t n) { return n > (size_t)INT_MAX ? -1 : (int)n; }
#endif

ml_status ml_dist_barrier(const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        MPI_Request r;
        int rc = MPI_Ibarrier(MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)what;
    return ML_OK;
}

ml_status ml_dist_bcast(void *buf, size_t bytes, int root, const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        if (to_int(bytes) < 0) return ml_fail(ML_ERR_RANGE, "%s: %zu bytes are too many for one broadcast", what, bytes);
        MPI_Request r;
        int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)buf, (void)bytes, (void)root, (void)what;
    return ML_OK;
}

ml_status ml_dist_allgather(const void *send, void *recv, size_t bytes, const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        if (to_int(bytes) < 0) return ml_fail(ML_ERR_RANGE, "%s: %zu bytes are too many for one allgather", what, bytes);
        MPI_Request r;
        int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)what;
    memmove(recv, send, bytes);
    return ML_OK;
}

ml_status ml_dist_sum_f64(double *x, int n, const char *what) {
    if (g_size == 1) return ML_OK;
    double *all = malloc(sizeof(double) * (size_t)n * (size_t)g_size);
    if (!all) return ml_fail(ML_ERR_NOMEM, "out of memory in %s", what);
    ml_status s = ml_dist_allgather(x, all, sizeof(double) * (size_t)n, what);
    if (s == ML_OK)
        for (int i = 0; i < n; i++) {
            double acc = all[i];
            for (int r = 1; r < g_size; r++) acc += all[(size_t)r * n + i];
            x[i] = acc;
        }
    free(all);
    return s;
}

ml_status ml_dist_max_i64(int64_t *x, int n, const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        MPI_Request r;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)x, (void)n, (void)what;
    return ML_OK;
}

#ifdef ML_HAVE_MPI
static ml_status int_counts(const size_t *counts, const size_t *displs, int *c, int *d, const char *what) {
    for (int r = 0; r < g_size; r++) {
        c[r] = to_int(counts[r]);
        d[r] = to_int(displs[r]);
        if (c[r] < 0 || d[r] < 0) return ml_fail(ML_ERR_RANGE, "%s: parts beyond 2^31 floats", what);
    }
    return ML_OK;
}
#endif

ml_status ml_dist_allgatherv_f32(float *buf, const size_t *counts, const size_t *displs, const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        int c[g_size], d[g_size];
        ML_TRY(int_counts(counts, displs, c, d, what));
        MPI_Request r;
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c, d, MPI_FLOAT, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)buf, (void)counts, (void)displs, (void)what;
    return ML_OK;
}

ml_status ml_dist_gatherv_f32(const float *mine, float *buf, const size_t *counts, const size_t *displs, int root,
                              const char *what) {
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        int c[g_size], d[g_size];
        ML_TRY(int_counts(counts, displs, c, d, what));
        MPI_Request r;
        int rc = g_rank == root
                     ? MPI_Igatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c, d, MPI_FLOAT, root, MPI_COMM_WORLD, &r)
                     : MPI_Igatherv(mine, c[g_rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, root,
                                    MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        return wait_reqs(1, &r, what, now_s());
    }
#endif
    (void)mine, (void)buf, (void)counts, (void)displs, (void)root, (void)what;
    return ML_OK;
}

typedef struct {
    int code;
    char msg[500];
} agree_msg;

ml_status ml_dist_agree(ml_status s, const char *what) {
    if (g_size == 1) return s;
    agree_msg mine = {(int)s, ""}, *all = malloc(sizeof(agree_msg) * (size_t)g_size);
    if (!all) return ml_fail(ML_ERR_NOMEM, "out of memory in %s", what);
    if (s != ML_OK) snprintf(mine.msg, sizeof mine.msg, "%s", ml_last_error());
    ml_status c = ml_dist_allgather(&mine, all, sizeof mine, what);
    if (c == ML_OK) {
        for (int r = 0; r < g_size; r++) {
            if (all[r].code == ML_OK) continue;
            c = (ml_status)all[r].code;
            g_agreed_failure = 1;
            if (r == g_rank) break; /* keep our own message */
            if (g_rank == 0) ml_fail(c, "rank %d: %s", r, all[r].msg);
            else ml_fail(c, "rank %d failed in %s (rank 0 reports it)", r, what);
            break;
        }
    }
    free(all);
    return c;
}

/* ---------------------------------------------------------------- bucketed gradient all-reduce */

struct ml_dist_reducer {
    float *buf;
    size_t n;
    int nb, deterministic;
    ml_dist_bucket *b;
    int *state;       /* 0 idle, 1 first phase in flight, 4 first phase done, 2 second phase in flight, 3 done */
    float *stage;     /* deterministic: per bucket, size slices of this rank's part */
    size_t *stage_off;
    int *cnt, *off;   /* deterministic: per bucket, size slice lengths and offsets inside the bucket */
    int *rcnt, *roff; /* deterministic: per bucket, size receive counts (this rank's slice) and offsets */
    double t_first, t_last, wait_s;
    int next_second;  /* deterministic: second phases start in bucket order (see poll) */
#ifdef ML_HAVE_MPI
    MPI_Request *req;
    /* Collectives on one communicator must start in the same order on every rank. First phases start
     * in bucket order at the same points everywhere; second phases start when first phases complete,
     * which depends on timing, so they run on a communicator of their own, again in bucket order. */
    MPI_Comm comm1, comm2;
    int comms;
#endif
};

ml_status ml_dist_reducer_create(ml_dist_reducer **out, float *buf, size_t n, const ml_dist_bucket *buckets, int nb,
                                 int deterministic) {
    *out = NULL;
    ml_dist_reducer *r = calloc(1, sizeof *r);
    if (!r) return ml_fail(ML_ERR_NOMEM, "out of memory for the gradient reducer");
    r->buf = buf, r->n = n, r->nb = nb, r->deterministic = deterministic;
    const size_t P = (size_t)g_size;
    r->b = malloc(sizeof *r->b * (size_t)nb);
    r->state = calloc((size_t)nb, sizeof *r->state);
    r->stage_off = calloc((size_t)nb, sizeof *r->stage_off);
    r->cnt = malloc(sizeof(int) * P * (size_t)nb);
    r->off = malloc(sizeof(int) * P * (size_t)nb);
    r->rcnt = malloc(sizeof(int) * P * (size_t)nb);
    r->roff = malloc(sizeof(int) * P * (size_t)nb);
#ifdef ML_HAVE_MPI
    r->req = malloc(sizeof *r->req * (size_t)nb);
#endif
    if (!r->b || !r->state || !r->stage_off || !r->cnt || !r->off || !r->rcnt || !r->roff
#ifdef ML_HAVE_MPI
        || !r->req
#endif
    ) {
        ml_dist_reducer_free(r);
        return ml_fail(ML_ERR_NOMEM, "out of memory for the gradient reducer");
    }
    size_t stage = 0;
    for (int i = 0; i < nb; i++) {
        r->b[i] = buckets[i];
        if (buckets[i].offset + buckets[i].count > n || buckets[i].count > (size_t)INT_MAX) {
            ml_dist_reducer_free(r);
            return ml_fail(ML_ERR_RANGE, "gradient bucket %d lies outside the %zu gradients or is too large", i, n);
        }
        size_t c = buckets[i].count, base = c / P, extra = c % P, o = 0;
        for (size_t k = 0; k < P; k++) {
            size_t len = base + (k < extra);
            r->cnt[i * P + k] = (int)len;
            r->off[i * P + k] = (int)o;
            o += len;
        }
        size_t mine = (size_t)r->cnt[i * P + (size_t)g_rank];
        for (size_t k = 0; k < P; k++) {
            r->rcnt[i * P + k] = (int)mine;
            r->roff[i * P + k] = (int)(k * mine);
        }
        r->stage_off[i] = stage;
        stage += mine * P;
    }
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        if (MPI_Comm_dup(MPI_COMM_WORLD, &r->comm1) != MPI_SUCCESS || MPI_Comm_dup(MPI_COMM_WORLD, &r->comm2) != MPI_SUCCESS) {
            ml_dist_reducer_free(r);
            return ml_fail(ML_ERR_IO, "rank %d: cannot create the gradient reducer's communicators", g_rank);
        }
        r->comms = 1;
        MPI_Comm_set_errhandler(r->comm1, MPI_ERRORS_RETURN);
        MPI_Comm_set_errhandler(r->comm2, MPI_ERRORS_RETURN);
    }
#endif
    if (deterministic && g_size > 1) {
        r->stage = malloc(sizeof(float) * (stage ? stage : 1));
        if (!r->stage) {
            ml_dist_reducer_free(r);
            return ml_fail(ML_ERR_NOMEM, "out of memory for the deterministic reduction's staging buffer (%zu floats)", stage);
        }
    }
    *out = r;
    return ML_OK;
}

void ml_dist_reducer_free(ml_dist_reducer *r) {
    if (!r) return;
    free(r->b), free(r->state), free(r->stage), free(r->stage_off);
    free(r->cnt), free(r->off), free(r->rcnt), free(r->roff);
#ifdef ML_HAVE_MPI
    free(r->req);
    if (r->comms) MPI_Comm_free(&r->comm1), MPI_Comm_free(&r->comm2);
#endif
    free(r);
}

#ifdef ML_HAVE_MPI
/* Deterministic first phase done: add this rank's slice over ranks in rank order, then share it. */
static ml_status det_second_phase(ml_dist_reducer *r, int i) {
    const size_t P = (size_t)g_size;
    const size_t mine = (size_t)r->rcnt[(size_t)i * P];
    float *dst = r->buf + r->b[i].offset + r->off[(size_t)i * P + (size_t)g_rank];
    const float *st = r->stage + r->stage_off[i];
    for (size_t k = 0; k < mine; k++) {
        float acc = st[k];
        for (size_t q = 1; q < P; q++) acc += st[q * mine + k];
        dst[k] = acc;
    }
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->buf + r->b[i].offset, r->cnt + (size_t)i * P,
                             r->off + (size_t)i * P, MPI_FLOAT, r->comm2, &r->req[i]);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "gradient all-reduce (allgather)");
    r->state[i] = 2;
    return ML_OK;
}
#endif

ml_status ml_dist_reducer_poll(ml_dist_reducer *r) {
#ifdef ML_HAVE_MPI
    if (g_size == 1) return ML_OK;
    for (int i = 0; i < r->nb; i++) {
        if (r->state[i] != 1 && r->state[i] != 2) continue;
        int done = 0, rc = MPI_Test(&r->req[i], &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "gradient all-reduce");
        if (!done) continue;
        if (r->deterministic && r->state[i] == 1) {
            r->state[i] = 4; /* first phase done; its second starts in bucket order below */
        } else {
            r->state[i] = 3;
            r->t_last = now_s();
        }
    }
    while (r->deterministic && r->next_second < r->nb && r->state[r->next_second] == 4)
        ML_TRY(det_second_phase(r, r->next_second++));
#endif
    (void)r;
    return ML_OK;
}

ml_status ml_dist_reducer_start(ml_dist_reducer *r, int i) {
    if (i < 0 || i >= r->nb || r->state[i] != 0) return ML_OK;
    int started = 0;
    for (int k = 0; k < r->nb; k++) started |= r->state[k] != 0;
    if (!started) r->t_first = now_s(), r->t_last = r->t_first, r->wait_s = 0;
#ifdef ML_HAVE_MPI
    if (g_size > 1) {
        const size_t P = (size_t)g_size;
        float *p = r->buf + r->b[i].offset;
        int rc;
        if (r->deterministic)
            rc = MPI_Ialltoallv(p, r->cnt + (size_t)i * P, r->off + (size_t)i * P, MPI_FLOAT, r->stage + r->stage_off[i],
                                r->rcnt + (size_t)i * P, r->roff + (size_t)i * P, MPI_FLOAT, r->comm1, &r->req[i]);
        else
            rc = MPI_Iallreduce(MPI_IN_PLACE, p, (int)r->b[i].count, MPI_FLOAT, MPI_SUM, r->comm1, &r->req[i]);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "gradient all-reduce");
        r->state[i] = 1;
        return ml_dist_reducer_poll(r);
    }
#endif
    r->state[i] = 3;
    return ML_OK;
}

ml_status ml_dist_reducer_finish(ml_dist_reducer *r) {
    for (int i = 0; i < r->nb; i++) ML_TRY(ml_dist_reducer_start(r, i));
    double t0 = now_s();
    for (long spin = 0;; spin++) {
        ML_TRY(ml_dist_reducer_poll(r));
        int all = 1;
        for (int i = 0; i < r->nb && all; i++) all = r->state[i] == 3;
        if (all) break;
        if ((spin & 63) == 0) {
            double t = now_s();
            if (t - t0 > g_timeout)
                return ml_fail(ML_ERR_IO, "rank %d: no answer from the other ranks within %g s in the gradient all-reduce "
                                          "(a rank died or hangs)", g_rank, g_timeout);
            if (ml_stop_requested() && ml_stop_signal() == SIGTERM)
                return ml_fail(ML_ERR_IO, "rank %d: the job is being ended (SIGTERM) while waiting for the other ranks in the "
                                          "gradient all-reduce: a rank died or was killed", g_rank);
        }
        if (spin > 1000) sched_yield();
    }
    double t1 = now_s();
    r->wait_s = t1 - t0;
    if (r->t_last < r->t_first) r->t_last = t1;
    for (int i = 0; i < r->nb; i++) r->state[i] = 0;
    r->next_second = 0;
    return ML_OK;
}

void ml_dist_reducer_times(const ml_dist_reducer *r, double *span_s, double *wait_s) {
    *span_s = r->t_last - r->t_first;
    *wait_s = r->wait_s;
}
