// Model forward throughput (not a test): batched prefill tokens/s and single-token decode
// tokens/s on stories260K and on a synthetic 12-layer d_model-768 llama in F32 and Q8_0.
// usage: bench_model [stories260K.gguf] [--skip-synthetic]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/synth_model.h"
#include "core/file.h"
#include "cterp/isa.h"
#include "cterp/model.h"

static double params_of(const cterp_model_config *c) {
    double D = c->d_model, F = c->d_ff, hd = c->head_dim;
    double per = D * hd * (c->n_heads * 2 + c->n_kv_heads * 2) + 3 * D * F;
    return c->n_layers * per + (double)c->n_vocab * D; // matmul weights incl. the unembedding
}

static int bench(const char *label, const char *path, int B, int T, int reps, int n_decode) {
    cterp_model *m;
    if (cterp_model_open(&m, path)) {
        fprintf(stderr, "%s: %s\n", label, cterp_last_error());
        return 1;
    }
    const cterp_model_config *c = cterp_model_config_of(m);
    int32_t *tok = malloc((size_t)B * T * sizeof *tok);
    float *logits = malloc((size_t)B * T * c->n_vocab * sizeof *logits);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7919u + 13) % (unsigned)c->n_vocab);
    cterp_forward_opts o = {.logits = logits};
    if (cterp_model_forward(m, tok, B, T, &o)) { // warm-up (page in the weights)
        fprintf(stderr, "%s: %s\n", label, cterp_last_error());
        return 1;
    }
    double t0 = time_now();
    for (int r = 0; r < reps; r++) cterp_model_forward(m, tok, B, T, &o);
    double dt = (time_now() - t0) / reps;
    double flop = 2.0 * params_of(c) * B * T;
    printf("%-26s prefill B=%d T=%-4d %9.0f tokens/s  (%.2f s/batch, %.1f GFLOP/s in matmuls)\n",
           label, B, T, B * T / dt, dt, flop / dt / 1e9);
    if (n_decode > 0) {
        cterp_kv_cache *kc;
        cterp_kv_cache_create(&kc, m, n_decode);
        o.last_only = 1;
        t0 = time_now();
        for (int i = 0; i < n_decode; i++) cterp_model_decode(m, kc, tok + i, 1, &o);
        dt = time_now() - t0;
        printf("%-26s decode  %d tokens     %9.0f tokens/s\n", label, n_decode, n_decode / dt);
        cterp_kv_cache_free(kc);
    }
    free(tok);
    free(logits);
    cterp_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (cterp_isa_init()) { // a CTERP_ISA this CPU cannot run, or unknown
        fprintf(stderr, "%s\n", cterp_last_error());
        return 2;
    }
    printf("cpu: %s | cterp kernels: %s (%s)\n", cterp_cpu_name(), cterp_isa_name(), cterp_isa_description());
    const char *stories = NULL;
    int synthetic = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--skip-synthetic"))
            synthetic = 0;
        else
            stories = argv[i];
    }
    char def[4096];
    if (!stories) {
        const char *d = getenv("CTERP_TESTDATA");
        snprintf(def, sizeof def, "%s/models/stories260K.gguf", d ? d : "../shared/testdata");
        stories = def;
    }
    printf("threads: %d\n", omp_get_max_threads());
    if (file_exists(stories))
        bench("stories260K (F32)", stories, 8, 256, 5, 256);
    else
        printf("stories260K not found at %s: skipped\n", stories);
    if (!synthetic) return 0;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    uint32_t types[2] = {GGML_TYPE_F32, GGML_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        char path[1024], label[64];
        snprintf(path, sizeof path, "%s/cterp-bench-llama768-%d.gguf", tmp, (int)getpid());
        synth_cfg sc = {0, 12, 768, 12, 12, 2048, 8192, 1024, 64, 0, 0, types[i], 1, 0};
        if (synth_write(path, &sc)) {
            fprintf(stderr, "%s\n", cterp_last_error());
            return 1;
        }
        snprintf(label, sizeof label, "llama 12x768 (%s)", gguf_type_name(types[i]));
        bench(label, path, 4, 128, 2, 32);
        remove(path);
    }
    return 0;
}
