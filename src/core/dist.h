// Data parallelism over MPI: the few collectives the trainer, the activation store and the cache
// writer need, behind one prefix. Built with MPI (CTERP_HAVE_MPI, dist_mpi.c) or without
// (dist_serial.c: one process, every call a no-op or a copy), so callers never #ifdef.
//
// A process is one rank of P. dist_init joins MPI only when a launcher (mpirun) started the
// process; otherwise, and in every library use outside the CLI, P is 1 and nothing is sent.
// Every collective must be called by all ranks in the same order; a failure of one is fatal to
// the job (dist_abort), never a status the others could wait on.
#ifndef CTERP_CORE_DIST_H
#define CTERP_CORE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

// How float gradients are summed over ranks (docs/scaling.md):
//   DIST_REDUCE_ALLREDUCE  MPI_Allreduce: MPI picks the algorithm, so the summation order (and the
//                          last bits) may change with P, the message size and the MPI build;
//   DIST_REDUCE_ORDERED    every element summed rank 0, 1, ..., P-1 in that order (a reduce-scatter
//                          by MPI_Alltoall, the sums, an MPI_Allgather): the same bits run to run
//                          for a given P, whatever MPI does underneath.
typedef enum { DIST_REDUCE_ALLREDUCE = 0, DIST_REDUCE_ORDERED = 1 } dist_reduce_mode;

// Joins the MPI job when launched by mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE set),
// with MPI's error handler set to return so that a failed call is reported (and aborts the job)
// rather than hanging. Returns 0, or -1 with a message on stderr. Call once, from main.
int dist_init(int *argc, char ***argv);
// Leaves MPI (after a barrier). No-op when dist_init did not join.
void dist_finalize(void);
// Ends every rank of the job with `code` (MPI_Abort); in one process, exit(code).
_Noreturn void dist_abort(int code);
int dist_rank(void);  // 0 .. P-1 (0 without MPI)
int dist_size(void);  // P (1 without MPI)
int dist_built(void); // 1 when built with MPI

void dist_set_reduce(dist_reduce_mode m);
dist_reduce_mode dist_get_reduce(void);

// Sum of x (n floats) over ranks, in place, by the chosen mode.
cterp_status dist_sum_f32(float *x, size_t n);
// Sums of small f64 / i64 vectors (metrics, counters), in place, always in rank order.
cterp_status dist_sum_f64(double *x, size_t n);
cterp_status dist_sum_i64(int64_t *x, size_t n);
cterp_status dist_min_f64(double *x, size_t n);
// out (P x bytes) = every rank's `bytes` bytes of in, in rank order.
cterp_status dist_allgather(void *out, const void *in, size_t bytes);
// Variable sizes: out = every rank's in (bytes[r] of rank r), concatenated in rank order;
// *total = the bytes out holds (out must hold cap bytes; more is an error).
cterp_status dist_allgatherv(void *out, size_t cap, const void *in, size_t bytes, size_t *total);
// 1 when x (bytes) is equal on every rank (its hash compared); a check, not a collective result.
cterp_status dist_same(const void *x, size_t bytes, int *same);
cterp_status dist_barrier(void);

// Wall seconds spent in collectives and the float payload reduced so far (this rank).
double dist_comm_seconds(void);
uint64_t dist_reduced_bytes(void);

#endif
