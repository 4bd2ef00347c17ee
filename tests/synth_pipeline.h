// Test helper: the small synthetic llama and word corpus that the pipeline tests (multi-hook,
// transcoder, crosscoder) run a store over: L layers of width 32 (tests/synth_model.h), 90
// lines of words from a 15-word list, and a store of 16-token windows.
#ifndef CTERP_TEST_SYNTH_PIPELINE_H
#define CTERP_TEST_SYNTH_PIPELINE_H

#include "cterp/acts.h"
#include "synth_model.h"
#include "test.h"

#include <sys/wait.h>

// The CLI (CTERP_BIN) run with ARGS, its stdout and stderr into LOG: the exit status, or -1.
static inline int cli_run(const char *args, const char *log) {
    const char *bin = getenv("CTERP_BIN");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", bin, args, log);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

// Whether LOG (its first 16 KB) contains WHAT; prints the log when it does not.
static inline int cli_log_has(const char *log, const char *what) {
    char buf[16384] = "";
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!strstr(buf, what)) fprintf(stderr, "expected '%s' in the log: %s\n", what, buf);
    return strstr(buf, what) != NULL;
}

// The pipeline tests' scratch directory, synthetic model and corpus (one set per test program).
static char model_path[700], corpus[700], tmp[520];

static void synth_pipeline_model(const char *path, int L);
static void synth_pipeline_corpus(const char *path);

// Writes a model of L layers and the corpus into test_tmpdir(NAME) and opens the model: NULL
// (the failure counted) when it does not open.
static inline cterp_model *synth_pipeline_setup(const char *name, int L) {
    snprintf(tmp, sizeof tmp, "%s", test_tmpdir(name));
    snprintf(model_path, sizeof model_path, "%s/synth.gguf", tmp);
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", tmp);
    synth_pipeline_model(model_path, L);
    synth_pipeline_corpus(corpus);
    cterp_model *m = NULL;
    CHECK_OK(cterp_model_open(&m, model_path));
    return m;
}

// The program's exit code; the scratch directory removed when every check passed.
static inline int synth_pipeline_finish(void) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (test_failed == 0 && system(cmd)) return 1;
    return test_done();
}

static void synth_pipeline_model(const char *path, int L) {
    gguf_writer *w = gguf_writer_new(0);
    synth_cfg c = {0};
    c.V = synth_vocab_spm(w);
    c.L = L, c.D = 32, c.H = 4, c.Hkv = 2, c.F = 64, c.n_ctx = 64, c.n_rot = 8;
    c.type = GGML_TYPE_F32, c.seed = 7;
    synth_add(w, &c);
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
}

static void synth_pipeline_corpus(const char *path) {
    static const char *words[] = {"the", "a",   "on",  "and",  "Once", "upon", "time", "cat",
                                  "hat", "ran", "tea", "note", "hen",  "oat",  "tent"};
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK_MSG(0, "%s: cannot write", path);
        return;
    }
    rng_t r;
    rng_seed(&r, 11);
    for (int l = 0; l < 90; l++) {
        int n = 4 + (int)rng_below(&r, 10);
        for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? " " : "", words[rng_below(&r, 15)]);
        fprintf(f, "\n");
    }
    fclose(f);
}

static cterp_store_config synth_pipeline_store(int overlap) {
    cterp_store_config c;
    cterp_store_config_default(&c);
    c.windows.context_size = 16;
    c.model_batch = 3;
    c.buffer_rows = 256;
    c.seed = 5;
    c.overlap = overlap;
    return c;
}

#endif
