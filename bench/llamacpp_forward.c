// llama.cpp's forward on a GGUF, timed as `cterp bench --model` times cterp's (not a test;
// bench/llamacpp_forward.sh compiles it against the oracle's prebuilt llama.cpp,
// scripts/oracle/setup.sh). Prefill: one sequence of T tokens in one llama_decode, the logits of
// every position (as cterp bench's), the cache cleared between repeats (the median of R). Decode: one warm-up token, then
// N tokens one at a time through the KV cache, logits of the last token each step (the median
// step). llama.cpp's defaults otherwise (its F16 KV cache and flash attention: an F32 cache, as
// cterp's, made it convert the whole cache to F16 every step, 77% of the time).
//   llamacpp_forward MODEL.gguf [N] [THREADS] [T] [R]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR || getenv("LLAMACPP_LOG")) fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: llamacpp_forward MODEL.gguf [N] [THREADS] [T] [R]\n");
        return 2;
    }
    const int n = argc > 2 ? atoi(argv[2]) : 32, nt = argc > 3 ? atoi(argv[3]) : 2;
    const int T = argc > 4 ? atoi(argv[4]) : 128, reps = argc > 5 ? atoi(argv[5]) : 5;
    if (n < 1 || n > 4096 || nt < 1 || T < 1 || T > 4096 || reps < 1 || reps > 4096) {
        fprintf(stderr,
                "llamacpp_forward: N in 1..4096, THREADS >= 1, T in 1..4096, R in 1..4096\n");
        return 2;
    }
    const char *backends = getenv("ORACLE_BACKENDS");
    if (!backends) {
        fprintf(stderr,
                "llamacpp_forward: ORACLE_BACKENDS is not set (source scripts/oracle/setup.sh)\n");
        return 1;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(backends);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "llamacpp_forward: %s: llama.cpp could not load it\n", argv[1]);
        return 1;
    }
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)((n > T ? n : T) + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)T;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = nt;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llamacpp_forward: %s: no context\n", argv[1]);
        return 1;
    }
    struct llama_batch b = llama_batch_init(T, 0, 1);
    double *t = malloc(sizeof(double) * (size_t)(n > reps ? n : reps));
    for (int r = 0; r <= reps; r++) { // r 0: the warm-up
        for (int i = 0; i < T; i++) {
            b.token[i] = (i * 7919 + 13) % V, b.pos[i] = i, b.n_seq_id[i] = 1, b.seq_id[i][0] = 0;
            b.logits[i] = 1; // every position's, as cterp bench's prefill to the logits
        }
        b.n_tokens = T;
        llama_memory_clear(llama_get_memory(ctx), true);
        const double t0 = now();
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "llamacpp_forward: llama_decode failed on the prefill\n");
            return 1;
        }
        (void)llama_get_logits(ctx);
        if (r) t[r - 1] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    printf("llama.cpp prefill: %.0f tokens/s (T=%d, median of %d, %.3f s each), %d threads\n",
           T / t[reps / 2], T, reps, t[reps / 2], nt);
    llama_memory_clear(llama_get_memory(ctx), true);
    for (int i = 0; i <= n; i++) { // step 0: the warm-up
        b.token[0] = (i * 7919 + 13) % V, b.pos[0] = i, b.n_seq_id[0] = 1, b.seq_id[0][0] = 0;
        b.logits[0] = 1, b.n_tokens = 1;
        const double t0 = now();
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "llamacpp_forward: llama_decode failed at step %d\n", i);
            return 1;
        }
        (void)llama_get_logits_ith(ctx, 0);
        if (i) t[i - 1] = now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    printf("llama.cpp decode: %.1f tokens/s (median of %d steps, %.2f ms each), %d threads\n",
           1.0 / t[n / 2], n, t[n / 2] * 1e3, nt);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    free(t);
    return 0;
}
