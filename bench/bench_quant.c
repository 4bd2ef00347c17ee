// Per-weight cost of the quantized-row kernels (not a test).
//
// bench_quant [TYPE ...]: the fused row·vector dot with f32 x (quant_dot_row), the integer dot
// with x prepared once per pass over the matrix (quant_xq_prepare + quant_dot_xq: the single-token
// decode; the same as the f32 dot for types without an integer kernel) and row dequantization
// (the batched forward's tiles), one thread, on a 768 x 3072 matrix (rows of 3072) of each type,
// under the kernel variant chosen for this CPU (or CTERP_ISA). Each figure is the best of 5
// timings of a pass over the whole matrix.
//
// bench_quant --decode [--mb MB] [--reps R] [TYPE ...]: the single-token matvec as the decode runs
// it (x prepared once, then every row dotted, rows split over the threads), on the Llama-3.2-1B
// MLP's shapes (8192 x 2048 and 2048 x 8192), in GB/s of weight bytes, 1 and 2 threads: "one" is
// quant_matvec_xq on runs of 16 rows read one at a time (QUANT_MV_ONE), "side" the same with rows
// side by side (QUANT_MV_SIDE: 4 under AVX-512, 2 under AVX2; the same as "one" for the types
// without multi-row kernels), "read" a plain sum of the same bytes (the bound). Each matvec reads a fresh copy of
// the matrix (MB of copies in all, default 1024: the weights stream from memory as in a decode);
// the methods take turns matvec by matvec, so a busy machine slows each alike. --hot: one ~1 MB
// matrix (in L2) read again and again: the kernels' own speed, with memory out of the way. --768:
// also 2048 x 768 (the 768-wide model's rows, 3 super-blocks, under 2 KB of Q4_K). Medians
// of CPU time (the slowest thread's), which leave out the time other processes held the cores.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "core/rng.h"
#include "cterp/isa.h"
#include "kern/kern.h"
#include "model/quant.h"

enum { ROWS = 768, K = 3072, REPS = 5 };
volatile double bench_sink; // keeps the results live

static void bench(uint32_t t, const float *w, const float *x, float *y) {
    size_t rb = quant_row_bytes(t, K);
    uint8_t *q = malloc(rb * ROWS);
    for (int r = 0; r < ROWS; r++) quant_quantize_row(t, w + (size_t)r * K, q + r * rb, K);
    double best_dot = 1e30, best_xq = 1e30, best_deq = 1e30, sink = 0;
    void *buf = malloc(quant_xq_bytes(K));
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = time_now();
        for (int r = 0; r < ROWS; r++) sink += quant_dot_row(t, q + r * rb, x, K);
        double t1 = time_now();
        quant_xq xq;
        quant_xq_prepare(&xq, buf, x, K);
        for (int r = 0; r < ROWS; r++) sink += quant_dot_xq(t, q + r * rb, &xq);
        double t2 = time_now();
        for (int r = 0; r < ROWS; r++) quant_dequant_row(t, q + r * rb, y, K), sink += y[r];
        double t3 = time_now();
        if (t1 - t0 < best_dot) best_dot = t1 - t0;
        if (t2 - t1 < best_xq) best_xq = t2 - t1;
        if (t3 - t2 < best_deq) best_deq = t3 - t2;
    }
    double n = (double)ROWS * K;
    bench_sink = sink;
    printf("%-7s %6.3f bits/weight  dot %6.3f  int dot %6.3f  dequant %6.3f ns/weight\n",
           gguf_type_name(t), 8.0 * (double)rb / K, 1e9 * best_dot / n, 1e9 * best_xq / n,
           1e9 * best_deq / n);
    free(q), free(buf);
}

// ---- --decode ---------------------------------------------------------------------------------

enum { M_READ, M_ONE, M_SIDE, N_METHODS, MV_RUN = 16 };
static const char *METHOD[N_METHODS] = {"read", "one", "side"};

