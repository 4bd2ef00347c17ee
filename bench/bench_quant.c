// Per-weight cost of the quantized-row kernels (not a test): the fused row·vector dot with f32 x
// (quant_dot_row), the integer dot with x prepared once per pass over the matrix (quant_xq_prepare
// + quant_dot_xq: the single-token decode; the same as the f32 dot for types without an integer
// kernel) and row dequantization (the batched forward's tiles), one thread, on a
// 768 x 3072 matrix (rows of 3072) of each type, under the kernel variant chosen for this CPU
// (or CTERP_ISA). Each figure is the best of 5 timings of a pass over the whole matrix.
// usage: bench_quant [TYPE ...]   (default: every supported type)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/rng.h"
#include "cterp/isa.h"
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

int main(int argc, char **argv) {
    if (cterp_isa_init()) { // a CTERP_ISA this CPU cannot run, or unknown
        fprintf(stderr, "%s\n", cterp_last_error());
        return 1;
    }
    printf("cpu: %s; kernels: %s\n", cterp_cpu_name(), cterp_isa_name());
    float *w = malloc(sizeof(float) * ROWS * K), *x = malloc(sizeof(float) * K);
    float *y = malloc(sizeof(float) * K);
    rng_t r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)ROWS * K; i++) w[i] = rng_normal(&r) * 0.02f;
    for (int i = 0; i < K; i++) x[i] = rng_normal(&r);
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        if (!quant_supported(t)) continue;
        int want = argc < 2;
        for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], gguf_type_name(t));
        if (want) bench(t, w, x, y);
    }
    free(w), free(x), free(y);
    return 0;
}
