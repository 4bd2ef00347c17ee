// The gradient sum of data-parallel training alone (docs/scaling.md): seconds per dist_sum_f32 of
// n floats, both reduction modes, over P ranks, for the scaling model's bandwidth W and latency a.
//   mpirun -np 2 build/bench_dist [--reps R] [--max-mb M]
// Prints, on rank 0, per size: the median of R calls, the algorithm bandwidth (bytes / s) and the
// bus bandwidth 2 (P - 1) / P x bytes / s (what a ring all-reduce moves per link).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/file.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (dist_init(&argc, &argv)) return 1;
    int reps = 9;
    double max_mb = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-mb"))
            max_mb = atof(argv[i + 1]);
    }
    if (reps < 1 || reps > 1000) reps = 9;
    const int P = dist_size(), me = dist_rank();
    if (me == 0)
        printf("ranks %d; dist_sum_f32, median of %d\n%12s %10s %12s %12s %12s\n", P, reps, "bytes",
               "mode", "ms", "algbw GB/s", "busbw GB/s");
    double *t = malloc((size_t)reps * sizeof *t);
    for (size_t n = 1024 / 4; (double)n * 4 <= max_mb * 1e6; n *= 4) {
        float *x = malloc(n * sizeof *x);
        if (!x || !t) return 1;
        for (int mode = 0; mode < 2; mode++) {
            dist_set_reduce(mode ? DIST_REDUCE_ORDERED : DIST_REDUCE_ALLREDUCE);
            for (int r = 0; r < reps; r++) {
                for (size_t i = 0; i < n; i++) x[i] = (float)(i % 7) * 0.5f;
                if (dist_barrier()) return 1;
                const double t0 = time_now();
                if (dist_sum_f32(x, n)) {
                    fprintf(stderr, "bench_dist: %s\n", cterp_last_error());
                    dist_abort(1);
                }
                t[r] = time_now() - t0;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_d);
            const double s = t[reps / 2], bytes = (double)n * 4;
            if (me == 0)
                printf("%12.0f %10s %12.3f %12.2f %12.2f\n", bytes, mode ? "ordered" : "allreduce",
                       s * 1e3, bytes / s / 1e9, 2.0 * (P - 1) / P * bytes / s / 1e9);
        }
        free(x);
    }
    free(t);
    dist_finalize();
    return 0;
}
