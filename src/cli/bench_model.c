// cterp bench --model: the model forward's speed against this machine's own limits, measured in
// the same run. Prefill tokens/s (to a hook, or through the logits) against the SGEMM roofline of
// the model's own matmul shapes; decode tokens/s against the memory-bandwidth bound of reading
// every weight once per token.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/file.h"
#include "core/platform.h"
#include "cterp/analysis.h"
#include "cterp/model.h"
#include "core/rng.h"
#include "kern/kern.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static cterp_status noop_hook(const char *n, float *a, const int64_t *s, int nd, void *u) {
    (void)n, (void)a, (void)s, (void)nd, (void)u;
    return CTERP_OK;
}

// The read bound: all threads summing a buffer of as many bytes as a token's weights, in 2 MiB
// pages when `huge` (as the model's weights then are: this machine read them 1.4x as fast as in
// 4 KiB pages), else in whatever pages mmap gives. One pass at a time, taking turns with the
// decode steps, so that a busy machine slows both alike.
typedef struct {
    uint8_t *raw;
    size_t len, n; // mapped bytes; floats read per pass
    float *a;
} read_probe;

static int probe_open(read_probe *p, double bytes, int huge) {
    const size_t H = (size_t)2 << 20; // a huge page
    p->n = ((size_t)(bytes / sizeof(float)) + 1023) & ~(size_t)1023;
    p->len = p->n * sizeof(float) + H;
    p->raw = mmap(NULL, p->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->raw == MAP_FAILED) return -1;
    p->a = (float *)(void *)(((uintptr_t)p->raw + H - 1) & ~(uintptr_t)(H - 1));
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p->a, p->n * sizeof(float), MADV_HUGEPAGE);
#else
    (void)huge;
#endif
    float *a = p->a;
    const size_t n = p->n;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    return 0;
}

// seconds for one pass over the buffer
static double probe_pass(const read_probe *p) {
    static volatile float sink;
    const float *a = p->a;
    const size_t half = p->n / 2;
    double t0 = time_now();
    float tot = 0;
#pragma omp parallel reduction(+ : tot)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        size_t chunk = (half + (size_t)nt - 1) / (size_t)nt;
        size_t i0 = (size_t)id * chunk;
        size_t len = i0 >= half ? 0 : (half - i0 < chunk ? half - i0 : chunk);
        tot += kern->vec->dot(a + i0, a + half + i0, (int64_t)len);
    }
    double t = time_now() - t0;
    sink += tot;
    return t;
}

typedef struct {
    double tok_s, gflops;          // measured (median)
    double roof_tok_s, roof_gflops; // cblas_sgemm alone on the same matmul shapes
    int reps, n_layers;
} prefill_result;

