// Shared by `cterp demo` and `cterp train --toy`: train on the toy, print the recovery report.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/platform.h"
#include "core/file.h"
#include "cterp/toy.h"
#include "cterp/train.h"

// Fraction of latents that never fire on `n` fresh toy samples, and the eval EV / L0.
static void eval_saved(const cterp_sae *sae, const cterp_toy *toy, int64_t n, double *dead,
                       double *ev, double *l0) {
    const int64_t D = sae->d_in, N = sae->d_sae, B = 1024;
    float *x = malloc((size_t)B * D * sizeof(float)), *f = malloc((size_t)B * N * sizeof(float));
    float *xh = malloc((size_t)B * D * sizeof(float));
    char *fired = calloc((size_t)N, 1);
    double sse = 0, sx = 0, nnz = 0;
    double *mean = calloc((size_t)D, sizeof(double)), *sq = calloc((size_t)D, sizeof(double));
    int64_t seen = 0;
    for (uint64_t b = 0; seen < n; b++) {
        cterp_toy_sample(toy, 1000000000ULL + b, x, B, NULL); // batches training never drew
        cterp_sae_encode(sae, x, B, f);
        cterp_sae_decode(sae, f, B, xh);
        for (int64_t q = 0; q < B * N; q++)
            if (f[q] > 0) fired[q % N] = 1, nnz++;
        for (int64_t t = 0; t < B; t++)
            for (int64_t d = 0; d < D; d++) {
                double v = x[t * D + d], r = v - xh[t * D + d];
                sse += r * r;
                mean[d] += v;
                sq[d] += v * v;
            }
        seen += B;
    }
    for (int64_t d = 0; d < D; d++) sx += sq[d] - mean[d] * mean[d] / (double)seen;
    int64_t nd = 0;
    for (int64_t i = 0; i < N; i++) nd += !fired[i];
    *dead = (double)nd / (double)N;
    *ev = 1.0 - sse / sx;
    *l0 = nnz / (double)seen;
    free(x), free(f), free(xh), free(fired), free(mean), free(sq);
}

static void progress(const cterp_train_metrics *m, void *user) {
    int tty = *(int *)user;
    int width = 24, fill = (int)(width * m->step / (m->steps ? m->steps : 1));
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr,
            "%s[%s] step %lld/%lld  %.0f tok/s  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  eta %.0fs%s",
            tty ? "\r" : "", bar, (long long)m->step, (long long)m->steps, m->tokens_per_s, m->loss,
            m->explained_variance, m->l0, 100 * m->dead_fraction, m->eta_s, tty ? "" : "\n");
    if (tty && m->step == m->steps) fprintf(stderr, "\n");
}

int cli_run_toy(const cterp_train_config *cfg, const cterp_toy_config *tc, const char *out,
                int quiet, int report) {
    cterp_toy *toy = NULL;
    cterp_act_source src = {0};
    cterp_trainer *tr = NULL;
    cterp_sae *sae = NULL;
    int rc = 1;
    if (cterp_toy_create(&toy, tc) || cterp_toy_source(&src, toy) ||
        cterp_trainer_create(&tr, cfg, &src)) {
        fprintf(stderr, "cterp: %s\n", cterp_last_error());
        goto done;
    }
    int tty = isatty(2);
    cterp_trainer_set_output(tr, out, quiet ? NULL : progress, &tty);
    int64_t N = cterp_train_config_d_sae(cfg, tc->d);
    if (report)
        printf("Toy model of superposition: %d ground-truth features in %d dimensions, ~%.1f active "
               "per sample.\nTraining a %s SAE: d_sae %lld, %s%lld steps of %lld tokens, lr %g.\n",
               tc->n_features, tc->d, tc->avg_active, cterp_arch_name(cfg->architecture),
               (long long)N, "", (long long)cterp_train_config_steps(cfg),
               (long long)cfg->batch_size, cfg->lr);
    fflush(stdout);
    double t0 = time_now();
    if (cterp_trainer_run(tr, 0)) {
        fprintf(stderr, "cterp: training failed: %s\n", cterp_last_error());
        goto done;
    }
    double secs = time_now() - t0;
    if (cterp_trainer_export(tr, &sae)) {
        fprintf(stderr, "cterp: %s\n", cterp_last_error());
        goto done;
    }
    if (out && cterp_trainer_save(tr, out)) {
        fprintf(stderr, "cterp: saving to %s failed: %s\n", out, cterp_last_error());
        goto done;
    }
    double rev, mmcs = cterp_mmcs(cterp_toy_features(toy), tc->n_features, sae->W_dec, N, tc->d, &rev);
    double dead, ev, l0;
    eval_saved(sae, toy, 65536, &dead, &ev, &l0);
    printf("\nRecovery of the %d true features (held-out data):\n", tc->n_features);
    printf("  MMCS (mean best cosine, true -> learned)  %.4f\n", mmcs);
    printf("  reverse MMCS (learned -> true)           %.4f\n", rev);
    printf("  explained variance                       %.4f\n", ev);
    printf("  L0 (active latents per sample)           %.2f\n", l0);
    printf("  dead latents (never fire on 65536)       %.2f%%\n", 100 * dead);
    printf("  training time                            %.1f s (%.0f tokens/s)\n", secs,
           (double)cterp_train_config_steps(cfg) * cfg->batch_size / secs);
    printf("  peak RSS                                 %.0f MB\n", platform_peak_rss() / 1048576.0);
    if (out) printf("Saved the SAE (SAELens format) to %s\n", out);
    rc = 0;
done:
    cterp_sae_free(sae);
    cterp_trainer_free(tr);
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
    return rc;
}
