// The two activation sources the checkpoint fuzz targets resume over (fuzz_checkpoint,
// fuzz_checkpoint_config): source 0 a fixed .npy file of `rows` rows of width d (a file source,
// whose position, epoch and fingerprint a checkpoint holds), source 1 a toy model of
// superposition of width d; and the checkpoints their seeds come from.
#ifndef CTERP_FUZZ_SOURCES_H
#define CTERP_FUZZ_SOURCES_H

#include "cterp/toy.h"
#include "cterp/train.h"
#include "fuzz.h"
#include "io/npy.h"

static char *fuzz_npy;
static cterp_toy *fuzz_toy;

// Writes the .npy file and makes the toy; aborts on failure (a broken harness).
static inline void fuzz_sources_init(int d, int rows) {
    fuzz_npy = fuzz_path("acts.npy");
    float *v = malloc((size_t)rows * (size_t)d * sizeof *v);
    if (!v) abort();
    for (int i = 0; i < rows * d; i++) v[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    if (npy_write_f32(fuzz_npy, v, rows, d)) abort();
    free(v);
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    tc.n_features = 24, tc.d = d, tc.avg_active = 2, tc.seed = 3;
    if (cterp_toy_create(&fuzz_toy, &tc)) abort();
}

// Source `which` (0: the file, 1: the toy) into *src; aborts on failure.
static inline void fuzz_source_open(int which, cterp_act_source *src) {
    cterp_status s = which == 0 ? cterp_act_source_file(src, fuzz_npy, 0, 42)
                                : cterp_toy_source(src, fuzz_toy);
    if (s) abort();
}

// Trains `steps` steps of c from scratch on source `which` and checkpoints into dir; aborts
// (naming `who`) on failure.
static inline void fuzz_write_checkpoint(int which, const cterp_train_config *c, int64_t steps,
                                         const char *dir, const char *who) {
    cterp_act_source src;
    fuzz_source_open(which, &src);
    cterp_trainer *t;
    if (cterp_trainer_create(&t, c, &src) || cterp_trainer_run(t, steps) ||
        cterp_trainer_checkpoint(t, dir)) {
        fprintf(stderr, "%s: %s\n", who, cterp_last_error());
        abort();
    }
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
}

#endif
