// Model forward against a naive reference (tests/synth_model.h: double-precision loops, no BLAS,
// no code shared with src/model): stories260K logits and residuals, synthetic llama (GQA,
// partial rotary, rope_freqs) and gpt2 models, quantized vs F32 weights per type, hooks that
// read and modify, stop_at_layer, batching, KV-cache decode, and greedy generation.
#include <omp.h>

#include "core/file.h"
#include "cterp/model.h"
#include "repack.h"
#include "synth_model.h"
#include "test.h"

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
        s += (double)b[i] * b[i];
    }
    if (scale) *scale = sqrt(s / (double)n);
    return m;
}

typedef struct {
    float *buf;
    int64_t shape[4];
    int ndim, calls;
    float add;
} capture;

static cterp_status cap_fn(const char *name, float *act, const int64_t *shape, int ndim, void *u) {
    capture *c = u;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i], c->shape[i] = shape[i];
    c->ndim = ndim;
    c->calls++;
    if (c->buf) memcpy(c->buf, act, n * sizeof *act);
    if (c->add != 0)
        for (size_t i = 0; i < n; i++) act[i] += c->add;
    return CTERP_OK;
}

static cterp_status fail_fn(const char *name, float *act, const int64_t *shape, int ndim, void *u) {
    return cterp_error(CTERP_EINVAL, "hook %s refused", name);
}

