/* Data-parallel communication for the trainer: the ranks of one job, a few collectives that never
 * hang (each waits at most ml_dist_timeout() seconds, then fails with one line), and the bucketed
 * gradient all-reduce that the trainer starts during backward.
 *
 * Built with MPI (CMake found it: ML_HAVE_MPI) and started by a launcher (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), the job has mpirun's ranks. Otherwise there is one
 * rank, and every collective is the identity: the build and the single-process run do not depend on
 * MPI. MPI appears in common/dist.c only.
 *
 * Collectives move raw bytes and floats; what they mean (gradients, parameters, losses) is the
 * trainer's business. Sums over ranks that must not depend on the MPI library's reduction order
 * (losses, counts) are gathered and added in rank order here. */
#ifndef ML_DIST_H
#define ML_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Start (once; later calls return at once). Without a launcher or without MPI: one rank. */
ml_status ml_dist_init(void);
/* End MPI cleanly (no-op without it). Call before a normal exit of a job's every rank. */
void ml_dist_finalize(void);
/* End every rank of the job now (MPI_Abort; exit(code) without MPI). */
void ml_dist_abort(int code);
int ml_dist_rank(void);
int ml_dist_size(void);
/* 1 when this build has MPI. */
int ml_dist_built_with_mpi(void);
/* Seconds a collective may wait for the other ranks before failing (default 120; ML_DIST_TIMEOUT). */
void ml_dist_set_timeout(double seconds);
double ml_dist_timeout(void);

/* Collectives. `what` names the exchange in errors ("rank 0: no answer within 120 s in <what> ..."). */
ml_status ml_dist_barrier(const char *what);
ml_status ml_dist_bcast(void *buf, size_t bytes, int root, const char *what);
/* recv[size * bytes] receives every rank's send[bytes], in rank order. */
ml_status ml_dist_allgather(const void *send, void *recv, size_t bytes, const char *what);
/* x[n] := the sum over ranks, added in rank order (same on every rank, whatever the MPI library). */
ml_status ml_dist_sum_f64(double *x, int n, const char *what);
/* buf[n] := the element-wise maximum over ranks. */
ml_status ml_dist_max_i64(int64_t *x, int n, const char *what);
/* Floats of one array laid out in per-rank parts (counts[r] at displs[r]): allgather fills every
 * rank's buf with every part (in place); gather collects every rank's `mine` (counts[rank] floats) into
 * root's buf at displs[rank] (root's own part must already be there; buf is unused elsewhere). */
ml_status ml_dist_allgatherv_f32(float *buf, const size_t *counts, const size_t *displs, const char *what);
ml_status ml_dist_gatherv_f32(const float *mine, float *buf, const size_t *counts, const size_t *displs, int root,
                              const char *what);

/* Agreement on a status: every rank passes its own; all get ML_OK when all passed ML_OK, else the
 * lowest failing rank's code, and rank 0's last error becomes "rank R: <its message>" (ranks other
 * than the failing one get "rank R failed (see rank 0)"). */
ml_status ml_dist_agree(ml_status s, const char *what);
/* 1 once ml_dist_agree returned a failure: every rank knows, rank 0 reports it, and each rank may end
 * normally (otherwise a failing rank ends the job with ml_dist_abort, so that no rank waits forever). */
int ml_dist_failure_agreed(void);

/* ---------------------------------------------------------------- gradient all-reduce in buckets */

/* One contiguous piece of the gradient array, reduced by one collective. */
typedef struct {
    size_t offset, count; /* floats */
} ml_dist_bucket;

typedef struct ml_dist_reducer ml_dist_reducer;

/* A reducer of buf[n] (the gradients) cut into buckets (each inside [0, n), not overlapping).
 * deterministic = 0: MPI_Iallreduce(SUM) per bucket. deterministic = 1: each rank gathers one slice of
 * the bucket from every rank and adds the slices in rank order (((g0 + g1) + g2) ...), as gradient
 * accumulation adds micro-batches, then the slices are allgathered: results are bit-identical to a
 * single process that accumulates micro-batch r's gradient r-th. Memory: a staging buffer of about n
 * floats (deterministic only). Everything is allocated here; launching and waiting allocate nothing in
 * this code (the MPI library may, inside its non-blocking collectives). */
ml_status ml_dist_reducer_create(ml_dist_reducer **r, float *buf, size_t n, const ml_dist_bucket *buckets, int n_buckets,
                                 int deterministic);
void ml_dist_reducer_free(ml_dist_reducer *r);
/* Start bucket i's reduction (non-blocking), then let the started ones progress. */
ml_status ml_dist_reducer_start(ml_dist_reducer *r, int i);
/* Let started reductions progress (call often: MPI progresses inside MPI calls). */
ml_status ml_dist_reducer_poll(ml_dist_reducer *r);
/* Start the buckets not started yet and wait for all; buf then holds the sum over ranks. */
ml_status ml_dist_reducer_finish(ml_dist_reducer *r);
/* Seconds of the last round: from the first start to the last completion, and blocked in finish. */
void ml_dist_reducer_times(const ml_dist_reducer *r, double *span_s, double *wait_s);

#endif
