// dist.h without MPI (a build without CTERP_HAVE_MPI): one process, rank 0 of 1. The sums are
// the identity; a gather copies. `mpirun` of such a build runs P independent single-process jobs,
// so dist_init refuses to start under a launcher.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"

static dist_reduce_mode reduce_mode;

int dist_built(void) {
    return 0;
}

int dist_init(int *argc, char ***argv) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1) {
        fprintf(stderr,
                "cterp: started by mpirun as one of %s ranks, but this cterp was built without "
                "MPI (install libopenmpi-dev and rebuild; CMake option CTERP_MPI)\n",
                n);
        return -1;
    }
    return 0;
}

void dist_finalize(void) {}
_Noreturn void dist_abort(int code) {
    fflush(stdout), fflush(stderr);
    exit(code);
}
int dist_rank(void) {
    return 0;
}
int dist_size(void) {
    return 1;
}
void dist_set_reduce(dist_reduce_mode m) {
    reduce_mode = m;
}
dist_reduce_mode dist_get_reduce(void) {
    return reduce_mode;
}
double dist_comm_seconds(void) {
    return 0;
}
uint64_t dist_reduced_bytes(void) {
    return 0;
}
cterp_status dist_sum_f32(float *x, size_t n) {
    return CTERP_OK;
}
cterp_status dist_sum_f64(double *x, size_t n) {
    return CTERP_OK;
}
cterp_status dist_sum_i64(int64_t *x, size_t n) {
    return CTERP_OK;
}
cterp_status dist_min_f64(double *x, size_t n) {
    return CTERP_OK;
}

cterp_status dist_allgather(void *out, const void *in, size_t bytes) {
    if (bytes) memmove(out, in, bytes);
    return CTERP_OK;
}

cterp_status dist_allgatherv(void *out, size_t cap, const void *in, size_t bytes, size_t *total) {
    if (bytes > cap) return cterp_error(CTERP_EINVAL, "allgatherv: %zu bytes into %zu", bytes, cap);
    if (bytes) memmove(out, in, bytes);
    *total = bytes;
    return CTERP_OK;
}

cterp_status dist_same(const void *x, size_t bytes, int *same) {
    *same = 1;
    return CTERP_OK;
}

cterp_status dist_barrier(void) {
    return CTERP_OK;
}
