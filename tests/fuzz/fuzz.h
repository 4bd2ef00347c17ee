// Shared by the libFuzzer targets tests/fuzz/fuzz_*.c (built by scripts/fuzz.sh, CMake option
// CTERP_FUZZ): per-process temporary files for loaders that only take a path, seed writing, and
// the shared test data. Every target defines LLVMFuzzerTestOneInput; LLVMFuzzerInitialize
// prepares what stays fixed (vocabularies, a valid weights file) and, when FUZZ_SEED_DIR is set,
// writes the target's seed corpus there from the library's own writers.
#ifndef CTERP_FUZZ_H
#define CTERP_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "cterp/error.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// A directory in /tmp of this process (made on first use, removed at a normal exit; a crash
// leaves it for the reproducer's files).
static char fuzz_dir_path[64];

static inline void fuzz_dir_remove(void) {
    if (!fuzz_dir_path[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "/tmp/cterp-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir_path)) {
            fprintf(stderr, "fuzz: mkdtemp: %s\n", strerror(errno));
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_path;
}

// A path under fuzz_dir() (malloc'd; targets make theirs once at start-up).
static inline char *fuzz_path(const char *name) {
    char *p = file_join(fuzz_dir(), name);
    if (!p) abort();
    return p;
}

// Writes bytes to path in place (not atomically: the fuzz loop rewrites the same file).
static inline void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

// Makes a directory under fuzz_dir() (kept; returns a malloc'd path).
static inline char *fuzz_subdir(const char *name) {
    char *p = fuzz_path(name);
    if (file_mkdirs(p)) abort();
    return p;
}

// FUZZ_SEED_DIR (set by scripts/fuzz.sh when it generates the corpus), or NULL.
static inline const char *fuzz_seed_dir(void) {
    const char *d = getenv("FUZZ_SEED_DIR");
    return d && *d ? d : NULL;
}

// Writes one seed file into FUZZ_SEED_DIR (no-op when unset).
static inline void fuzz_seed(const char *name, const void *data, size_t size) {
    const char *d = fuzz_seed_dir();
    if (!d) return;
    char *p = file_join(d, name);
    if (!p) abort();
    fuzz_write(p, data, size);
    free(p);
}

// Copies a whole file into the seed directory (no-op when unset).
static inline void fuzz_seed_file(const char *name, const char *path) {
    if (!fuzz_seed_dir()) return;
    char *d;
    size_t n;
    if (file_read_all(path, &d, &n)) {
        fprintf(stderr, "fuzz: seed %s: %s unreadable\n", name, path);
        return;
    }
    fuzz_seed(name, d, n);
    free(d);
}

// The shared test data (CTERP_TESTDATA, else the build's default), or NULL when absent.
static inline const char *fuzz_testdata(void) {
    const char *d = getenv("CTERP_TESTDATA");
#ifdef CTERP_DEFAULT_TESTDATA
    if (!d || !*d) d = CTERP_DEFAULT_TESTDATA;
#endif
    if (!d || !*d) return NULL;
    char *p = file_join(d, "README.md");
    int ok = p && file_exists(p);
    free(p);
    return ok ? d : NULL;
}

// FUZZ_VERBOSE=1: targets say why an input stopped (checking that seeds go deep).
static inline void fuzz_note(const char *what, int status) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, status ? cterp_last_error() : "ok");
}

// One thread: libFuzzer runs one input at a time, and OpenMP's pool only adds noise and time.
static inline void fuzz_quiet_threads(void) {
    setenv("OMP_NUM_THREADS", "1", 0);
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    setenv("OMP_WAIT_POLICY", "passive", 0);
}

#endif