static void test_stories(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", dir);
    cterp_model *m;
    CHECK_OK(cterp_model_open(&m, path));
    if (!m) return;
    const cterp_model_config *c = cterp_model_config_of(m);
    CHECK(!strcmp(c->arch, "llama") && c->n_layers == 5 && c->d_model == 64 && c->n_heads == 8 &&
          c->n_kv_heads == 4 && c->d_ff == 172 && c->n_vocab == 512 && c->rope_base == 10000.0f);
    gguf_file *g;
    CHECK_OK(gguf_open(&g, path));
    if (!g) return;
    enum { T = 16 };
    const int V = 512, D = 64;
    const char *prompt = "Once upon a time, there was a cat who liked to sing";
    int32_t *ids;
    size_t n;
    CHECK_OK(cterp_tokenize(cterp_model_tokenizer(m), prompt, strlen(prompt), 1, 0, &ids, &n));
    int32_t tok[T];
    for (int i = 0; i < T; i++) tok[i] = ids[(size_t)i % n];
    free(ids);

    // logits and a residual vs the naive reference
    static float ref[T * 512], out[2 * T * 512], ref_res[T * 64], res[2 * T * 64];
    CHECK(ref_forward(g, tok, T, ref, 2, ref_res, -1, 0));
    cterp_forward_opts o = {0};
    o.logits = out;
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &o));
    double scale, d = max_abs_diff(out, ref, (size_t)T * V, &scale);
    CHECK_MSG(d < 1e-4, "stories260K logits differ from the reference by %.3g (rms %.3g)", d,
              scale);

    capture cp = {.buf = res};
    cterp_hook hk = {"blocks.2.hook_resid_post", cap_fn, &cp};
    cterp_forward_opts oh = {&hk, 1, 0, NULL, 0}; // no logits: stops after block 2
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &oh));
    CHECK(cp.calls == 1 && cp.ndim == 3 && cp.shape[0] == 1 && cp.shape[1] == T &&
          cp.shape[2] == D);
    d = max_abs_diff(res, ref_res, (size_t)T * D, NULL);
    CHECK_MSG(d < 1e-4, "resid_post differs by %.3g", d);

    // a hook that modifies resid_mid changes everything downstream exactly as in the reference
    CHECK(ref_forward(g, tok, T, ref, -1, NULL, 1, 0.25f));
    capture bump = {.add = 0.25f};
    cterp_hook hb = {"blocks.1.hook_resid_mid", cap_fn, &bump};
    cterp_forward_opts ob = {&hb, 1, 0, out, 0};
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &ob));
    d = max_abs_diff(out, ref, (size_t)T * V, NULL);
    CHECK_MSG(d < 1e-4, "modified forward differs by %.3g", d);

    // pattern: [B, H, T, T], rows sum to 1, causal
    static float pat[8 * T * T];
    capture pc = {.buf = pat};
    cterp_hook hp = {"blocks.0.attn.hook_pattern", cap_fn, &pc};
    cterp_forward_opts op = {&hp, 1, 0, NULL, 0};
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &op));
    CHECK(pc.ndim == 4 && pc.shape[1] == 8 && pc.shape[2] == T && pc.shape[3] == T);
    int rows_ok = 1;
    for (int r = 0; r < 8 * T; r++) {
        double s = 0;
        for (int j = 0; j < T; j++) s += pat[r * T + j];
        rows_ok &= fabs(s - 1) < 1e-5 && (r % T == T - 1 || pat[r * T + T - 1] == 0);
    }
    CHECK(rows_ok);

    // every hook point fires exactly once per forward, q/k with their head counts
    int nh = cterp_model_n_hook_points(m);
    CHECK(nh == 1 + 15 * 5 + 1);
    cterp_hook *all = calloc((size_t)nh, sizeof *all);
    capture *caps = calloc((size_t)nh, sizeof *caps);
    char(*names)[64] = calloc((size_t)nh, 64);
    for (int i = 0; i < nh; i++) {
        cterp_model_hook_point(m, i, names[i], 64);
        all[i] = (cterp_hook){names[i], cap_fn, &caps[i]};
    }
    cterp_forward_opts oa = {all, nh, 0, out, 0};
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &oa));
    int once = 1;
    for (int i = 0; i < nh; i++) once &= caps[i].calls == 1;
    CHECK(once);
    int dim;
    CHECK_OK(cterp_model_hook_info(m, "blocks.3.attn.hook_k", NULL, &dim));
    CHECK(dim == 8);
    for (int i = 0; i < nh; i++)
        if (!strcmp(names[i], "blocks.3.attn.hook_k"))
            CHECK(caps[i].ndim == 4 && caps[i].shape[2] == 4 && caps[i].shape[3] == 8);
    free(all), free(caps), free(names);

    // errors: unknown hook names list the valid ones; a failing hook aborts with its status
    cterp_hook bad = {"blocks.9.hook_resid_post", cap_fn, &cp};
    cterp_forward_opts oe = {&bad, 1, 0, NULL, 0};
    CHECK(cterp_model_forward(m, tok, 1, T, &oe) == CTERP_ENOTFOUND);
    CHECK(strstr(cterp_last_error(), "valid hook names") &&
          strstr(cterp_last_error(), "hook_resid_post"));
    cterp_hook hf = {"blocks.0.hook_mlp_out", fail_fn, NULL};
    cterp_forward_opts of = {&hf, 1, 0, NULL, 0};
    CHECK(cterp_model_forward(m, tok, 1, T, &of) == CTERP_EINVAL);
    int32_t badtok = 512;
    CHECK(cterp_model_forward(m, &badtok, 1, 1, NULL) == CTERP_EINVAL);

    // batch of two sequences == each on its own; last_only matches
    int32_t tok2[2 * T];
    for (int i = 0; i < T; i++) tok2[i] = tok[i], tok2[T + i] = tok[T - 1 - i];
    o.logits = out;
    CHECK_OK(cterp_model_forward(m, tok2, 2, T, &o));
    static float single[T * 512], last[2 * 512];
    CHECK_OK(cterp_model_forward(m, tok2 + T, 1, T, &(cterp_forward_opts){.logits = single}));
    CHECK(max_abs_diff(out + (size_t)T * V, single, (size_t)T * V, NULL) < 1e-4);
    CHECK_OK(
        cterp_model_forward(m, tok2, 2, T, &(cterp_forward_opts){.logits = last, .last_only = 1}));
    CHECK(max_abs_diff(last + V, single + (size_t)(T - 1) * V, (size_t)V, NULL) < 1e-4);

    // KV cache: prefill 10, then 6 single tokens == the full forward
    cterp_kv_cache *kc;
    CHECK_OK(cterp_kv_cache_create(&kc, m, T));
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &o));
    static float step[T * 512];
    CHECK_OK(cterp_model_decode(m, kc, tok, 10, &(cterp_forward_opts){.logits = step}));
    for (int t = 10; t < T; t++)
        CHECK_OK(cterp_model_decode(m, kc, tok + t, 1,
                                    &(cterp_forward_opts){.logits = step + (size_t)t * V}));
    d = max_abs_diff(step, out, (size_t)T * V, NULL);
    CHECK_MSG(d < 1e-4, "cached decode differs by %.3g", d);
    CHECK(cterp_kv_cache_len(kc) == T);
    CHECK(cterp_model_decode(m, kc, tok, 1, NULL) == CTERP_EINVAL); // full
    // while decoding, the pattern covers the cached keys: [1, H, n, len + n]
    cterp_kv_cache_clear(kc);
    capture dc = {0};
    cterp_hook hd = {"blocks.0.attn.hook_pattern", cap_fn, &dc};
    CHECK_OK(cterp_model_decode(m, kc, tok, 10, &(cterp_forward_opts){.hooks = &hd, .n_hooks = 1}));
    CHECK_OK(
        cterp_model_decode(m, kc, tok + 10, 2, &(cterp_forward_opts){.hooks = &hd, .n_hooks = 1}));
    CHECK(dc.calls == 2 && dc.shape[0] == 1 && dc.shape[1] == 8 && dc.shape[2] == 2 &&
          dc.shape[3] == 12);
    cterp_kv_cache_free(kc);

    // greedy generation from BOS
    int32_t bos = 1, *gen;
    int ng;
    cterp_sampler_params sp = {0};
    CHECK_OK(cterp_generate(m, &bos, 1, 40, &sp, NULL, NULL, NULL, &gen, &ng));
    char *text;
    size_t tl;
    CHECK_OK(cterp_detokenize(cterp_model_tokenizer(m), gen, (size_t)ng, 0, &text, &tl));
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park.";
    CHECK_MSG(text && !strncmp(text, want, strlen(want)), "generated '%s'", text ? text : "");
    free(text);
    free(gen);
    // hooks apply at every generation step (steering): a large push on the residual changes
    // the text, and the hook sees the prompt step plus one step per generated token but the last
    capture steer = {.add = 3.0f};
    cterp_hook hs = {"blocks.2.hook_resid_post", cap_fn, &steer};
    cterp_forward_opts os = {.hooks = &hs, .n_hooks = 1};
    CHECK_OK(cterp_generate(m, &bos, 1, 10, &sp, &os, NULL, NULL, &gen, &ng));
    CHECK(ng == 11 && steer.calls == 10);
    CHECK_OK(cterp_detokenize(cterp_model_tokenizer(m), gen, (size_t)ng, 0, &text, &tl));
    CHECK(text && strncmp(text, want, 20) != 0);
    free(text);
    free(gen);
    // seeded sampling is reproducible
    cterp_sampler_params st = {0.8f, 0.9f, 42};
    int32_t *g1, *g2;
    int n1, n2;
    CHECK_OK(cterp_generate(m, &bos, 1, 20, &st, NULL, NULL, NULL, &g1, &n1));
    CHECK_OK(cterp_generate(m, &bos, 1, 20, &st, NULL, NULL, NULL, &g2, &n2));
    CHECK(n1 == n2 && !memcmp(g1, g2, (size_t)n1 * sizeof *g1));
    free(g1);
    free(g2);
    gguf_close(g);
    cterp_model_free(m);
}

