// The two activation sources the checkpoint fuzz targets resume over (fuzz_checkpoint,
// fuzz_checkpoint_config): a fixed .npy file of `rows` rows of width d (a file source, whose
// position, epoch and fingerprint a checkpoint holds) and a toy model of superposition of width d.
#ifndef CTERP_FUZZ_SOURCES_H
#define CTERP_FUZZ_SOURCES_H

#include "cterp/toy.h"
#include "fuzz.h"
#include "io/npy.h"

// *npy <- the path of the written file, *toy <- the toy; aborts on failure (a broken harness).
static inline void fuzz_sources_init(int d, int rows, char **npy, cterp_toy **toy) {
    *npy = fuzz_path("acts.npy");
    float *v = malloc((size_t)rows * (size_t)d * sizeof *v);
    if (!v) abort();
    for (int i = 0; i < rows * d; i++) v[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    if (npy_write_f32(*npy, v, rows, d)) abort();
    free(v);
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    tc.n_features = 24, tc.d = d, tc.avg_active = 2, tc.seed = 3;
    if (cterp_toy_create(toy, &tc)) abort();
}

#endif
