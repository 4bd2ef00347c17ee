// Pipeline throughput (not a test) on stories260K: a story corpus sampled from the model (or
// --data FILE), hook blocks.2.hook_resid_post (d_in 64), context 64, and a typical small SAE
// (topk, d_sae 512, k 16, batch 256, mixing buffer 4096 rows). Medians of --reps runs of:
//  (a) the activation store alone: model forward to the hook + mixing, no SAE (rows/s);
//  (b) writing an f32 activation cache of one epoch of the corpus (rows/s);
//  (c) end-to-end training from the live store, cterp_train_sae without eval (tokens/s);
//  (d) the same training from the cache (tokens/s).
// A row is one token position's activation (special positions dropped), so rows = tokens.
// usage: bench_pipeline [--model M.gguf] [--data FILE | --stories N] [--steps S] [--reps R]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/stories.h"
#include "core/file.h"
#include "cterp/isa.h"
#include "cterp/analysis.h"

static const char *HOOK = "blocks.2.hook_resid_post";

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void row(const char *what, double *v, int n, const char *unit) {
    double lo = v[0], hi = v[0];
    for (int i = 1; i < n; i++) lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    double med = median(v, n);
    printf("%-52s %10.0f %-9s (%.0f .. %.0f)\n", what, med, unit, lo, hi);
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, ": %s\n", cterp_last_error());                                             \
        return 1;                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    if (cterp_isa_init()) { // a CTERP_ISA this CPU cannot run, or unknown
        fprintf(stderr, "%s\n", cterp_last_error());
        return 2;
    }
    printf("cpu: %s | cterp kernels: %s (%s)\n", cterp_cpu_name(), cterp_isa_name(), cterp_isa_description());
    const char *model = NULL, *data = NULL;
    int stories = 128, reps = 3;
    int64_t steps = 400;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--data"))
            data = v;
        else if (!strcmp(a, "--stories"))
            stories = atoi(v);
        else if (!strcmp(a, "--steps"))
            steps = atoll(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else {
            fprintf(
                stderr,
                "usage: bench_pipeline [--model M.gguf] [--data FILE | --stories N] [--steps S] "
                "[--reps R]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 50 || steps < 1 || stories < 1) {
        fprintf(stderr, "bench_pipeline: need 1 <= --reps <= 50, --steps >= 1, --stories >= 1\n");
        return 2;
    }
    char mp[4096], dir[512], corpus[600], cache[600];
    if (!model) {
        const char *d = getenv("CTERP_TESTDATA");
        snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", d ? d : "../shared/testdata");
        model = mp;
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/cterp-bench-pipeline-%d", tmp, (int)getpid());
    snprintf(cache, sizeof cache, "%s/cache", dir);
    if (file_mkdirs(dir)) FAIL("%s", dir);
    cterp_model *m;
    if (cterp_model_open(&m, model)) FAIL("%s", model);
    if (!data) {
        snprintf(corpus, sizeof corpus, "%s/stories.txt", dir);
        double t0 = time_now();
        if (write_story_corpus(m, corpus, stories, 256, 1)) FAIL("sampling the corpus");
        printf("corpus: %d stories of up to 256 tokens sampled from %s (seed 1, temperature 1) in "
               "%.1f s\n",
               stories, strrchr(model, '/') ? strrchr(model, '/') + 1 : model, time_now() - t0);
        fflush(stdout);
        data = corpus;
    }

    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cfg.architecture = CTERP_ARCH_TOPK;
    cfg.d_sae = 512, cfg.k = 16, cfg.batch_size = 256, cfg.training_steps = steps;
    cfg.log_every = 1 << 30, cfg.seed = 1;
    cterp_store_config sc;
    cterp_store_config_default(&sc);
    sc.windows.context_size = 64;
    sc.buffer_rows = 4096;
    sc.seed = cfg.seed;

    double *va = calloc((size_t)reps, sizeof(double)), *vb = calloc((size_t)reps, sizeof(double));
    double *vc = calloc((size_t)reps, sizeof(double)), *vd = calloc((size_t)reps, sizeof(double));
    float *x = malloc((size_t)cfg.batch_size * 64 * sizeof(float));
    cterp_cache_info info;
    cterp_store_stats st;
    int64_t epoch_rows = 0;
    for (int r = 0; r < reps; r++) {
        // (a) the store alone: the same rows the trainer of (c) consumes
        cterp_act_source src;
        if (cterp_act_store(&src, m, HOOK, data, &sc, cfg.batch_size)) FAIL("store");
        double t0 = time_now();
        for (int64_t s = 0; s < steps; s++)
            if (src.next(src.ctx, x, cfg.batch_size)) FAIL("store batch %lld", (long long)s);
        double dt = time_now() - t0;
        cterp_act_source_stats(&src, &st);
        va[r] = (double)st.rows_produced / dt;
        cterp_act_source_free(&src);

        // (b) one epoch of the corpus into an f32 cache
        t0 = time_now();
        if (cterp_act_cache_write(m, "stories260K.gguf", HOOK, data, &sc, (int64_t)1 << 40,
                                  CTERP_DTYPE_F32, cache, NULL, NULL, &info))
            FAIL("cache");
        vb[r] = (double)info.count / (time_now() - t0);
        epoch_rows = info.count;

        // (c) end to end from the live store
        cterp_pipeline_opts po;
        cterp_pipeline_opts_default(&po);
        po.store = sc;
        t0 = time_now();
        if (cterp_train_sae(m, 0, HOOK, data, &cfg, NULL, &po, NULL, NULL)) FAIL("train --model");
        vc[r] = (double)(steps * cfg.batch_size) / (time_now() - t0);

        // (d) the same training from the cache
        cterp_trainer *t;
        t0 = time_now();
        if (cterp_act_source_cache(&src, cache, &sc, cfg.batch_size)) FAIL("cache source");
        if (cterp_trainer_create(&t, &cfg, &src) || cterp_trainer_run(t, 0)) FAIL("train --acts");
        vd[r] = (double)(steps * cfg.batch_size) / (time_now() - t0);
        cterp_trainer_free(t);
        cterp_act_source_free(&src);
        fprintf(stderr, "run %d/%d: %.0f / %.0f / %.0f / %.0f\n", r + 1, reps, va[r], vb[r], vc[r],
                vd[r]);
    }
    printf("threads %d; %s, context %d, one epoch = %lld rows (%lld windows); topk d_sae %lld k "
           "%d, batch "
           "%lld, %lld steps (%lld tokens), buffer %lld rows\n",
           omp_get_max_threads(), HOOK, sc.windows.context_size, (long long)epoch_rows,
           (long long)info.windows, (long long)cfg.d_sae, cfg.k, (long long)cfg.batch_size,
           (long long)steps, (long long)(steps * cfg.batch_size), (long long)sc.buffer_rows);
    printf("%-52s %10s %-9s (min .. max of %d)\n", "stage", "median", "", reps);
    row("(a) activation store: forward to the hook, no SAE", va, reps, "rows/s");
    row("(b) cache write, f32, one epoch", vb, reps, "rows/s");
    row("(c) train --model: store + SAE, end to end", vc, reps, "tokens/s");
    row("(d) train --acts CACHE: SAE from the cache", vd, reps, "tokens/s");
    free(va), free(vb), free(vc), free(vd), free(x);
    cterp_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) ? 1 : 0;
}