// The forward's logits on one thread are `want` (computed on all of them), bit for bit: the
// batched matmul's pieces do not depend on the thread count (OpenBLAS's own threading did, with
// its Haswell/Zen kernels)
static void same_on_one_thread(cterp_model *m, const int32_t *tok, int T, const float *want,
                               int n_vocab, const char *what) {
    float *got = malloc(sizeof(float) * (size_t)T * (size_t)n_vocab);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_OK(cterp_model_forward(m, tok, 1, T, &(cterp_forward_opts){.logits = got}));
    omp_set_num_threads(nt);
    CHECK_MSG(memcmp(got, want, sizeof(float) * (size_t)T * (size_t)n_vocab) == 0,
              "%s: the logits on 1 thread differ from those on %d", what, nt);
    free(got);
}

// The decode's logits (T single tokens) read the rows one at a time, side by side, by their length,
// or as measured (CTERP_DECODE_ROWS one, side, auto, unset), and on one thread: `want` (all the
// threads) bit for bit each way. A bad value stops cterp_model_open naming it.
static void same_any_rows(const char *path, const int32_t *tok, int T, const float *want,
                          int n_vocab, const char *what) {
    static const char *modes[] = {"one", "side", "auto", "", "1 thread"};
    float *got = malloc(sizeof(float) * (size_t)T * (size_t)n_vocab);
    const int nt = omp_get_max_threads();
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        const int one_thread = !strcmp(modes[k], "1 thread");
        setenv("CTERP_DECODE_ROWS", one_thread ? "" : modes[k], 1);
        if (one_thread) omp_set_num_threads(1);
        cterp_model *m;
        cterp_kv_cache *kc = NULL;
        CHECK_OK(cterp_model_open(&m, path));
        if (m) CHECK_OK(cterp_kv_cache_create(&kc, m, T));
        for (int t = 0; t < T && kc; t++)
            CHECK_OK(cterp_model_decode(
                m, kc, tok + t, 1, &(cterp_forward_opts){.logits = got + (size_t)t * n_vocab}));
        omp_set_num_threads(nt);
        CHECK_MSG(kc && !memcmp(got, want, sizeof(float) * (size_t)T * (size_t)n_vocab),
                  "%s: the decode's logits %s%s differ from all threads' measured", what,
                  one_thread ? "on " : "with CTERP_DECODE_ROWS=", modes[k]);
        cterp_kv_cache_free(kc);
        cterp_model_free(m);
    }
    setenv("CTERP_DECODE_ROWS", "sideways", 1);
    cterp_model *m;
    CHECK(cterp_model_open(&m, path) == CTERP_EINVAL && !m);
    CHECK(strstr(cterp_last_error(), "CTERP_DECODE_ROWS=sideways") != NULL);
    unsetenv("CTERP_DECODE_ROWS");
    free(got);
}

