// cterp bench --model: the model forward's speed against this machine's own limits, measured in
// the same run. Prefill tokens/s (to a hook, or through the logits) against the SGEMM roofline of
// the model's own matmul shapes; decode tokens/s against the memory-bandwidth bound of reading
// every weight once per token.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "core/platform.h"
#include "cterp/model.h"
#include "kern/kern.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static cterp_status noop_hook(const char *n, float *a, const int64_t *s, int nd, void *u) {
    (void)n, (void)a, (void)s, (void)nd, (void)u;
    return CTERP_OK;
}

// Read bandwidth, GB/s: all threads summing a 512 MiB buffer (median of a few passes).
static double read_bandwidth(void) {
    const size_t n = (size_t)128 << 20; // floats
    float *a = malloc(n * sizeof *a);
    if (!a) return NAN;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double t[7];
    volatile float sink = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = time_now();
        float tot = 0;
#pragma omp parallel reduction(+ : tot)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            size_t half = n / 2, chunk = (half + (size_t)nt - 1) / (size_t)nt;
            size_t i0 = (size_t)id * chunk, len = i0 >= half ? 0 : (half - i0 < chunk ? half - i0 : chunk);
            tot += kern->vec->dot(a + i0, a + half + i0, (int64_t)len);
        }
        t[r] = time_now() - t0;
        sink += tot;
    }
    free(a);
    qsort(t, 7, sizeof t[0], cmp_d);
    return (double)n * sizeof(float) / t[3] / 1e9;
}

