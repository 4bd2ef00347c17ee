// dist.h over MPI (built when CMake finds MPI: CTERP_HAVE_MPI). Every call checks MPI's return
// (MPI_ERRORS_RETURN on the communicator) and turns a failure into a cterp error naming the call.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dist.h"
#include "core/file.h"
#include "core/hash.h"

static int joined, rank, size = 1;
static dist_reduce_mode reduce_mode;
static double comm_s;
static uint64_t reduced;
static float *scratch; // ordered reduction: P chunks of one piece
static size_t scratch_n;
static MPI_Comm comm;

// a piece's element count stays an int for MPI's counts (with room for P chunks)
enum { PIECE = 1 << 26 };

static cterp_status check(int rc, const char *call) {
    if (rc == MPI_SUCCESS) return CTERP_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return cterp_error(CTERP_EIO, "MPI rank %d of %d: %s failed: %s", rank, size, call, msg);
}

int dist_built(void) {
    return 1;
}

int dist_init(int *argc, char ***argv) {
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return 0;
    int provided = 0;
    // MPI from the main thread only (the store's producer thread is off under MPI)
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "cterp: MPI_Init failed\n");
        return -1;
    }
    joined = 1;
    if (provided < MPI_THREAD_FUNNELED) { // OpenMP threads beside the one that calls MPI
        fprintf(stderr,
                "cterp: this MPI provides thread level %d, cterp needs MPI_THREAD_FUNNELED (%d)\n",
                provided, MPI_THREAD_FUNNELED);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    return 0;
}

void dist_finalize(void) {
    if (!joined) return;
    // a barrier that sleeps: ranks done early (rank 0 may still evaluate or save) must not spin
    // on the cores it uses
    MPI_Request rq;
    int done = 0;
    if (MPI_Ibarrier(comm, &rq) == MPI_SUCCESS)
        while (MPI_Test(&rq, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done)
            nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
    MPI_Comm_free(&comm);
    MPI_Finalize();
    free(scratch);
    scratch = NULL, scratch_n = 0;
    joined = 0, rank = 0, size = 1;
}

_Noreturn void dist_abort(int code) {
    fflush(stdout), fflush(stderr);
    if (joined) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int dist_rank(void) {
    return rank;
}
int dist_size(void) {
    return size;
}
void dist_set_reduce(dist_reduce_mode m) {
    reduce_mode = m;
}
dist_reduce_mode dist_get_reduce(void) {
    return reduce_mode;
}
double dist_comm_seconds(void) {
    return comm_s;
}
uint64_t dist_reduced_bytes(void) {
    return reduced;
}

// rank order: piece of n floats split in P chunks; rank j sums chunk j of every rank, 0..P-1
static cterp_status ordered_piece(float *x, int n) {
    const int P = size, c = (n + P - 1) / P;
    int sc[P], sd[P];
    for (int r = 0; r < P; r++) {
        const int lo = r * c < n ? r * c : n, hi = lo + c < n ? lo + c : n;
        sc[r] = hi - lo, sd[r] = lo;
    }
    const int mine = sc[rank];
    int rc[P], rd[P];
    for (int r = 0; r < P; r++) rc[r] = mine, rd[r] = r * mine;
    cterp_status s = check(MPI_Alltoallv(x, sc, sd, MPI_FLOAT, scratch, rc, rd, MPI_FLOAT, comm),
                           "MPI_Alltoallv");
    if (s) return s;
    float *own = x + sd[rank];
    for (int i = 0; i < mine; i++) {
        float acc = scratch[i];
        for (int r = 1; r < P; r++) acc += scratch[(size_t)r * mine + i];
        own[i] = acc;
    }
    return check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, x, sc, sd, MPI_FLOAT, comm),
                 "MPI_Allgatherv");
}

cterp_status dist_sum_f32(float *x, size_t n) {
    if (size == 1) return CTERP_OK;
    const double t0 = time_now();
    cterp_status s = CTERP_OK;
    if (reduce_mode == DIST_REDUCE_ORDERED) {
        size_t need = (n < PIECE ? n : PIECE) + (size_t)size;
        if (need > scratch_n) {
            float *p = realloc(scratch, need * sizeof(float));
            if (!p)
                return cterp_error(CTERP_ENOMEM,
                                   "MPI: out of memory for the ordered reduction (%zu floats)",
                                   need);
            scratch = p, scratch_n = need;
        }
    }
    for (size_t i = 0; i < n && !s; i += PIECE) {
        const int m = (int)(n - i < PIECE ? n - i : PIECE);
        s = reduce_mode == DIST_REDUCE_ORDERED
                ? ordered_piece(x + i, m)
                : check(MPI_Allreduce(MPI_IN_PLACE, x + i, m, MPI_FLOAT, MPI_SUM, comm),
                        "MPI_Allreduce");
    }
    comm_s += time_now() - t0;
    reduced += n * sizeof(float);
    return s;
}