static void test_synthetic(void) {
    const char *tmp = test_tmpdir("model");
    CHECK(tmp != NULL);
    if (!tmp) return;
    enum { T = 12 };
    // The added types' tolerances are 3x the type's weight round-trip error in test_quant (ggml's
    // on the same row: 2.6 bits per weight Q2_K 0.31 ... 5.5 Q5_K 0.037); the logits' error comes
    // out 2.1-2.3x the weights' in both models.
    static const struct {
        uint32_t type;
        double tol; // rms of the logit error relative to the logits' rms, vs F32 weights
    } types[] = {{GGML_TYPE_F16, 0.002},   {GGML_TYPE_BF16, 0.012}, {GGML_TYPE_Q8_0, 0.03},
                 {GGML_TYPE_Q6_K, 0.08},   {GGML_TYPE_Q4_0, 0.35},  {GGML_TYPE_Q4_K, 0.35},
                 {GGML_TYPE_Q4_1, 0.25},   {GGML_TYPE_Q5_0, 0.15},  {GGML_TYPE_Q5_1, 0.13},
                 {GGML_TYPE_Q2_K, 0.93},   {GGML_TYPE_Q3_K, 0.48},  {GGML_TYPE_Q5_K, 0.12},
                 {GGML_TYPE_IQ4_NL, 0.25}, {GGML_TYPE_IQ4_XS, 0.25}};
    for (int gpt = 0; gpt < 2; gpt++) {
        synth_cfg sc = {gpt,  2,   256,           4, gpt ? 4 : 2, 512, 300, 64, gpt ? 0 : 32,
                        !gpt, gpt, GGML_TYPE_F32, 11, 0};
        char p32[600], pq[600];
        snprintf(p32, sizeof p32, "%s/%s-f32.gguf", tmp, gpt ? "gpt2" : "llama");
        CHECK_OK(synth_write(p32, &sc));
        cterp_model *m;
        CHECK_OK(cterp_model_open(&m, p32));
        if (!m) continue;
        CHECK(cterp_model_tokenizer(m) == NULL);
        int32_t tok[T];
        for (int i = 0; i < T; i++) tok[i] = (i * 37 + 5) % 300;
        static float ref[T * 300], out[T * 300], outq[T * 300];
        gguf_file *g;
        CHECK_OK(gguf_open(&g, p32));
        CHECK(g && ref_forward(g, tok, T, ref, -1, NULL, -1, 0));
        gguf_close(g);
        cterp_forward_opts o = {.logits = out};
        CHECK_OK(cterp_model_forward(m, tok, 1, T, &o));
        double scale, d = max_abs_diff(out, ref, (size_t)T * 300, &scale);
        CHECK_MSG(d < 1e-4 * (1 + scale), "%s synthetic F32 vs reference: %.3g (rms %.3g)",
                  gpt ? "gpt2" : "llama", d, scale);
        same_on_one_thread(m, tok, T, out, 300, gpt ? "gpt2 F32" : "llama F32");
        if (gpt) { // hook_pos_embed exists only for gpt2, pre_linear only for llama
            int layer;
            CHECK_OK(cterp_model_hook_info(m, "hook_pos_embed", &layer, NULL));
            CHECK(cterp_model_hook_info(m, "blocks.0.mlp.hook_pre_linear", NULL, NULL) ==
                  CTERP_ENOTFOUND);
        }
        cterp_model_free(m);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            sc.type = types[ti].type;
            snprintf(pq, sizeof pq, "%s/%s-%s.gguf", tmp, gpt ? "gpt2" : "llama",
                     gguf_type_name(sc.type));
            CHECK_OK(synth_write(pq, &sc));
            CHECK_OK(cterp_model_open(&m, pq));
            if (!m) continue;
            CHECK(!strcmp(cterp_model_weight_type(m), gguf_type_name(sc.type)));
            o.logits = outq;
            CHECK_OK(cterp_model_forward(m, tok, 1, T, &o)); // batched: dequantized tiles + sgemm
            double e2 = 0, r2 = 0;
            for (int i = 0; i < T * 300; i++)
                e2 += (double)(outq[i] - out[i]) * (outq[i] - out[i]),
                    r2 += (double)out[i] * out[i];
            double rel = sqrt(e2 / r2);
            if (getenv("VERBOSE"))
                printf("%s %s: rms logit error / rms logit = %.4f\n", gpt ? "gpt2" : "llama",
                       gguf_type_name(sc.type), rel);
            CHECK_MSG(rel <= types[ti].tol, "%s %s vs F32: relative rms error %.3g > %.3g",
                      gpt ? "gpt2" : "llama", gguf_type_name(sc.type), rel, types[ti].tol);
            if (sc.type == GGML_TYPE_Q4_K) same_on_one_thread(m, tok, T, outq, 300, "Q4_K");
            // the single-token path (fused dots) agrees with the batched path
            cterp_kv_cache *kc;
            CHECK_OK(cterp_kv_cache_create(&kc, m, T));
            static float step[T * 300];
            for (int t = 0; t < T && kc; t++)
                CHECK_OK(cterp_model_decode(m, kc, tok + t, 1,
                                            &(cterp_forward_opts){.logits = step + t * 300}));
            d = max_abs_diff(step, outq, (size_t)T * 300, &scale);
            CHECK_MSG(d < 1e-3 * (1 + scale), "%s %s decode vs batched: %.3g",
                      gpt ? "gpt2" : "llama", gguf_type_name(sc.type), d);
            cterp_kv_cache_free(kc);
            cterp_model_free(m);
            if (sc.type == GGML_TYPE_Q4_K || sc.type == GGML_TYPE_Q6_K)
                same_any_rows(pq, tok, T, step, 300, gguf_type_name(sc.type));
        }
    }
    // a model with a missing tensor is rejected naming it
    synth_cfg sc = {0, 1, 64, 2, 2, 64, 50, 16, 32, 0, 1, GGML_TYPE_F32, 3, 0};
    char pb[600];
    snprintf(pb, sizeof pb, "%s/bad.gguf", tmp);
    gguf_writer *w = gguf_writer_new(0);
    gguf_writer_str(w, "general.architecture", "llama");
    gguf_writer_u32(w, "llama.block_count", 1);
    gguf_writer_u32(w, "llama.embedding_length", 64);
    gguf_writer_u32(w, "llama.feed_forward_length", 64);
    gguf_writer_u32(w, "llama.attention.head_count", 2);
    CHECK_OK(gguf_writer_write(w, pb));
    gguf_writer_free(w);
    cterp_model *m;
    CHECK(cterp_model_open(&m, pb) == CTERP_EFORMAT && !m);
    CHECK(strstr(cterp_last_error(), "token_embd.weight") != NULL);
    (void)sc;

    // corrupted model files: an error or a model that runs, never a crash (ASan/UBSan)
    synth_cfg fc = {0, 1, 256, 4, 2, 256, 40, 16, 32, 1, 0, GGML_TYPE_Q4_K, 9, 0};
    char pf[600];
    snprintf(pf, sizeof pf, "%s/fuzz.gguf", tmp);
    CHECK_OK(synth_write(pf, &fc));
    char *orig;
    size_t olen;
    CHECK_OK(file_read_all(pf, &orig, &olen));
    rng_t r;
    rng_seed(&r, 5);
    int iters = test_sanitized() ? 60 : 300, loaded = 0, crashed = 0;
    size_t header = 1200 < olen ? 1200 : olen; // metadata and tensor infos live here
    for (int it = 0; it < iters && orig; it++) {
        char *cp = malloc(olen);
        memcpy(cp, orig, olen);
        for (int k = 0; k < 3; k++) cp[rng_below(&r, header)] ^= (char)(1u << rng_below(&r, 8));
        if (file_write_all(pf, cp, olen)) crashed++;
        free(cp);
        if (cterp_model_open(&m, pf) == CTERP_OK) {
            loaded++;
            int32_t tk[3] = {1, 2, 3};
            float lg[3 * 64];
            const cterp_model_config *cc = cterp_model_config_of(m);
            if (cc->n_vocab <= 64)
                cterp_model_forward(m, tk, 1, 3, &(cterp_forward_opts){.logits = lg});
            cterp_model_free(m);
        } else
            CHECK(m == NULL && strlen(cterp_last_error()) > 0);
    }
    CHECK(crashed == 0 && loaded < iters);
    free(orig);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
}