int cmd_bench_model(int argc, char **argv) {
    const char *path = NULL, *hook = NULL;
    int B = 4, T = 128, n_decode = 32;
    double seconds = 3.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: cterp bench --model M.gguf [--batch B] [--context T] [--hook H] [--decode N]\n"
                   "                   [--seconds S]\n\n"
                   "Prefill: the forward on B sequences of T tokens (to hook H, stopping after its layer,\n"
                   "or through the logits), repeated for about S seconds; prints the median tokens/s, the\n"
                   "GFLOP/s of its matmuls, and the same-run SGEMM roofline: the time cblas_sgemm takes\n"
                   "for the model's own matmul shapes (M = B*T), and the fraction of it reached.\n"
                   "Decode: N single-token steps with the KV cache; tokens/s against the bound of reading\n"
                   "every weight byte once per token at this machine's measured read bandwidth.\n"
                   "Defaults: B 4, T 128, N 32, S 3.\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cterp bench: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) path = v;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--context")) T = atoi(v);
        else if (!strcmp(a, "--hook")) hook = v;
        else if (!strcmp(a, "--decode")) n_decode = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else {
            fprintf(stderr, "cterp bench: unknown option %s with --model (see --model --help)\n", a);
            return 2;
        }
    }
    if (B < 1 || T < 1 || n_decode < 0 || !(seconds > 0)) {
        fprintf(stderr, "cterp bench: --batch, --context >= 1, --decode >= 0, --seconds > 0\n");
        return 2;
    }
    cterp_model *m;
    double t0 = time_now();
    if (cterp_model_open(&m, path)) {
        cli_error("bench");
        return 1;
    }
    const double t_load = time_now() - t0;
    const cterp_model_config *c = cterp_model_config_of(m);
    print_blas(kern->vec->fma_peak());
    printf("model: %s, %s, %d layers, d_model %d, d_ff %d, heads %d/%d, vocab %d, weights %s "
           "(opened in %.2f s)\n",
           path, c->arch, c->n_layers, c->d_model, c->d_ff, c->n_heads, c->n_kv_heads, c->n_vocab,
           cterp_model_weight_type(m), t_load);
    int layer = c->n_layers, dim;
    if (hook && cterp_model_hook_info(m, hook, &layer, &dim)) {
        cli_error("bench");
        cterp_model_free(m);
        return 1;
    }
    const int n_layers = hook ? (layer + 1 < c->n_layers ? layer + 1 : c->n_layers) : c->n_layers;
    const int logits = hook == NULL;
    const int64_t BT = (int64_t)B * T, D = c->d_model, F = c->d_ff, hd = c->head_dim;
    const int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;
    int32_t *tok = malloc((size_t)BT * sizeof *tok);
    float *lg = logits ? malloc((size_t)BT * (size_t)c->n_vocab * sizeof *lg) : NULL;
    if (!tok || (logits && !lg)) {
        fprintf(stderr, "cterp bench: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < BT; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)c->n_vocab);
    cterp_hook h = {hook, noop_hook, NULL};
    cterp_forward_opts o = {.logits = lg, .hooks = hook ? &h : NULL, .n_hooks = hook ? 1 : 0};

    // the model's matmuls: (N rows, K cols) per layer, then the unembedding
    const int64_t shapes[][2] = {{qd, D}, {kvd, D}, {kvd, D}, {D, qd}, {F, D}, {F, D}, {D, F}};
    const int n_shapes = c->mlp_gated ? 7 : 6;
    double flop_layer = 0, t_layer = 0;
    for (int s = 0; s < n_shapes; s++) {
        int64_t N = shapes[s][0], K = shapes[s][1];
        if (!c->mlp_gated && s == 5) N = D, K = F; // up then down
        double f = 2.0 * BT * N * K;
        flop_layer += f;
        t_layer += f / (sgemm_gflops(BT, K, N) * 1e9);
    }
    double flop = flop_layer * n_layers, t_roof = t_layer * n_layers;
    if (logits) {
        double f = 2.0 * BT * D * c->n_vocab;
        flop += f;
        t_roof += f / (sgemm_gflops(BT, D, c->n_vocab) * 1e9);
    }

    enum { MAXREPS = 200 };
    static double t[MAXREPS];
    if (cterp_model_forward(m, tok, B, T, &o)) { // warm-up: pages the weights in
        cli_error("bench");
        return 1;
    }
    int reps = 0;
    double tw = time_now();
    do {
        double t1 = time_now();
        cterp_model_forward(m, tok, B, T, &o);
        t[reps++] = time_now() - t1;
    } while ((time_now() - tw < seconds || reps < 3) && reps < MAXREPS);
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    double dt = t[reps / 2];
    printf("prefill B=%d T=%d to %s: %.0f tokens/s (median of %d, %.3f s each), matmuls %.1f GFLOP/s; "
           "SGEMM roofline for these shapes %.0f tokens/s (%.1f GFLOP/s): reached %.1f%%\n",
           B, T, hook ? hook : "the logits", BT / dt, reps, dt, flop / dt / 1e9, BT / t_roof,
           flop / t_roof / 1e9, 100.0 * t_roof / dt);

    if (n_decode > 0) {
        cterp_kv_cache *kc;
        if (cterp_kv_cache_create(&kc, m, n_decode + 1)) {
            cli_error("bench");
            return 1;
        }
        float *l1 = malloc((size_t)c->n_vocab * sizeof *l1);
        cterp_forward_opts od = {.logits = l1, .last_only = 1};
        cterp_model_decode(m, kc, tok, 1, &od); // warm-up
        double td[4096];
        int nd = n_decode < 4096 ? n_decode : 4096;
        for (int i = 0; i < nd; i++) {
            double t1 = time_now();
            if (cterp_model_decode(m, kc, tok + 1 + i % (BT - 1 > 0 ? BT - 1 : 1), 1, &od)) {
                cli_error("bench");
                return 1;
            }
            td[i] = time_now() - t1;
        }
        qsort(td, (size_t)nd, sizeof td[0], cmp_d);
        double bw = read_bandwidth();
        double bytes = (double)cterp_model_weight_bytes(m, c->n_layers, 1);
        double t_bound = bytes / (bw * 1e9);
        printf("decode: %.1f tokens/s (median of %d steps, %.2f ms each); weights %.1f MB per token at "
               "%.1f GB/s read bandwidth: bound %.1f tokens/s, reached %.1f%%\n",
               1.0 / td[nd / 2], nd, td[nd / 2] * 1e3, bytes / 1e6, bw, 1.0 / t_bound,
               100.0 * t_bound / td[nd / 2]);
        free(l1);
        cterp_kv_cache_free(kc);
    }
    printf("peak RSS %.0f MB\n", platform_peak_rss() / 1048576.0);
    free(tok);
    free(lg);
    cterp_model_free(m);
    return 0;
}
