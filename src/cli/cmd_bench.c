// cterp bench: training-step speed on random activations, against the machine's own SGEMM rate.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/blas.h"
#include "core/file.h"
#include "core/platform.h"
#include "kern/kern.h"
#include "cterp/isa.h"
#include "core/rng.h"
#include "sae/bf16.h"
#include "cterp/train.h"

typedef struct {
    float *pool; // (P, B, D) pre-drawn unit Gaussian batches, cycled
    int64_t B, D, P, i;
} bench_src;

static cterp_status bench_next(void *ctx, float *x, int64_t B) {
    bench_src *s = ctx;
    memcpy(x, s->pool + (s->i++ % s->P) * s->B * s->D, (size_t)(B * s->D) * sizeof(float));
    return CTERP_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// SGEMM rate of the encoder's shape: (B, D) x (D, N). The median of the calls made in ~1 s (one
// slow or fast call moved the mean by 5-10% on a shared machine).
double sgemm_gflops(int64_t B, int64_t D, int64_t N) {
    float *x = malloc((size_t)(B * D) * sizeof(float)), *w = malloc((size_t)(N * D) * sizeof(float));
    float *z = malloc((size_t)(B * N) * sizeof(float));
    if (!x || !w || !z) {
        free(x), free(w), free(z);
        return NAN;
    }
    for (int64_t q = 0; q < B * D; q++) x[q] = (float)(q % 13) * 0.01f;
    for (int64_t q = 0; q < N * D; q++) w[q] = (float)(q % 7) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)N, (int)D, 1.0f, x, (int)D, w,
                (int)D, 0.0f, z, (int)N);
    enum { MAXREPS = 1000 };
    static double t[MAXREPS];
    int reps = 0;
    double t0 = time_now();
    do {
        double t1 = time_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)N, (int)D, 1.0f, x, (int)D, w,
                    (int)D, 0.0f, z, (int)N);
        t[reps++] = time_now() - t1;
    } while ((time_now() - t0 < 1.0 || reps < 3) && reps < MAXREPS);
    free(x), free(w), free(z);
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return 2.0 * B * D * N / t[reps / 2] / 1e9;
}

// The same for the bf16 encoder GEMM (encoder_bf16), packing of both operands included.
static double bf16_gflops(int64_t B, int64_t D, int64_t N) {
    float *x = malloc((size_t)(B * D) * sizeof(float)), *w = malloc((size_t)(N * D) * sizeof(float));
    // aligned as the trainer's z, so that the streaming stores run as in training
    float *z = aligned_alloc(64, ((size_t)(B * N) * sizeof(float) + 63) / 64 * 64), *bias = calloc((size_t)N, sizeof(float));
    uint32_t *xp = malloc((size_t)bf16_packed_x_words(B, D) * sizeof(uint32_t));
    uint32_t *wp = malloc((size_t)bf16_packed_w_words(N, D) * sizeof(uint32_t));
    double rate = NAN;
    if (x && w && z && bias && xp && wp) {
        for (int64_t q = 0; q < B * D; q++) x[q] = (float)(q % 13) * 0.01f;
        for (int64_t q = 0; q < N * D; q++) w[q] = (float)(q % 7) * 0.01f;
        enum { MAXREPS = 1000 };
        static double t[MAXREPS];
        int reps = -1; // the first call is a warm-up
        double t0 = time_now();
        do {
            double t1 = time_now();
            bf16_pack_x(xp, x, B, D);
            bf16_pack_w(wp, w, N, D);
            bf16_gemm(z, xp, wp, bias, B, N, D);
            if (reps >= 0) t[reps] = time_now() - t1;
            reps++;
        } while ((time_now() - t0 < 1.0 || reps < 3) && reps < MAXREPS);
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        rate = 2.0 * B * D * N / t[reps / 2] / 1e9;
    }
    free(x), free(w), free(z), free(bias), free(xp), free(wp);
    return rate;
}

// Which BLAS kernels run. OpenBLAS picks them from the CPU at load time unless OPENBLAS_CORETYPE
// names a core; an AVX2 core on an AVX-512 CPU halves the SGEMM rate (measured on a Zen 5:
// 175-195 GFLOP/s as Haswell, 330-360 as OpenBLAS's own choice, Cooperlake).
void print_blas(double peak) {
    const char *core = openblas_get_corename(), *pin = getenv("OPENBLAS_CORETYPE");
    printf("cpu: %s | cterp kernels: %s (%s)\n", cterp_cpu_name(), cterp_isa_name(), cterp_isa_description());
    printf("blas: %s | core %s%s%s%s | %d threads | f32 FMA peak (%s vectors) %.1f GFLOP/s\n", openblas_get_config(), core,
           pin ? " (OPENBLAS_CORETYPE=" : "", pin ? pin : "", pin ? ")" : "", omp_get_max_threads(),
           cterp_isa_name(), peak);
    if (pin && (platform_cpu_features() & CPU_X86_64_V4) &&
        (!strcasecmp(core, "haswell") || !strcasecmp(core, "zen") || !strcasecmp(core, "sandybridge")))
        printf("note: OPENBLAS_CORETYPE=%s pins OpenBLAS to AVX2 kernels on this AVX-512 CPU; without it\n"
               "      OpenBLAS chooses its AVX-512 kernels (about twice the SGEMM rate here)\n", pin);
}