static void test_hook_names(void) {
    char b[64];
    CHECK_OK(cterp_hook_name(3, "mlp", b, sizeof b));
    CHECK(!strcmp(b, "blocks.3.hook_mlp_out"));
    CHECK_OK(cterp_hook_name(0, "attn", b, sizeof b));
    CHECK(!strcmp(b, "blocks.0.hook_attn_out"));
    CHECK_OK(cterp_hook_name(12, "resid", b, sizeof b));
    CHECK(!strcmp(b, "blocks.12.hook_resid_post"));
    CHECK_OK(cterp_hook_name(2, "resid_pre", b, sizeof b));
    CHECK(!strcmp(b, "blocks.2.hook_resid_pre"));
    CHECK_OK(cterp_hook_name(2, "resid_mid", b, sizeof b));
    CHECK(!strcmp(b, "blocks.2.hook_resid_mid"));
    CHECK_OK(cterp_hook_name(1, "mlp_post", b, sizeof b));
    CHECK(!strcmp(b, "blocks.1.mlp.hook_post"));
    CHECK_OK(cterp_hook_name(1, "blocks.4.hook_resid_pre", b, sizeof b));
    CHECK(!strcmp(b, "blocks.4.hook_resid_pre"));
    CHECK(cterp_hook_name(1, "nope", b, sizeof b) == CTERP_EINVAL);
    CHECK(cterp_hook_name(1, "mlp", b, 8) == CTERP_EINVAL);
}