// The forward on B x T tokens to `hook` (NULL: through the logits), repeated for about `seconds`;
// the roofline is the sum of cblas_sgemm's median times for each matmul of the layers it runs.
static cterp_status prefill(cterp_model *m, int B, int T, const char *hook, double seconds,
                            prefill_result *r) {
    const cterp_model_config *c = cterp_model_config_of(m);
    int layer = c->n_layers, dim;
    cterp_status s;
    if (hook && (s = cterp_model_hook_info(m, hook, &layer, &dim))) return s;
    const int n_layers = hook ? (layer + 1 < c->n_layers ? layer + 1 : c->n_layers) : c->n_layers;
    const int logits = hook == NULL;
    const int64_t BT = (int64_t)B * T, D = c->d_model, F = c->d_ff, hd = c->head_dim;
    const int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;
    int32_t *tok = malloc((size_t)BT * sizeof *tok);
    float *lg = logits ? malloc((size_t)BT * (size_t)c->n_vocab * sizeof *lg) : NULL;
    if (!tok || (logits && !lg)) {
        free(tok), free(lg);
        return cterp_error(CTERP_ENOMEM, "bench: out of memory");
    }
    for (int64_t i = 0; i < BT; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)c->n_vocab);
    cterp_hook h = {hook, noop_hook, NULL};
    cterp_forward_opts o = {.logits = lg, .hooks = hook ? &h : NULL, .n_hooks = hook ? 1 : 0};
    // the model's matmuls: (N rows, K cols) per layer, then the unembedding
    const int64_t shapes[][2] = {{qd, D}, {kvd, D}, {kvd, D}, {D, qd}, {F, D}, {F, D}, {D, F}};
    const int n_shapes = c->mlp_gated ? 7 : 6;
    double flop_layer = 0, t_layer = 0;
    for (int i = 0; i < n_shapes; i++) {
        int64_t N = shapes[i][0], K = shapes[i][1];
        if (!c->mlp_gated && i == 5) N = D, K = F; // up then down
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
    double t[MAXREPS];
    s = cterp_model_forward(m, tok, B, T, &o); // warm-up: pages the weights in
    int reps = 0;
    double tw = time_now();
    while (!s && ((time_now() - tw < seconds || reps < 3) && reps < MAXREPS)) {
        double t1 = time_now();
        s = cterp_model_forward(m, tok, B, T, &o);
        t[reps++] = time_now() - t1;
    }
    free(tok), free(lg);
    if (s) return s;
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    double dt = t[reps / 2];
    *r = (prefill_result){BT / dt, flop / dt / 1e9, BT / t_roof, flop / t_roof / 1e9, reps, n_layers};
    return CTERP_OK;
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
    int layer, dim;
    if (hook && cterp_model_hook_info(m, hook, &layer, &dim)) {
        cli_error("bench");
        cterp_model_free(m);
        return 1;
    }
    (void)layer, (void)dim;
    const int64_t BT = (int64_t)B * T;
    int32_t *tok = malloc((size_t)BT * sizeof *tok);
    if (!tok) {
        fprintf(stderr, "cterp bench: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < BT; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)c->n_vocab);
    prefill_result pr = {0};
    if (prefill(m, B, T, hook, seconds, &pr)) {
        cli_error("bench");
        return 1;
    }
    printf("prefill B=%d T=%d to %s (%d of %d layers): %.0f tokens/s (median of %d, %.3f s each), "
           "matmuls %.1f GFLOP/s; SGEMM roofline for these shapes %.0f tokens/s (%.1f GFLOP/s): "
           "reached %.1f%%\n",
           B, T, hook ? hook : "the logits", pr.n_layers, c->n_layers, pr.tok_s, pr.reps, BT / pr.tok_s,
           pr.gflops, pr.roof_tok_s, pr.roof_gflops, 100.0 * pr.tok_s / pr.roof_tok_s);

    if (n_decode > 0) {
        cterp_kv_cache *kc;
        if (cterp_kv_cache_create(&kc, m, n_decode + 1)) {
            cli_error("bench");
            return 1;
        }
        float *l1 = malloc((size_t)c->n_vocab * sizeof *l1);
        cterp_forward_opts od = {.logits = l1, .last_only = 1};
        const int huge = cterp_model_huge_pages(m);
        const double bytes = (double)cterp_model_weight_bytes(m, c->n_layers, 1);
        read_probe rp;
        if (!l1 || probe_open(&rp, bytes, huge)) {
            fprintf(stderr, "cterp bench: out of memory for the decode's read probe\n");
            return 1;
        }
        cterp_model_decode(m, kc, tok, 1, &od); // warm-up
        probe_pass(&rp);
        double td[4096], tr[4096];
        int nd = n_decode < 4096 ? n_decode : 4096;
        for (int i = 0; i < nd; i++) {
            double t1 = time_now();
            if (cterp_model_decode(m, kc, tok + 1 + i % (BT - 1 > 0 ? BT - 1 : 1), 1, &od)) {
                cli_error("bench");
                return 1;
            }
            td[i] = time_now() - t1;
            tr[i] = probe_pass(&rp);
        }
        munmap(rp.raw, rp.len);
        qsort(td, (size_t)nd, sizeof td[0], cmp_d);
        qsort(tr, (size_t)nd, sizeof tr[0], cmp_d);
        const double t_bound = tr[nd / 2], bw = (double)rp.n * sizeof(float) / t_bound / 1e9;
        printf("decode: %.1f tokens/s (median of %d steps, %.2f ms each); weights %.1f MB per token "
               "(%s); reading as many bytes with all threads, in turns with the steps: %.1f GB/s "
               "(median), bound %.1f tokens/s, reached %.1f%%\n",
               1.0 / td[nd / 2], nd, td[nd / 2] * 1e3, bytes / 1e6,
               huge ? "read into 2 MiB pages" : "mapped, 4 KiB pages", bw, 1.0 / t_bound,
               100.0 * t_bound / td[nd / 2]);
        free(l1);
        cterp_kv_cache_free(kc);
    }
    printf("peak RSS %.0f MB\n", platform_peak_rss() / 1048576.0);
    free(tok);
    cterp_model_free(m);
    return 0;
}

// --pipeline: the stages of `cterp train --model` alone and together. Forward: prefill of
// model_batch x context_size windows to the hook, against its roofline, and the same to the last
// layer (the forward stops after the hook's layer: it costs that fraction). SAE: the training
// step alone on Gaussian activations of the hook's width. End to end: cterp_train_sae over a
// stream of random token ids (or --data), as the CLI runs it; the ideal is the slower stage alone.
static void pipe_log(const cterp_train_metrics *mt, void *user) {
    *(cterp_train_metrics *)user = *mt;
}

int cmd_bench_pipeline(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.eval_windows = 0;
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cfg.training_steps = 30;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--pipeline")) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: cterp bench --pipeline --model M.gguf (--layer L --component C | --hook H)\n"
                   "                   [--data D] [--context-size T] [--model-batch B] [--overlap 0|1]\n"
                   "                   [--seconds S] [train flags: --steps, --batch-size, --d-sae, --k, ...]\n\n"
                   "Forward alone (model_batch x context windows to the hook; the roofline and the cost of\n"
                   "running every layer instead), the SAE step alone (Gaussian rows of the hook's width), and\n"
                   "both together as `cterp train --model` runs them (over --data, or random token ids),\n"
                   "end-to-end tokens/s against the ideal: the slower stage alone. Defaults: 30 steps.\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cterp bench: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int r = cli_model_flag(&mo, a, v);
        if (r < 0) {
            fprintf(stderr, "cterp bench: %s: bad value '%s'\n", a, v);
            return 2;
        }
        if (r > 0) continue;
        if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--steps")) cfg.training_steps = atoll(v);
        else if (!strncmp(a, "--", 2) && !cterp_train_config_set(&cfg, a + 2, v)) continue;
        else {
            fprintf(stderr, "cterp bench: %s\n", !strncmp(a, "--", 2) ? cterp_last_error() : "unexpected argument");
            return 2;
        }
    }
    char hook[256];
    if (!mo.model || cli_model_hook(&mo, hook, sizeof hook)) {
        if (!mo.model) fprintf(stderr, "cterp bench: --pipeline needs --model\n");
        else cli_error("bench");
        return 2;
    }
    cterp_model *m;
    if (cterp_model_open(&m, mo.model)) {
        cli_error("bench");
        return 1;
    }
    const cterp_model_config *c = cterp_model_config_of(m);
    int layer, D;
    if (cterp_model_hook_info(m, hook, &layer, &D)) {
        cli_error("bench");
        cterp_model_free(m);
        return 1;
    }
    print_blas(kern->vec->fma_peak());
    const int B = mo.store.model_batch, T = mo.store.windows.context_size;
    printf("model: %s, %s, %d layers, d_model %d, weights %s | hook %s (width %d) | windows %d x %d tokens\n",
           mo.model, c->arch, c->n_layers, c->d_model, cterp_model_weight_type(m), hook, D, B, T);
    prefill_result ph = {0}, pl = {0};
    char last[64];
    snprintf(last, sizeof last, "blocks.%d.hook_resid_post", c->n_layers - 1);
    if (prefill(m, B, T, hook, seconds, &ph) || prefill(m, B, T, last, seconds, &pl)) {
        cli_error("bench");
        cterp_model_free(m);
        return 1;
    }
    printf("forward to the hook (%d of %d layers): %.0f tokens/s, %.1f GFLOP/s, SGEMM roofline %.0f tokens/s "
           "(%.1f%%); all %d layers: %.0f tokens/s (the hook's forward takes %.2f of its time)\n",
           ph.n_layers, c->n_layers, ph.tok_s, ph.gflops, ph.roof_tok_s, 100 * ph.tok_s / ph.roof_tok_s,
           c->n_layers, pl.tok_s, pl.tok_s / ph.tok_s);
    double sae = bench_sae_tokens_per_s(&cfg, D, 10);
    printf("SAE step alone (%s, d_sae %lld, batch %lld): %.0f tokens/s\n", cterp_arch_name(cfg.architecture),
           (long long)cterp_train_config_d_sae(&cfg, D), (long long)cfg.batch_size, sae);

    // end to end over --data, or a stream of random ids written to a temporary .u32.bin
    char tmp[512] = "";
    int po_bos_off = 0;
    const char *data = mo.data;
    if (!data) {
        const char *td = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(tmp, sizeof tmp, "%s/cterp-bench-pipeline-%d.u32.bin", td, (int)getpid());
        int64_t n = (cfg.training_steps + 2) * cfg.batch_size + (int64_t)B * T * 2;
        const cterp_tokenizer *tv = cterp_model_tokenizer(m); // ids the windows reader accepts
        const uint64_t n_ids = (uint64_t)(tv ? cterp_tokenizer_n_vocab(tv) : c->n_vocab);
        FILE *f = fopen(tmp, "wb");
        rng_t r;
        rng_seed(&r, 7);
        for (int64_t i = 0; f && i < n; i++) {
            uint32_t id = (uint32_t)rng_below(&r, n_ids);
            fwrite(&id, 4, 1, f);
        }
        if (!f || fclose(f)) {
            fprintf(stderr, "cterp bench: cannot write %s\n", tmp);
            cterp_model_free(m);
            return 1;
        }
        data = tmp;
        const cterp_tokenizer *tk = cterp_model_tokenizer(m);
        if (!tk || cterp_tokenizer_bos(tk) < 0) po_bos_off = 1; // ids only: no BOS to prepend
    }
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.model_name = cli_base_name(mo.model);
    po.store = mo.store;
    if (po_bos_off) po.store.windows.prepend_bos = 0, po.store.windows.separator = CTERP_SEP_NONE;
    cterp_train_metrics last_m = {0};
    po.log = pipe_log;
    po.log_user = &last_m;
    po.eval_windows = 0;
    cfg.log_every = 1;
    cterp_sae *s = NULL;
    double t0 = time_now();
    cterp_status st = cterp_train_sae(m, 0, hook, data, &cfg, NULL, &po, &s, NULL);
    double el = time_now() - t0;
    if (tmp[0]) remove(tmp);
    if (st) {
        cli_error("bench");
        cterp_model_free(m);
        return 1;
    }
    double e2e = (double)s->meta.training_tokens / el, ideal = ph.tok_s < sae ? ph.tok_s : sae;
    printf("end to end (%s, %lld steps, overlap %d): %.0f tokens/s including the first fill "
           "(model %.0f, SAE %.0f tokens/s during the run); ideal (the slower stage alone) %.0f: "
           "reached %.1f%%\n",
           mo.data ? mo.data : "random ids", (long long)cfg.training_steps, mo.store.overlap, e2e,
           last_m.source_tokens_per_s, last_m.sae_tokens_per_s, ideal, 100 * e2e / ideal);
    printf("peak RSS %.0f MB\n", platform_peak_rss() / 1048576.0);
    cterp_sae_free(s);
    cterp_model_free(m);
    return 0;
}