// Σ of the bytes as 64-bit words (16 bytes a load in GCC's portable vectors, four chains): the
// cost of reading them
typedef uint64_t u64x2 __attribute__((vector_size(16)));
static uint64_t read_sum(const uint8_t *p, size_t bytes) {
    u64x2 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0, w0, w1, w2, w3;
    size_t i = 0;
    for (; i + 64 <= bytes; i += 64) {
        memcpy(&w0, p + i, 16), memcpy(&w1, p + i + 16, 16);
        memcpy(&w2, p + i + 32, 16), memcpy(&w3, p + i + 48, 16);
        a0 += w0, a1 += w1, a2 += w2, a3 += w3;
    }
    u64x2 t = (a0 + a1) + (a2 + a3);
    uint64_t s = t[0] + t[1];
    for (; i < bytes; i++) s += p[i];
    return s;
}

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// One matvec y = W x by `method` on nt threads (x prepared first, as model_matmul does). Returns
// its time as CPU time: the preparation plus the slowest thread's share, each thread timing its
// own rows (on a machine shared with other work, wall time mostly measures who else ran).
static double matvec(int method, int nt, uint32_t t, const uint8_t *W, size_t rb, int64_t N,
                     const float *x, int64_t Kc, void *buf, float *y, uint64_t *sink) {
    double t0 = thread_cpu(), slowest = 0;
    quant_xq q;
    if (method != M_READ) quant_xq_prepare(&q, quant_has_xq(t) ? buf : NULL, x, Kc);
    double prep = thread_cpu() - t0;
    uint64_t sum = 0;
#pragma omp parallel num_threads(nt) reduction(max : slowest) reduction(+ : sum)
    {
        double t1 = thread_cpu();
        if (method == M_READ) {
#pragma omp for schedule(static) nowait
            for (int64_t c = 0; c < N; c += MV_RUN)
                sum += read_sum(W + (size_t)c * rb, (size_t)(N - c < MV_RUN ? N - c : MV_RUN) * rb);
        } else {
#pragma omp for schedule(static) nowait
            for (int64_t c = 0; c < N; c += MV_RUN)
                quant_matvec_xq(y + c, t, W + (size_t)c * rb, rb, N - c < MV_RUN ? N - c : MV_RUN,
                                &q, method == M_ONE ? QUANT_MV_ONE : QUANT_MV_SIDE);
        }
        slowest = thread_cpu() - t1;
    }
    *sink += sum + (uint64_t)(y[0] != 0);
    return prep + slowest;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_decode(uint32_t t, int64_t N, int64_t Kc, double mb, int reps, int hot) {
    size_t rb = quant_row_bytes(t, Kc);
    if (hot) N = (((1 << 20) / (int64_t)rb) + MV_RUN - 1) / MV_RUN * MV_RUN; // ~1 MB: in L2
    size_t bytes = rb * (size_t)N;
    int copies = hot ? 1 : (int)ceil(mb * 1048576.0 / (double)bytes);
    if (!hot && copies < 2) copies = 2;
    if (hot) reps *= 60;
    uint8_t *W = malloc(bytes * (size_t)copies);
    float *w = malloc(sizeof(float) * (size_t)Kc), *x = malloc(sizeof(float) * (size_t)Kc);
    float *y = malloc(sizeof(float) * (size_t)N), *y0 = malloc(sizeof(float) * (size_t)N);
    void *buf = malloc(quant_xq_bytes(Kc) + 64);
    rng_t r;
    rng_seed(&r, 11);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < Kc; k++) w[k] = rng_normal(&r) * 0.02f;
        quant_quantize_row(t, w, W + (size_t)n * rb, Kc);
    }
    for (int c = 1; c < copies; c++) memcpy(W + (size_t)c * bytes, W, bytes);
    for (int64_t k = 0; k < Kc; k++) x[k] = rng_normal(&r);
    // the rows side by side give the bits of one at a time
    uint64_t sink = 0;
    matvec(M_ONE, 2, t, W, rb, N, x, Kc, buf, y0, &sink);
    matvec(M_SIDE, 2, t, W, rb, N, x, Kc, buf, y, &sink);
    double worst = 0;
    for (int64_t n = 0; n < N; n++) worst = fmax(worst, fabs((double)y[n] - y0[n]));
    enum { CFG = 2 * N_METHODS };
    int ns[CFG] = {0}, per = copies * reps / CFG + 1;
    double *ts = malloc(sizeof(double) * CFG * (size_t)per);
    for (int rep = 0; rep < reps; rep++)
        for (int c = 0; c < copies; c++) {
            int cfg = (c + rep) % CFG, method = cfg % N_METHODS, nt = 1 + cfg / N_METHODS;
            double dt = matvec(method, nt, t, W + (size_t)c * bytes, rb, N, x, Kc, buf, y, &sink);
            if (ns[cfg] < per) ts[cfg * per + ns[cfg]++] = dt;
        }
    bench_sink = (double)sink;
    printf("%-5s %5lld x %-5lld %6.1f MB x %3d:", gguf_type_name(t), (long long)N, (long long)Kc,
           (double)bytes / 1e6, copies);
    for (int nt = 1; nt <= 2; nt++) {
        printf("  %dT", nt);
        for (int m = 0; m < N_METHODS; m++) {
            int cfg = (nt - 1) * N_METHODS + m;
            qsort(ts + cfg * per, (size_t)ns[cfg], sizeof(double), cmp_d);
            double med = ts[cfg * per + ns[cfg] / 2];
            printf(" %s %5.1f", METHOD[m], (double)bytes / med / 1e9);
        }
    }
    printf(" GB/s  (n=%d; side-one max |diff| %.2g)\n", ns[0], worst);
    fflush(stdout);
    free(W), free(w), free(x), free(y), free(y0), free(buf), free(ts);
}