double bench_sae_tokens_per_s(const cterp_train_config *cfg0, int64_t D, int64_t steps) {
    cterp_train_config cfg = *cfg0;
    cfg.training_steps = steps + 1;
    cfg.log_every = steps + 1;
    cfg.checkpoint_every = 0;
    const int64_t B = cfg.batch_size;
    bench_src bs = {NULL, B, D, 4, 0};
    bs.pool = malloc((size_t)(bs.P * B * D) * sizeof(float));
    if (!bs.pool) return NAN;
    rng_t r;
    rng_seed(&r, 1);
    for (int64_t q = 0; q < bs.P * B * D; q++) bs.pool[q] = rng_normal(&r);
    cterp_act_source src = {.d_in = D, .ctx = &bs, .next = bench_next};
    cterp_trainer *t;
    double tps = NAN;
    if (!cterp_train_config_validate(&cfg, D) && !cterp_trainer_create(&t, &cfg, &src)) {
        if (!cterp_trainer_run(t, 1)) {
            double t0 = time_now();
            if (!cterp_trainer_run(t, steps + 1)) tps = (double)B * steps / (time_now() - t0);
        }
        cterp_trainer_free(t);
    }
    free(bs.pool);
    return tps;
}

int cmd_bench(int argc, char **argv) {
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    int64_t D = 768, steps = 10;
    double dead = 0, l0 = 0;
    int auxk_mode = -1, fuse_mode = 0;
    cfg.d_sae = 24576, cfg.k = 32;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--pipeline")) return cmd_bench_pipeline(argc, argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--model")) return cmd_bench_model(argc, argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--synth")) return cmd_bench_synth(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: cterp bench [--arch A] [--d-in D] [--d-sae N] [--k K] [--batch B] [--steps S]\n"
                   "                   [--dead-fraction F] [--l0 L] [--FIELD VALUE ...]\n\n"
                   "Trains S steps (after one warm-up step) on unit-Gaussian activations and prints ms/step,\n"
                   "tokens/s, this machine's SGEMM rate for the encoder's shape, the fraction of that roofline\n"
                   "reached (encoder FLOPs 2*d_in*d_sae per token over the step time), and peak RSS.\n"
                   "--dead-fraction F: F of the latents dead from the start (AuxK runs on them);\n"
                   "--l0 L: standard/jumprelu: b_enc offset so about L latents fire per token.\n"
                   "--auxk-impl pairs|dense|auto: force AuxK's implementation (auto: chosen by cost).\n"
                   "--encoder-bf16 true: the bf16 encoder GEMM (the roofline is then that GEMM's rate);\n"
                   "  with topk, --bf16-topk fused|z|auto: the GEMM fused with the top-k, or through z.\n"

                   "Defaults: topk 768/24576/32, batch 4096, 10 steps.\n"
                   "cterp bench --model M.gguf [...]: the model forward instead (--model --help).\n"
                   "cterp bench --synth --preset P --archs A,B,... [...]: architectures side by side on a\n"
                   "  synthetic world with known features, scored by f1, mcc ... (--synth --help).\n"
                   "cterp bench --pipeline --model M.gguf --layer L --component C [...]: forward, SAE\n"
                   "  and both together as `cterp train --model` runs them (--pipeline --help).\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cterp bench: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--d-in")) D = atoll(v);
        else if (!strcmp(a, "--steps")) steps = atoll(v);
        else if (!strcmp(a, "--dead-fraction")) dead = atof(v);
        else if (!strcmp(a, "--l0")) l0 = atof(v);
        else if (!strcmp(a, "--auxk-impl")) {
            if (strcmp(v, "pairs") && strcmp(v, "dense") && strcmp(v, "auto")) {
                fprintf(stderr, "cterp bench: --auxk-impl: got '%s', expected pairs, dense or auto\n", v);
                return 2;
            }
            auxk_mode = !strcmp(v, "pairs") ? 0 : !strcmp(v, "dense") ? 1 : -1;
        } else if (!strcmp(a, "--bf16-topk")) {
            if (strcmp(v, "fused") && strcmp(v, "z") && strcmp(v, "auto")) {
                fprintf(stderr, "cterp bench: --bf16-topk: got '%s', expected fused, z or auto\n", v);
                return 2;
            }
            fuse_mode = !strcmp(v, "fused") ? 1 : !strcmp(v, "z") ? -1 : 0;
        }
        else if (!strncmp(a, "--", 2) && !cterp_train_config_set(&cfg, a + 2, v)) continue;
        else {
            fprintf(stderr, "cterp bench: %s\n", !strncmp(a, "--", 2) ? cterp_last_error() : "unexpected argument");
            return 2;
        }
    }
    if (D <= 0 || steps <= 0 || dead < 0 || dead >= 1) {
        fprintf(stderr, "cterp bench: --d-in and --steps must be > 0, --dead-fraction in [0, 1)\n");
        return 2;
    }
    if (fuse_mode && (!cfg.encoder_bf16 || cfg.architecture != CTERP_ARCH_TOPK)) {
        fprintf(stderr, "cterp bench: --bf16-topk applies to --arch topk with --encoder-bf16 true\n");
        return 2;
    }
    cfg.training_steps = steps + 1;
    cfg.log_every = steps + 1;
    cfg.dead_feature_window = 1000000; // only the latents made dead count as dead
    if (cfg.architecture == CTERP_ARCH_STANDARD || cfg.architecture == CTERP_ARCH_JUMPRELU)
        cfg.sparsity_warm_up_steps = 0;
    const int64_t B = cfg.batch_size, N = cterp_train_config_d_sae(&cfg, D);
    bench_src bs = {NULL, B, D, 4, 0};
    bs.pool = malloc((size_t)(bs.P * B * D) * sizeof(float));
    if (!bs.pool) {
        fprintf(stderr, "cterp bench: out of memory\n");
        return 1;
    }
    rng_t r;
    rng_seed(&r, 1);
    for (int64_t q = 0; q < bs.P * B * D; q++) bs.pool[q] = rng_normal(&r);
    cterp_act_source src = {.d_in = D, .ctx = &bs, .next = bench_next};
    snprintf(src.description, sizeof src.description, "unit Gaussian");
    cterp_trainer *t;
    if (cterp_train_config_validate(&cfg, D)) { // before the GEMM rate's second of work
        cli_error("bench");
        free(bs.pool);
        return 1;
    }
    // the GEMM's buffers are freed before the trainer allocates: peak RSS is the training's
    print_blas(kern->vec->fma_peak());
    double gf = cfg.encoder_bf16 ? bf16_gflops(B, D, N) : sgemm_gflops(B, D, N);
    if (cterp_trainer_create(&t, &cfg, &src)) {
        cli_error("bench");
        free(bs.pool);
        return 1;
    }
    cterp_trainer_bench_setup(t, dead, l0);
    cterp_trainer_bench_auxk_mode(t, auxk_mode);
    cterp_trainer_bench_fuse_mode(t, fuse_mode);
    int rc = 0;
    if (cterp_trainer_run(t, 1)) rc = 1; // warm-up step (first-touch of buffers)
    double ph0[CTERP_N_PHASES], ph1[CTERP_N_PHASES];
    cterp_trainer_phase_times(t, ph0);
    double t0 = time_now();
    if (!rc && cterp_trainer_run(t, steps + 1)) rc = 1;
    double el = time_now() - t0;
    cterp_trainer_phase_times(t, ph1);
    if (rc) {
        cli_error("bench");
    } else {
        const cterp_train_metrics *m = cterp_trainer_last_metrics(t);
        double ms = 1e3 * el / steps, tps = (double)B * steps / el;
        double roof = gf * 1e9 / (2.0 * D * N); // tokens/s if the step were only the encoder GEMM
        printf("%-9s d_in %-5lld d_sae %-6lld k %-4d batch %-5lld dead %4.1f%%  l0 %7.1f | %9.1f ms/step %10.0f tok/s"
               " | %s %6.1f GFLOP/s, roofline %9.0f tok/s, reached %5.1f%% | peak RSS %6.0f MB\n",
               cterp_arch_name(cfg.architecture), (long long)D, (long long)N, cfg.k, (long long)B, 100 * dead,
               m->l0, ms, tps, cfg.encoder_bf16 ? "bf16 gemm" : "sgemm", gf, roof, 100 * tps / roof,
               platform_peak_rss() / 1048576.0);
        double rest = el;
        printf("  ms/step by phase:");
        for (int p = 0; p < CTERP_N_PHASES; p++) {
            printf(" %s %.1f", cterp_trainer_phase_name(p), 1e3 * (ph1[p] - ph0[p]) / steps);
            rest -= ph1[p] - ph0[p];
        }
        printf(" other %.1f\n", 1e3 * rest / steps);
    }
    cterp_trainer_free(t);
    free(bs.pool);
    return rc;
}