// small vectors: gathered whole, summed in rank order (the same bits on every rank)
static cterp_status gather_reduce(void *x, size_t n, size_t elem, int op) {
    if (size == 1) return CTERP_OK;
    unsigned char *all = malloc(n * elem * (size_t)size + 1);
    if (!all) return cterp_error(CTERP_ENOMEM, "MPI: out of memory");
    cterp_status s = dist_allgather(all, x, n * elem);
    for (size_t i = 0; i < n && !s; i++) {
        if (elem == sizeof(double) && op != 2) {
            double acc;
            memcpy(&acc, all + i * elem, elem);
            for (int r = 1; r < size; r++) {
                double v;
                memcpy(&v, all + ((size_t)r * n + i) * elem, elem);
                acc = op == 0 ? acc + v : (v < acc ? v : acc);
            }
            memcpy((unsigned char *)x + i * elem, &acc, elem);
        } else {
            int64_t acc;
            memcpy(&acc, all + i * elem, elem);
            for (int r = 1; r < size; r++) {
                int64_t v;
                memcpy(&v, all + ((size_t)r * n + i) * elem, elem);
                acc += v;
            }
            memcpy((unsigned char *)x + i * elem, &acc, elem);
        }
    }
    free(all);
    return s;
}

cterp_status dist_sum_f64(double *x, size_t n) {
    return gather_reduce(x, n, sizeof *x, 0);
}
cterp_status dist_min_f64(double *x, size_t n) {
    return gather_reduce(x, n, sizeof *x, 1);
}
cterp_status dist_sum_i64(int64_t *x, size_t n) {
    return gather_reduce(x, n, sizeof *x, 2);
}

cterp_status dist_allgather(void *out, const void *in, size_t bytes) {
    if (size == 1) {
        if (bytes) memmove(out, in, bytes);
        return CTERP_OK;
    }
    if (bytes > (size_t)PIECE * 16)
        return cterp_error(CTERP_EINVAL, "MPI: an allgather of %zu bytes is too large", bytes);
    const double t0 = time_now();
    cterp_status s = check(MPI_Allgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, comm),
                           "MPI_Allgather");
    comm_s += time_now() - t0;
    return s;
}

cterp_status dist_allgatherv(void *out, size_t cap, const void *in, size_t bytes, size_t *total) {
    if (size == 1) {
        if (bytes > cap)
            return cterp_error(CTERP_EINVAL, "allgatherv: %zu bytes into %zu", bytes, cap);
        if (bytes) memmove(out, in, bytes);
        *total = bytes;
        return CTERP_OK;
    }
    const double t0 = time_now();
    int64_t mine = (int64_t)bytes, all[size];
    cterp_status s =
        check(MPI_Allgather(&mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, comm), "MPI_Allgather");
    if (s) return s;
    int cnt[size], disp[size];
    int64_t sum = 0;
    for (int r = 0; r < size; r++) {
        if (all[r] < 0 || all[r] > (int64_t)PIECE * 16 || sum + all[r] > (int64_t)cap ||
            sum + all[r] > INT32_MAX)
            return cterp_error(CTERP_EINVAL, "MPI: rank %d sends %lld bytes, %lld fit", r,
                               (long long)all[r], (long long)((int64_t)cap - sum));
        cnt[r] = (int)all[r], disp[r] = (int)sum, sum += all[r];
    }
    s = check(MPI_Allgatherv(in, (int)bytes, MPI_BYTE, out, cnt, disp, MPI_BYTE, comm),
              "MPI_Allgatherv");
    *total = (size_t)sum;
    comm_s += time_now() - t0;
    return s;
}

cterp_status dist_same(const void *x, size_t bytes, int *same) {
    *same = 1;
    if (size == 1) return CTERP_OK;
    uint64_t h = hash_bytes(0, x, bytes), all[size];
    cterp_status s = dist_allgather(all, &h, sizeof h);
    for (int r = 1; r < size && !s; r++) *same &= all[r] == all[0];
    return s;
}

cterp_status dist_barrier(void) {
    if (size == 1) return CTERP_OK;
    const double t0 = time_now();
    cterp_status s = check(MPI_Barrier(comm), "MPI_Barrier");
    comm_s += time_now() - t0;
    return s;
}
