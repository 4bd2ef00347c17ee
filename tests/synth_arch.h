// Test helper: writes small random-weight F32 GGUF models of several transformer families with
// exactly llama.cpp's tensor names and metadata keys (llama, gpt2, gptneox, gemma, gemma2,
// gemma3, qwen2, qwen3, phi3). The same config and seed always give the same bytes, so a C test
// regenerates the file that scripts/oracle/model_refs.sh ran llama.cpp and an exact
// double-precision forward on (tests/data/model_ref/<variant>.ref). docs/model.md, "Reference
// outputs from llama.cpp".
#ifndef CTERP_TEST_SYNTH_ARCH_H
#define CTERP_TEST_SYNTH_ARCH_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/gguf.h"
#include "synth_bytes.h"

typedef struct {
    const char *name; // variant: tests/data/model_ref/<name>.ref
    const char *arch; // general.architecture
    int L, D, H, Hkv;
    int hd; // head dim; written as attention.key_length/value_length when set (0: D/H)
    int F, V, n_ctx;
    int n_rot; // rope.dimension_count (0: hd, key not written)
    float rope_base;
    float rope_base_swa; // rope.freq_base_swa (0: not written)
    float rope_linear;   // rope.scaling.type "linear" + rope.scaling.factor (0: none)
    int llama3_rope;     // rope_freqs.weight as convert_hf_to_gguf writes for rope_type llama3
    int tied;            // no output.weight
    int swa;             // attention.sliding_window (0: not written)
    float attn_softcap, final_softcap; // *_logit_softcapping (0: not written)
    int par_res;                       // use_parallel_residual (gptneox)
    float eps;                         // norm epsilon
    float embd_std;                    // token_embd scale
    float qk_gain;                     // Q/K projections (or q/k-norm weights) sharpen attention
    float res_gain; // block outputs (W_O, W_down; with post norms their weights) (0: 1)
    uint64_t seed;
} synth_arch_cfg;