// stories260K rewritten as qwen2 (half-split RoPE, Q/K rows un-permuted) and phi3 (also fused
// qkv and gate_up) computes the same function: logits, hooks downstream of RoPE, greedy text.
static void test_repacked(const char *dir) {
    char src[4096], dst[4200];
    snprintf(src, sizeof src, "%s/models/stories260K.gguf", dir);
    const char *tmp = test_tmpdir("repack");
    if (!tmp) return;
    cterp_model *ref;
    CHECK_OK(cterp_model_open(&ref, src));
    if (!ref) return;
    enum { B = 2, T = 24, V = 512, D = 64 };
    static int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(1 + (i * 37) % 500);
    static float l0[B * T * V], l1[B * T * V], r0[B * T * D], r1[B * T * D];
    capture c0 = {.buf = r0}, c1 = {.buf = r1};
    cterp_hook h0 = {"blocks.3.hook_resid_mid", cap_fn, &c0}, h1 = {"blocks.3.hook_resid_mid", cap_fn, &c1};
    cterp_forward_opts o0 = {.hooks = &h0, .n_hooks = 1, .logits = l0};
    CHECK_OK(cterp_model_forward(ref, tok, B, T, &o0));
    int32_t prompt[1] = {1}, *g0 = NULL, *g1 = NULL;
    int n0 = 0, n1 = 0;
    cterp_sampler_params sp = {0, 1, 0};
    CHECK_OK(cterp_generate(ref, prompt, 1, 40, &sp, NULL, NULL, NULL, &g0, &n0));
    const char *fams[] = {"qwen2", "phi3"};
    for (int f = 0; f < 2; f++) {
        snprintf(dst, sizeof dst, "%s/stories-%s.gguf", tmp, fams[f]);
        CHECK_OK(repack_llama(src, dst, fams[f]));
        cterp_model *m;
        CHECK_OK(cterp_model_open(&m, dst));
        if (!m) continue;
        CHECK(!strcmp(cterp_model_config_of(m)->arch, fams[f]) && cterp_model_config_of(m)->rope_neox);
        cterp_forward_opts o1 = {.hooks = &h1, .n_hooks = 1, .logits = l1};
        CHECK_OK(cterp_model_forward(m, tok, B, T, &o1));
        double sc, dl = max_abs_diff(l1, l0, (size_t)B * T * V, &sc), dr = max_abs_diff(r1, r0, (size_t)B * T * D, &sc);
        printf("stories260K as %s: logits max diff %.2e, resid_mid %.2e\n", fams[f], dl, dr);
        CHECK(dl < 1e-4 && dr < 1e-5);
        CHECK_OK(cterp_generate(m, prompt, 1, 40, &sp, NULL, NULL, NULL, &g1, &n1));
        CHECK(n1 == n0 && g1 && !memcmp(g1, g0, (size_t)n0 * sizeof *g0));
        free(g1);
        g1 = NULL;
        cterp_model_free(m);
        remove(dst);
    }
    free(g0);
    cterp_model_free(ref);
}

int main(void) {
    test_hook_names();
    test_synthetic();
    const char *dir = test_data_dir();
    if (!dir)
        printf("skip: stories260K tests (shared test data not found; set CTERP_TESTDATA)\n");
    else {
        test_stories(dir);
        test_repacked(dir);
    }
    return test_done();
}