int main(int argc, char **argv) {
    if (cterp_isa_init()) { // a CTERP_ISA this CPU cannot run, or unknown
        fprintf(stderr, "%s\n", cterp_last_error());
        return 1;
    }
    printf("cpu: %s; kernels: %s\n", cterp_cpu_name(), cterp_isa_name());
    int decode = 0, hot = 0, reps = 4, a0 = 1, cols768 = 0;
    double mb = 1024;
    for (; a0 < argc && argv[a0][0] == '-'; a0++) {
        if (!strcmp(argv[a0], "--decode"))
            decode = 1;
        else if (!strcmp(argv[a0], "--hot"))
            hot = 1;
        else if (!strcmp(argv[a0], "--768"))
            cols768 = 1;
        else if (!strcmp(argv[a0], "--mb") && a0 + 1 < argc)
            mb = atof(argv[++a0]);
        else if (!strcmp(argv[a0], "--reps") && a0 + 1 < argc)
            reps = atoi(argv[++a0]);
        else {
            fprintf(
                stderr,
                "usage: bench_quant [--decode [--hot] [--768] [--mb MB] [--reps R]] [TYPE ...]\n");
            return 2;
        }
    }
    if (decode) {
        static const uint32_t DEF[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                       GGML_TYPE_F16};
        printf("GB/s of weight bytes, medians; the methods interleaved matvec by matvec\n");
        for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
            if (!quant_supported(t)) continue;
            int want = 0;
            for (int a = a0; a < argc; a++) want |= !strcmp(argv[a], gguf_type_name(t));
            if (a0 == argc)
                for (size_t i = 0; i < sizeof DEF / sizeof DEF[0]; i++) want |= DEF[i] == t;
            if (!want) continue;
            bench_decode(t, 8192, 2048, mb, reps, hot);
            bench_decode(t, 2048, 8192, mb, reps, hot);
            if (cols768) bench_decode(t, 2048, 768, mb, reps, hot);
        }
        return 0;
    }
    float *w = malloc(sizeof(float) * ROWS * K), *x = malloc(sizeof(float) * K);
    float *y = malloc(sizeof(float) * K);
    rng_t r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)ROWS * K; i++) w[i] = rng_normal(&r) * 0.02f;
    for (int i = 0; i < K; i++) x[i] = rng_normal(&r);
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        if (!quant_supported(t)) continue;
        int want = a0 == argc;
        for (int a = a0; a < argc; a++) want |= !strcmp(argv[a], gguf_type_name(t));
        if (want) bench(t, w, x, y);
    }
    free(w), free(x), free(y);
    return 0;
}