// The variants the references cover. Scales keep activations O(1), attention far from uniform,
// softcaps active and the greedy continuation's top-2 logit margin comfortable.
// clang-format off
static const synth_arch_cfg synth_arch_variants[] = {
    // GQA 4 heads / 2 kv, separate output
    {.name = "llama_gqa", .arch = "llama", .L = 3, .D = 64, .H = 4, .Hkv = 2, .F = 128, .V = 256,
     .n_ctx = 64, .rope_base = 10000, .eps = 1e-5f, .embd_std = 1, .qk_gain = 1.5f, .seed = 11},
    // Llama-3.1 rope scaling (rope_freqs), tied embeddings, MQA
    {.name = "llama3_rope_tied", .arch = "llama", .L = 3, .D = 64, .H = 4, .Hkv = 1, .F = 128,
     .V = 256, .n_ctx = 64, .rope_base = 10000, .llama3_rope = 1, .tied = 1, .eps = 1e-5f,
     .embd_std = 0.3f, .qk_gain = 1.5f, .seed = 40},
    // rope.scaling.type linear, factor 4
    {.name = "llama_linear", .arch = "llama", .L = 2, .D = 64, .H = 4, .Hkv = 4, .F = 128, .V = 256,
     .n_ctx = 64, .rope_base = 10000, .rope_linear = 4, .eps = 1e-5f, .embd_std = 1,
     .qk_gain = 1.5f, .seed = 13},
    // Mistral v0.1: attention.sliding_window 4 on every layer, which llama.cpp ignores (only the
    // exact reference applies)
    {.name = "llama_swa", .arch = "llama", .L = 2, .D = 64, .H = 4, .Hkv = 2, .F = 128, .V = 256,
     .n_ctx = 64, .rope_base = 10000, .swa = 4, .eps = 1e-5f, .embd_std = 1, .qk_gain = 1.5f,
     .seed = 7},
    // tied, learned positions, fused qkv, biases, GELU
    {.name = "gpt2", .arch = "gpt2", .L = 3, .D = 64, .H = 4, .Hkv = 4, .F = 256, .V = 256,
     .n_ctx = 64, .tied = 1, .eps = 1e-5f, .embd_std = 0.3f, .qk_gain = 1.5f, .seed = 47},
    // Pythia-like: parallel residual, rotary on a quarter of each head (NEOX), all biases
    {.name = "gptneox", .arch = "gptneox", .L = 3, .D = 64, .H = 4, .Hkv = 4, .F = 256, .V = 256,
     .n_ctx = 64, .n_rot = 4, .rope_base = 10000, .par_res = 1, .eps = 1e-5f, .embd_std = 1,
     .qk_gain = 1.5f, .seed = 25},
    // MQA, head dim 32 != D/H, embeddings scaled by sqrt(D), GeGLU, always tied
    {.name = "gemma", .arch = "gemma", .L = 3, .D = 64, .H = 4, .Hkv = 1, .hd = 32, .F = 128,
     .V = 256, .n_ctx = 64, .rope_base = 10000, .tied = 1, .eps = 1e-6f, .embd_std = 0.1f,
     .qk_gain = 1.5f, .res_gain = 2.5f, .seed = 47},
    // sliding window 4 on even layers, softcaps that bite, post norms, head dim 32
    {.name = "gemma2", .arch = "gemma2", .L = 3, .D = 64, .H = 4, .Hkv = 2, .hd = 32, .F = 128,
     .V = 256, .n_ctx = 64, .rope_base = 10000, .tied = 1, .swa = 4, .attn_softcap = 3,
     .final_softcap = 2.5f, .eps = 1e-6f, .embd_std = 0.1f, .qk_gain = 1.5f, .res_gain = 2.5f,
     .seed = 42},
    // q/k norm, 5 local : 1 global layers, local rope base 10000, global 1e6 with linear x8
    {.name = "gemma3", .arch = "gemma3", .L = 6, .D = 64, .H = 4, .Hkv = 2, .hd = 16, .F = 128,
     .V = 256, .n_ctx = 64, .rope_base = 1e6f, .rope_base_swa = 10000, .rope_linear = 8, .tied = 1,
     .swa = 4, .eps = 1e-6f, .embd_std = 0.1f, .qk_gain = 1.4f, .res_gain = 2.5f, .seed = 44},
    // q/k/v biases, GQA, separate output
    {.name = "qwen2", .arch = "qwen2", .L = 3, .D = 64, .H = 4, .Hkv = 2, .F = 128, .V = 256,
     .n_ctx = 64, .rope_base = 1e6f, .eps = 1e-6f, .embd_std = 1, .qk_gain = 1.5f, .seed = 19},
    // q/k norm, head dim 32 (Q is 128 wide, D 64), GQA, tied
    {.name = "qwen3", .arch = "qwen3", .L = 3, .D = 64, .H = 4, .Hkv = 2, .hd = 32, .F = 128,
     .V = 256, .n_ctx = 64, .rope_base = 1e6f, .tied = 1, .eps = 1e-6f, .embd_std = 0.3f,
     .qk_gain = 1.4f, .seed = 41},
    // fused qkv, fused gate|up (2F rows), rotary on 12 of 16 dims, GQA; the sliding_window key
    // is written as the converter does, and llama.cpp ignores it for phi3
    {.name = "phi3", .arch = "phi3", .L = 3, .D = 64, .H = 4, .Hkv = 2, .F = 128, .V = 256,
     .n_ctx = 64, .n_rot = 12, .rope_base = 10000, .swa = 2047, .eps = 1e-5f, .embd_std = 1,
     .qk_gain = 1.5f, .seed = 21},
};
// clang-format on
#define SYNTH_ARCH_N_VARIANTS ((int)(sizeof synth_arch_variants / sizeof synth_arch_variants[0]))

static inline const synth_arch_cfg *synth_arch_find(const char *name) {
    for (int i = 0; i < SYNTH_ARCH_N_VARIANTS; i++)
        if (!strcmp(synth_arch_variants[i].name, name)) return &synth_arch_variants[i];
    return NULL;
}

static inline int synth_arch_is(const synth_arch_cfg *c, const char *arch) {
    return !strcmp(c->arch, arch);
}
static inline int synth_arch_hd(const synth_arch_cfg *c) {
    return c->hd ? c->hd : c->D / c->H;
}
static inline int synth_arch_layernorm(const synth_arch_cfg *c) { // LayerNorm + biases
    return synth_arch_is(c, "gpt2") || synth_arch_is(c, "gptneox");
}
static inline int synth_arch_gemma(const synth_arch_cfg *c) {
    return !strncmp(c->arch, "gemma", 5);
}
static inline int synth_arch_post_norms(const synth_arch_cfg *c) {
    return synth_arch_is(c, "gemma2") || synth_arch_is(c, "gemma3");
}
static inline int synth_arch_qk_norm(const synth_arch_cfg *c) {
    return synth_arch_is(c, "qwen3") || synth_arch_is(c, "gemma3");
}
static inline int synth_arch_fused_qkv(const synth_arch_cfg *c) {
    return synth_arch_layernorm(c) || synth_arch_is(c, "phi3");
}
static inline int synth_arch_gelu(const synth_arch_cfg *c) { // GELU MLP: gpt2, gptneox, gemma*
    return synth_arch_layernorm(c) || synth_arch_gemma(c);
}

// NULL when llama.cpp computes the function cterp defines for this variant; otherwise why not
// (the reference then holds only the exact forward's outputs).
static inline const char *synth_arch_llama_cpp_differs(const synth_arch_cfg *c) {
    if (synth_arch_is(c, "llama") && c->swa)
        return "llama.cpp ignores llama.attention.sliding_window; cterp applies the window";
    return NULL;
}

// Llama-3.1 rope factors as convert_hf_to_gguf computes them (factor 8, low_freq_factor 1,
// high_freq_factor 4, original_max_position_embeddings 1024 so that the n_rot/2 = 8 factors
// mix all three cases: 1, smoothed, 8).
static inline void synth_arch_llama3_factors(float *ff, int n_rot, float base) {
    const double factor = 8, lo = 1, hi = 4, old_ctx = 1024;
    double lo_wl = old_ctx / lo, hi_wl = old_ctx / hi;
    for (int j = 0; j < n_rot / 2; j++) {
        // torch: 1 / base ** (arange(0, dim, 2) / dim) in float32
        float freq = 1.0f / powf(base, (float)(2 * j) / (float)n_rot);
        double wl = 2 * M_PI / freq;
        if (wl < hi_wl)
            ff[j] = 1;
        else if (wl > lo_wl)
            ff[j] = (float)factor;
        else {
            double smooth = (old_ctx / wl - lo) / (hi - lo);
            ff[j] = (float)(1 / ((1 - smooth) / factor + smooth));
        }
    }
}

static inline void synth_arch_tensor(gguf_writer *w, const char *name, int64_t cols, int64_t rows,
                                     float std, float mean, rng_t *r) {
    float *x = malloc((size_t)(cols * rows) * sizeof *x);
    for (int64_t i = 0; i < cols * rows; i++) x[i] = mean + std * rng_normal(r);
    int64_t ne[2] = {cols, rows};
    gguf_writer_tensor(w, name, GGML_TYPE_F32, rows == 1 ? 1 : 2, ne, x);
    free(x);
}

// A byte-level BPE vocabulary of the 256 GPT-2 byte tokens and no merges: llama.cpp and cterp
// both load it, and the tests feed token ids directly.
static inline void synth_arch_vocab(gguf_writer *w) {
    char store[256][4];
    const char *toks[256];
    int32_t types[256];
    for (int b = 0; b < 256; b++) synth_byte_token(b, store[b]), toks[b] = store[b], types[b] = 1;
    gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, 256);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, 256);
    gguf_writer_arr_str(w, "tokenizer.ggml.merges", NULL, 0);
}

// Adds the model's keys and tensors to w (V must be 256, the vocabulary's size).
static inline void synth_arch_add(gguf_writer *w, const synth_arch_cfg *c) {
    const char *a = c->arch;
    char k[128], n[128];
    const int hd = synth_arch_hd(c), ln = synth_arch_layernorm(c);
    const int64_t D = c->D, F = c->F, qd = (int64_t)c->H * hd, kvd = (int64_t)c->Hkv * hd;
    gguf_writer_str(w, "general.architecture", a);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    gguf_writer_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    gguf_writer_u32(w, KEY("embedding_length"), (uint32_t)D);
    gguf_writer_u32(w, KEY("block_count"), (uint32_t)c->L);
    gguf_writer_u32(w, KEY("feed_forward_length"), (uint32_t)F);
    gguf_writer_u32(w, KEY("attention.head_count"), (uint32_t)c->H);
    if (!ln) gguf_writer_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->Hkv);
    if (c->hd) {
        gguf_writer_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        gguf_writer_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
    gguf_writer_f32(
        w, KEY(ln ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"), c->eps);
    if (!synth_arch_is(c, "gpt2")) {
        gguf_writer_u32(w, KEY("rope.dimension_count"), (uint32_t)(c->n_rot ? c->n_rot : hd));
        gguf_writer_f32(w, KEY("rope.freq_base"), c->rope_base);
    }
    if (c->rope_base_swa != 0) gguf_writer_f32(w, KEY("rope.freq_base_swa"), c->rope_base_swa);
    if (c->rope_linear != 0) {
        gguf_writer_str(w, KEY("rope.scaling.type"), "linear");
        gguf_writer_f32(w, KEY("rope.scaling.factor"), c->rope_linear);
    }
    if (c->swa) gguf_writer_u32(w, KEY("attention.sliding_window"), (uint32_t)c->swa);
    if (c->attn_softcap != 0) gguf_writer_f32(w, KEY("attn_logit_softcapping"), c->attn_softcap);
    if (c->final_softcap != 0) gguf_writer_f32(w, KEY("final_logit_softcapping"), c->final_softcap);
    if (synth_arch_is(c, "gptneox")) gguf_writer_bool(w, KEY("use_parallel_residual"), c->par_res);
#undef KEY
    synth_arch_vocab(w);

    rng_t r;
    rng_seed(&r, c->seed);
    const float sD = 1.0f / sqrtf((float)D), sF = 1.0f / sqrtf((float)F);
    const float sQ = 1.0f / sqrtf((float)qd);
    const int qkn = synth_arch_qk_norm(c);
    const float sQK = qkn ? sD : c->qk_gain * sD; // q/k norm: the norm weights sharpen instead
    const float rg = c->res_gain != 0 ? c->res_gain : 1, post = synth_arch_post_norms(c);
    synth_arch_tensor(w, "token_embd.weight", D, c->V, c->embd_std, 0, &r);
    if (synth_arch_is(c, "gpt2"))
        synth_arch_tensor(w, "position_embd.weight", D, c->n_ctx, 0.3f, 0, &r);
    synth_arch_tensor(w, "output_norm.weight", D, 1, 0.1f, 1, &r);
    if (ln) synth_arch_tensor(w, "output_norm.bias", D, 1, 0.1f, 0, &r);
    if (!c->tied) synth_arch_tensor(w, "output.weight", D, c->V, 2 * sD, 0, &r);
    if (c->llama3_rope) {
        float ff[256];
        int nr = c->n_rot ? c->n_rot : hd;
        synth_arch_llama3_factors(ff, nr, c->rope_base);
        int64_t ne[1] = {nr / 2};
        gguf_writer_tensor(w, "rope_freqs.weight", GGML_TYPE_F32, 1, ne, ff);
    }
    for (int l = 0; l < c->L; l++) {
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        synth_arch_tensor(w, NM("attn_norm.weight"), D, 1, 0.1f, 1, &r);
        if (ln) synth_arch_tensor(w, NM("attn_norm.bias"), D, 1, 0.1f, 0, &r);
        if (synth_arch_fused_qkv(c)) {
            // rows: Q (qd), K (kvd), V (kvd); Q and K rows sharper than V
            int64_t rows = qd + 2 * kvd;
            float *x = malloc((size_t)(D * rows) * sizeof *x);
            for (int64_t i = 0; i < D * rows; i++)
                x[i] = (i < D * (qd + kvd) ? sQK : sD) * rng_normal(&r);
            int64_t ne[2] = {D, rows};
            gguf_writer_tensor(w, NM("attn_qkv.weight"), GGML_TYPE_F32, 2, ne, x);
            free(x);
            if (ln) synth_arch_tensor(w, NM("attn_qkv.bias"), rows, 1, 0.1f, 0, &r);
        } else {
            synth_arch_tensor(w, NM("attn_q.weight"), D, qd, sQK, 0, &r);
            synth_arch_tensor(w, NM("attn_k.weight"), D, kvd, sQK, 0, &r);
            synth_arch_tensor(w, NM("attn_v.weight"), D, kvd, sD, 0, &r);
            if (synth_arch_is(c, "qwen2")) {
                synth_arch_tensor(w, NM("attn_q.bias"), qd, 1, 0.3f, 0, &r);
                synth_arch_tensor(w, NM("attn_k.bias"), kvd, 1, 0.3f, 0, &r);
                synth_arch_tensor(w, NM("attn_v.bias"), kvd, 1, 0.3f, 0, &r);
            }
        }
        if (qkn) {
            synth_arch_tensor(w, NM("attn_q_norm.weight"), hd, 1, 0.1f, c->qk_gain, &r);
            synth_arch_tensor(w, NM("attn_k_norm.weight"), hd, 1, 0.1f, c->qk_gain, &r);
        }
        synth_arch_tensor(w, NM("attn_output.weight"), qd, D, post ? sQ : rg * sQ, 0, &r);
        if (ln) synth_arch_tensor(w, NM("attn_output.bias"), D, 1, 0.1f, 0, &r);
        if (synth_arch_post_norms(c))
            synth_arch_tensor(w, NM("post_attention_norm.weight"), D, 1, 0.1f, rg, &r);
        synth_arch_tensor(w, NM("ffn_norm.weight"), D, 1, 0.1f, 1, &r);
        if (ln) synth_arch_tensor(w, NM("ffn_norm.bias"), D, 1, 0.1f, 0, &r);
        int gated = !ln && !synth_arch_is(c, "phi3");
        if (gated) synth_arch_tensor(w, NM("ffn_gate.weight"), D, F, sD, 0, &r);
        // phi3: one ffn_up of 2F rows, gate rows first, then up
        synth_arch_tensor(w, NM("ffn_up.weight"), D, synth_arch_is(c, "phi3") ? 2 * F : F, sD, 0,
                          &r);
        if (ln) synth_arch_tensor(w, NM("ffn_up.bias"), F, 1, 0.1f, 0, &r);
        synth_arch_tensor(w, NM("ffn_down.weight"), F, D, post ? sF : rg * sF, 0, &r);
        if (ln) synth_arch_tensor(w, NM("ffn_down.bias"), D, 1, 0.1f, 0, &r);
        if (synth_arch_post_norms(c))
            synth_arch_tensor(w, NM("post_ffw_norm.weight"), D, 1, 0.1f, rg, &r);
#undef NM
    }
}

static inline cterp_status synth_arch_write(const char *path, const synth_arch_cfg *c) {
    gguf_writer *w = gguf_writer_new(0);
    if (!w) return cterp_error(CTERP_ENOMEM, "synth_arch_write: out of memory");
    synth_arch_add(w, c);
    cterp_status s = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return s;
}

// The prompt the references run: T ids in [0, V) from the variant's seed.
static inline void synth_arch_tokens(const synth_arch_cfg *c, int32_t *tok, int T) {
    rng_t r;
    rng_seed(&r, c->seed * 7919 + 1);
    for (int i = 0; i < T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)c->V);
}

#endif
